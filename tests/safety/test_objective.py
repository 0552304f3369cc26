"""SFT objective, circuit-breaker losses and LoRA adapters against written-out references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers import safety


def _np_ce(logits, y):
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -np.take_along_axis(logp, y[..., None], -1)[..., 0]


def test_sft_loss_is_the_masked_mean_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32)
  y = rng.integers(0, 7, (3, 5))
  mask = (rng.random((3, 5)) < 0.6).astype(np.float32)
  ce = _np_ce(logits, y)
  np.testing.assert_allclose(safety.sft_loss(jnp.asarray(logits), jnp.asarray(y), jnp.asarray(mask)),
                             (ce * mask).sum() / mask.sum(), rtol=1e-5)
  np.testing.assert_allclose(safety.sft_loss(jnp.asarray(logits[:, 0]), jnp.asarray(y[:, 0])),
                             ce[:, 0].mean(), rtol=1e-5)
  np.testing.assert_array_equal(safety.greedy_targets(jnp.asarray(logits)), logits.argmax(-1))


def test_rerouting_and_retain_losses():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(4, 3, 6)), rng.normal(size=(4, 3, 6))
  mask = np.array([1, 1, 0, 1], float)[:, None]
  cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
  want = (np.maximum(cos, 0) * mask).sum() / (mask.sum() * 3)
  np.testing.assert_allclose(safety.rerouting_loss(jnp.asarray(a), jnp.asarray(b), jnp.asarray(mask)), want, rtol=1e-5)
  dist = np.linalg.norm(a - b, axis=-1)
  np.testing.assert_allclose(safety.retain_loss(jnp.asarray(a), jnp.asarray(b)), dist.mean(), rtol=1e-5)
  assert float(safety.rerouting_loss(jnp.asarray(-a), jnp.asarray(a))) == 0.0  # opposite: no loss


def test_rr_schedule_moves_weight_from_rerouting_to_retain():
  assert [float(c) for c in safety.coefficients(jnp.float32(0.0), 10.0)] == [10.0, 0.0]
  assert [float(c) for c in safety.coefficients(jnp.float32(1.0), 10.0)] == [5.0, 5.0]
  a = jnp.ones((2, 3, 4))
  total, parts = safety.rr_loss([(a, a)], [(a, a + 1)], jnp.float32(0.5), 4.0)
  np.testing.assert_allclose(total, 3.0 * 1.0 + 1.0 * 2.0, rtol=1e-5)  # c_s 3, cos 1; c_r 1, |1|_2 over 4 dims
  assert float(parts["reroute"]) == pytest.approx(1.0)


def test_lora_keeps_the_function_and_counts_rank_times_widths():
  class M(nnx.Module):
    def __init__(self, rngs):
      self.a = nnx.Linear(5, 7, rngs=rngs)
      self.b = nnx.List([nnx.Linear(7, 3, rngs=rngs)])

    def __call__(self, x):
      return self.b[0](jax.nn.relu(self.a(x)))

  m = M(nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 5))
  before = m(x)
  safety.add_lora(m, [("a",), ("b", 0)], 2, rngs=nnx.Rngs(1))
  assert isinstance(m.a, nnx.LoRA) and isinstance(m.b[0], nnx.LoRA)
  np.testing.assert_allclose(m(x), before, rtol=1e-6)
  assert safety.count_params(m, nnx.LoRAParam) == 2 * (5 + 7) + 2 * (7 + 3)
  with pytest.raises(ValueError, match="not an nnx.Linear"):
    safety.add_lora(m, [("a",)], 1, rngs=nnx.Rngs(0))
