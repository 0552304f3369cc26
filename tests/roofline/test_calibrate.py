"""Our KV-cache decode step against TinyLM's causal forward; the efficiency fit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.tiny_lm import TinyLM
from jaxpapers.roofline import arch, calibrate, latency
from jaxpapers.roofline.devices import Device


@pytest.fixture(scope="module")
def model():
  return TinyLM(50, 32, 2, mixer=lambda r: CausalSelfAttention(32, 4, rngs=r), mlp_hidden=64,
                rngs=nnx.Rngs(3))


def test_decode_step_equals_the_causal_forward(model):
  tokens = jax.random.randint(jax.random.key(0), (1, 10), 0, 50)
  full = model(tokens)[0]
  step, state = calibrate.jitted_decode(model)
  cache = calibrate.empty_cache(model, 16)  # longer than needed: the mask hides the rest
  for pos in range(10):
    logits, cache = step(state, cache, tokens[0, pos], jnp.int32(pos))
    np.testing.assert_allclose(logits, full[pos], atol=1e-5, rtol=1e-5)
  assert float(jnp.abs(cache["k"][:, 10:]).max()) == 0.0


def test_decode_arch_counts_the_model(model):
  a = calibrate.decode_arch(model)
  n = sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  assert arch.param_counts(a).total == n


def test_decode_step_refuses_other_models():
  scanned = TinyLM(20, 16, 2, mixer=lambda r: CausalSelfAttention(16, 2, rngs=r), mlp_hidden=32,
                   scan_layers=True, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="unscanned"):
    calibrate.jitted_decode(scanned)


def test_fit_efficiency_recovers_known_factors():
  cpu = Device("cpu", 20e9, {"fp32": 100e9}, 64e9)
  p = latency.PRECISIONS["fp32"]
  archs = [arch.Arch(d, l, d // 64, d // 64, 64, ffn=4 * d, vocab=256, mlp_matrices=2)
           for d, l in ((256, 4), (512, 4), (768, 6))]
  truth = latency.Efficiency(1.0, 0.35, 20e-6)
  measured = calibrate.predicted_tpot(archs, 128, cpu, p, truth)
  fitted = calibrate.fit_efficiency(archs[:2], measured[:2], 128, cpu, p)
  assert fitted.memory == pytest.approx(0.35, rel=1e-4)
  assert fitted.overhead == pytest.approx(20e-6, rel=1e-3)
  np.testing.assert_allclose(calibrate.predicted_tpot(archs, 128, cpu, p, fitted), measured,
                             rtol=1e-4)


def test_time_decode_returns_a_positive_timing(model):
  timing = calibrate.time_decode(model, 8, repeats=2, warmup=1, min_repeat_seconds=None)
  assert 0 < timing.min <= timing.median
