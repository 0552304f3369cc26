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
def lm():
  return _lm()  # built once (eager init of a TinyLM is seconds of small compiles); never changed


@pytest.fixture(scope="module")
def found(lm, prompts):
  layers = [safety.gated_ffn(("layers", l, "mlp"), tap="gate") for l in range(LAYERS)]
  harmful, benign = prompts
  return layers, safety.find_safety_neurons(
      lm, layers, lambda m, x: m(x), harmful, benign, probe_steps=200, probe_lr=1e-2,
      standardize=True, z_threshold=1.5, min_split=2, seed=0)


def test_detection_finds_and_clusters_neurons(found):
  _, f = found
  assert f.widths == (F, F) and f.num_neurons >= 2
  assert min(f.probe_accuracy) > 0.65  # above chance (0.5) at a random init
  for p, probe in zip(f.plan, f.probes):
    z = safety.zscores(probe.weights)
    assert all(z[j] > 1.5 and probe.weights[j] > 0 for j in p.neurons)


def test_trained_deltas_fold_into_the_tinylm(lm, found, prompts):
  layers, f = found
  harmful, benign = prompts
  base = lm
  model = safety.NeuronDeltas(base, layers, f.plan)
  x = jnp.asarray(np.concatenate([harmful, benign]))
  forward = nnx.jit(lambda m, x: m(x))
  base_logits = forward(base, x)
  target = jnp.concatenate([jnp.zeros(64, jnp.int32), safety.greedy_targets(base_logits[64:, -1])])

  def loss(m):
    return safety.sft_loss(m(x)[:, -1], target)

  @nnx.jit
  def step(m, o):
    value, grads = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, safety.DeltaParam))(m)
    o.update(m, grads)
    return value

  opt = nnx.Optimizer(model, optax.adam(5e-2), wrt=safety.DeltaParam)
  losses = [float(step(model, opt)) for _ in range(12)]
  assert losses[-1] < losses[0]
  folded = model.fold()
  assert type(folded) is TinyLM
  assert safety.count_params(folded) == safety.count_params(base)
  delta_logits = forward(model, x)
  np.testing.assert_allclose(forward(folded, x), delta_logits, atol=1e-5, rtol=0)
  assert float(jnp.max(jnp.abs(delta_logits - base_logits))) > 1e-3  # training changed the function
  for l, p in enumerate(f.plan):  # only the selected neurons' columns moved
    moved = np.flatnonzero(np.any(np.asarray(folded.layers[l].mlp.gate.kernel[...]
                                             != base.layers[l].mlp.gate.kernel[...]), 0))
    assert set(moved.tolist()) <= set(p.neurons)
