"""The NeST API on the shared tiny transformer LM (attention + SwiGLU): not tied to the toy.

Probe, selection, clustering, delta training and folding run on `jaxpapers.nn.TinyLM` with
causal self-attention and gated MLPs; the folded model's logits equal the delta model's.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import safety
from jaxpapers.nn import CausalSelfAttention, TinyLM
from jaxpapers.nn.moe import SwiGLU

VOCAB, D, F, LAYERS, T = 32, 16, 24, 2, 6


def _lm():
  return TinyLM(VOCAB, D, LAYERS, mixer=lambda r: CausalSelfAttention(D, 2, rngs=r), mlp_hidden=F,
                mlp=lambda r: SwiGLU(D, F, init_std=0.3, rngs=r), embed_std=1.0, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def prompts():
  rng = np.random.default_rng(0)
  benign = rng.integers(0, 24, (64, T))
  harmful = rng.integers(0, 24, (64, T))
  harmful[:, 2] = rng.integers(24, 32, 64)  # "harmful" tokens come from ids 24..31
  return harmful, benign


@pytest.fixture(scope="module")
def found(prompts):
  layers = [safety.gated_ffn(("layers", l, "mlp"), tap="gate") for l in range(LAYERS)]
  harmful, benign = prompts
  return layers, safety.find_safety_neurons(
      _lm(), layers, lambda m, x: m(x), harmful, benign, probe_steps=300, probe_lr=1e-2,
      standardize=True, z_threshold=1.5, min_split=2, seed=0)


def test_detection_finds_and_clusters_neurons(found):
  _, f = found
  assert f.widths == (F, F) and f.num_neurons >= 2
  assert min(f.probe_accuracy) > 0.65  # above chance (0.5) at a random init
  for p, probe in zip(f.plan, f.probes):
    z = safety.zscores(probe.weights)
    assert all(z[j] > 1.5 and probe.weights[j] > 0 for j in p.neurons)


def test_trained_deltas_fold_into_the_tinylm(found, prompts):
  layers, f = found
  harmful, benign = prompts
  base = _lm()
  model = safety.NeuronDeltas(base, layers, f.plan)
  x = jnp.asarray(np.concatenate([harmful, benign]))
  target = jnp.concatenate([jnp.zeros(64, jnp.int32), safety.greedy_targets(base(x[64:])[:, -1])])

  def loss(m):
    return safety.sft_loss(m(x)[:, -1], target)

  opt = nnx.Optimizer(model, optax.adam(5e-2), wrt=safety.DeltaParam)
  step = nnx.jit(lambda m, o: o.update(m, nnx.grad(loss, argnums=nnx.DiffState(0, safety.DeltaParam))(m)))
  first = float(loss(model))
  for _ in range(15):
    step(model, opt)
  assert float(loss(model)) < first
  folded = model.fold()
  assert type(folded) is TinyLM
  assert safety.count_params(folded) == safety.count_params(base)
  delta_logits = nnx.jit(lambda m, x: m(x))(model, x)
  np.testing.assert_allclose(folded(x), delta_logits, atol=1e-5, rtol=0)
  assert float(jnp.max(jnp.abs(delta_logits - base(x)))) > 1e-3  # training changed the function
  # only selected neurons' columns moved
  for layer, p in zip(range(LAYERS), f.plan):
    moved = np.flatnonzero(np.any(np.asarray(folded.layers[layer].mlp.gate.kernel[...]
                                             != base.layers[layer].mlp.gate.kernel[...]), 0))
    assert set(moved.tolist()) <= set(p.neurons)
