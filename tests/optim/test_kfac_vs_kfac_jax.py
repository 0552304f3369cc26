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
import optax
import pytest
from flax import nnx

from jaxpapers import optim

kfac_jax = pytest.importorskip("kfac_jax")

from experiments.crispedit import kfac_jax_compat  # pylint: disable=wrong-import-position

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
  kfac_jax_compat.patch_kfac_jax()
  w_head, b_head = model.head.kernel[...], model.head.bias[...]

  def loss(params, batch):
    x = batch["x"]
    y = kfac_jax.register_dense(x @ params["w"], x, params["w"])
    logits = jnp.tanh(y) @ w_head + b_head
    kfac_jax.register_softmax_cross_entropy_loss(logits, batch["targets"])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]))

  params = {"w": model.layer.kernel[...]}
  estimator = kfac_jax.BlockDiagonalCurvature(func=loss)
  rng = jax.random.key(0)
  state = estimator.init(rng, (params, batches[0]), None, None)

  @jax.jit
  def update(state, batch):
    return estimator.update_curvature_matrix_estimate(
        state, ema_old=1.0, ema_new=1.0, identity_weight=0.0, batch_size=batch["x"].shape[0],
        rng=rng, func_args=(params, batch), estimation_mode=mode)

  for batch in batches:
    state = update(state, batch)
  block = state.blocks_states[estimator.params_block_index["w"]]
  return tuple(np.asarray(f.value, np.float64) for f in block.factors)


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
