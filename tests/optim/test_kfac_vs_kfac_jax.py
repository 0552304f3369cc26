"""K-FAC factor collector (CrispEdit, arXiv 2602.15823) against kfac-jax's estimator.

An independent implementation of the same factors: kfac-jax's `BlockDiagonalCurvature` with the
layer registered by `register_dense` (the head is a constant, as in our collector). Skipped when
kfac-jax is not installed (it is in the `bench` extra only). kfac-jax 0.0.8 runs on this JAX
through `experiments/crispedit/kfac_jax_compat.py`.

Normalisations: A = Σ a aᵀ / N in both. kfac-jax's `fisher_empirical` divides each per-token
gradient by √N before its own `/ N`, so its G is ours / N (N = tokens per batch); its
`fisher_exact` (the expectation over the model's softmax) has our G's normalisation, and our
`sampled` G (one label per token) estimates it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers import optim

kfac_jax = pytest.importorskip("kfac_jax")

from jaxpapers.experiments.crispedit import kfac_jax_compat  # pylint: disable=wrong-import-position

D_IN, D_OUT, CLASSES = 5, 7, 4


class _MLP(nnx.Module):

  def __init__(self, rngs):
    self.layer = nnx.Linear(D_IN, D_OUT, use_bias=False, rngs=rngs)
    self.head = nnx.Linear(D_OUT, CLASSES, rngs=rngs)

  def __call__(self, x):
    return self.head(jnp.tanh(self.layer(x)))


def _logits(model, batch):
  return model(batch["x"])


def _batches(tokens: int, count: int):
  rng = np.random.default_rng(0)
  return [{"x": rng.normal(size=(tokens, D_IN)).astype(np.float32),
           "targets": rng.integers(0, CLASSES, size=tokens).astype(np.int32)} for _ in range(count)]


def _kfac_jax_factors(model: _MLP, batches, mode: str):
  """kfac-jax's (A, G) of `model.layer`, every batch weighted 1 (mean over batches)."""
  w_head, b_head = model.head.kernel[...], model.head.bias[...]
  update, state, factors = kfac_jax_compat.dense_layer_curvature(
      model.layer.kernel[...], lambda y: jnp.tanh(y) @ w_head + b_head, batches[0], mode)
  for batch in batches:
    state = update(state, batch)
  return factors(state)


@pytest.fixture(scope="module")
def model():
  return _MLP(nnx.Rngs(0))


def test_empirical_factors_equal_kfac_jax_fisher_empirical(model):
  tokens = 16
  batches = _batches(tokens, 3)
  ours, n = optim.collect_kfac_factors(model, [("layer",)], batches, _logits,
                                       label_mode="empirical")
  a, g = _kfac_jax_factors(model, batches, "fisher_empirical")
  assert n == 3 * tokens
  assert a.shape == (D_IN, D_IN) and g.shape == (D_OUT, D_OUT)
  np.testing.assert_allclose(np.asarray(ours["layer"].a), a, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(ours["layer"].g), tokens * g, rtol=1e-5, atol=1e-8)


def test_sampled_factors_estimate_kfac_jax_fisher_exact(model):
  batches = _batches(1024, 2)
  ours, _ = optim.collect_kfac_factors(model, [("layer",)], batches, _logits,
                                       label_mode="sampled", rng=jax.random.key(3))
  a, g = _kfac_jax_factors(model, batches, "fisher_exact")
  ours_g = np.asarray(ours["layer"].g, np.float64)
  np.testing.assert_allclose(np.asarray(ours["layer"].a), a, rtol=1e-5, atol=1e-6)
  # One sampled label per token: a Monte Carlo estimate of the exact Fisher's G (2,048 tokens).
  assert np.linalg.norm(ours_g - g) / np.linalg.norm(g) < 0.1
