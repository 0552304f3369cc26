"""Activation taps: recorded arrays against the modules' own math, restoration, max pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers import safety
from jaxpapers.nn.moe import SwiGLU


class TwoFFN(nnx.Module):
  def __init__(self, rngs):
    self.ffns = nnx.List([SwiGLU(4, 6, init_std=0.5, rngs=rngs) for _ in range(2)])

  def __call__(self, x):
    for f in self.ffns:
      x = x + f(x)
    return x


@pytest.fixture(scope="module")
def model():
  return TwoFFN(nnx.Rngs(0))


def test_gate_up_and_hidden_taps_match_the_swiglu_math(model):
  x = jax.random.normal(jax.random.key(1), (3, 5, 4))
  sites = {t: safety.gated_ffn(("ffns", 1), tap=t).tap for t in safety.TAPS}
  records = safety.record(model, lambda m: m(x), sites)
  f = model.ffns[1]
  h = x + model.ffns[0](x)  # the input of the second FFN
  gate, up = h @ f.gate.kernel[...], h @ f.up.kernel[...]
  np.testing.assert_allclose(records["gate"], gate, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(records["up"], up, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(records["hidden"], jax.nn.silu(gate) * up, rtol=1e-5, atol=1e-6)


def test_taps_put_the_modules_back(model):
  down = model.ffns[0].down
  x = jnp.ones((2, 3, 4))
  before = model(x)
  with safety.tapped(model, {0: safety.TapSite(("ffns", 0, "down"), "input")}) as records:
    assert model.ffns[0].down is not down
    model(x)
  assert model.ffns[0].down is down and records[0].shape == (2, 3, 6)
  np.testing.assert_array_equal(model(x), before)


def test_a_tap_the_forward_never_reaches_is_an_error(model):
  with pytest.raises(ValueError, match="never called"):
    safety.record(model, lambda m: None, {"g": safety.TapSite(("ffns", 0, "gate"))})


def test_max_pool_ignores_masked_positions():
  act = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  np.testing.assert_array_equal(safety.max_pool(jnp.asarray(act), jnp.asarray(mask)),
                                np.stack([act[0, 1], act[1, 0]]))
  np.testing.assert_array_equal(safety.max_pool(jnp.asarray(act[:, 0])), act[:, 0])


def test_pooled_activations_are_batched_max_pools(model):
  x = np.asarray(jax.random.normal(jax.random.key(2), (7, 5, 4)))
  layers = [safety.gated_ffn(("ffns", i), tap="hidden") for i in range(2)]
  pooled = safety.pooled_activations(model, layers, lambda m, b: m(b), x, batch_size=3)
  f = model.ffns[0]
  hidden = jax.nn.silu(x @ f.gate.kernel[...]) * (x @ f.up.kernel[...])
  assert [p.shape for p in pooled] == [(7, 6), (7, 6)]
  np.testing.assert_allclose(pooled[0], np.max(hidden, 1), rtol=1e-5, atol=1e-6)
