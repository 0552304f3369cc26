"""Cluster-shared deltas: scatter against numpy, zero = identity, folding, variants, controls."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import safety
from jaxpapers.nn.moe import SwiGLU


class Net(nnx.Module):
  def __init__(self, rngs):
    self.ffn = SwiGLU(4, 8, init_std=0.5, rngs=rngs)
    self.head = nnx.Linear(4, 3, rngs=rngs)

  def __call__(self, x):
    return self.head(x + self.ffn(x))


LAYERS = [safety.gated_ffn(("ffn",))]
PLAN = [safety.LayerClusters([1, 4, 6], [0, 1, 0])]


@pytest.fixture(scope="module")
def base():
  return Net(nnx.Rngs(0))


def _with_random_deltas(base, variant="in_out", plan=PLAN):
  model = safety.NeuronDeltas(base, LAYERS, plan, variant)
  rng = np.random.default_rng(0)
  for entry in model.deltas:
    for v in entry.values():
      v.set_value(jnp.asarray(rng.normal(size=v.shape), jnp.float32))
  return model


def test_zero_deltas_are_the_identity(base):
  model = safety.NeuronDeltas(base, LAYERS, PLAN)
  x = jax.random.normal(jax.random.key(0), (5, 4))
  np.testing.assert_array_equal(model(x), base(x))


def test_scatter_matches_numpy_and_the_folded_model(base):
  model = _with_random_deltas(base)
  d = {k: np.asarray(v[...]) for k, v in model.deltas[0].items()}
  folded = model.fold()
  assert type(folded) is Net
  members = np.array([1, 4, 6])
  clusters = np.array([0, 1, 0])
  for name in ("gate", "up"):
    ref = np.asarray(getattr(base.ffn, name).kernel[...]).copy()
    ref[:, members] += d[name][clusters].T
    np.testing.assert_allclose(getattr(folded.ffn, name).kernel[...], ref, rtol=1e-6)
  ref = np.asarray(base.ffn.down.kernel[...]).copy()
  ref[members, :] += d["out"][clusters]
  np.testing.assert_allclose(folded.ffn.down.kernel[...], ref, rtol=1e-6)
  untouched = [j for j in range(8) if j not in members]
  np.testing.assert_array_equal(folded.ffn.gate.kernel[...][:, untouched], base.ffn.gate.kernel[...][:, untouched])
  x = jax.random.normal(jax.random.key(1), (6, 4))
  np.testing.assert_allclose(jax.jit(lambda m, x: m(x))(model, x), folded(x), atol=1e-5)
  # the base model is not changed by folding
  assert not np.allclose(folded.ffn.up.kernel[...], base.ffn.up.kernel[...])


@pytest.mark.parametrize("variant,keys", [("in_out", {"gate", "up", "out"}), ("in_only", {"gate", "up"}),
                                          ("out_only", {"out"})])
def test_variants_own_the_right_vectors(base, variant, keys):
  model = safety.NeuronDeltas(base, LAYERS, PLAN, variant)
  assert set(model.deltas[0].keys()) == keys
  assert safety.count_params(model, safety.DeltaParam) == 2 * 4 * len(keys)  # 2 clusters x d
  per = safety.NeuronDeltas(base, LAYERS, safety.per_neuron(PLAN), variant)
  assert safety.count_params(per, safety.DeltaParam) == 3 * 4 * len(keys)


def test_training_moves_only_the_deltas(base):
  model = safety.NeuronDeltas(base, LAYERS, PLAN)
  before = jax.tree.map(np.asarray, nnx.state(model.base))
  opt = nnx.Optimizer(model, optax.adam(1e-1), wrt=safety.DeltaParam)
  x = jax.random.normal(jax.random.key(2), (8, 4))
  loss = lambda m: jnp.mean((m(x) - 1.0) ** 2)  # noqa: E731

  @nnx.jit
  def step(m, o):
    value, grads = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, safety.DeltaParam))(m)
    o.update(m, grads)
    return value

  losses = [float(step(model, opt)) for _ in range(10)]
  assert losses[-1] < 0.9 * losses[0]
  assert all(float(jnp.max(jnp.abs(v[...]))) > 0 for v in model.deltas[0].values())
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, nnx.state(model.base)))


def test_random_control_keeps_sizes_and_avoids_the_selected_neurons():
  plan = [safety.LayerClusters([2, 3, 9], [0, 0, 1]), safety.LayerClusters([], [])]
  rand = safety.random_plan(plan, [12, 12], seed=0)
  assert rand[0].sizes() == plan[0].sizes() and not set(rand[0].neurons) & {2, 3, 9}
  assert rand[1].neurons == () and rand[1].n_clusters == 0
  assert safety.random_plan(plan, [12, 12], seed=0) == rand


def test_plans_are_validated():
  with pytest.raises(ValueError, match="twice"):
    safety.LayerClusters([1, 1], [0, 0])
  with pytest.raises(ValueError, match="0 .. k-1"):
    safety.LayerClusters([1, 2], [0, 2])
  with pytest.raises(ValueError, match="variant"):
    safety.NeuronDeltas(Net(nnx.Rngs(0)), LAYERS, PLAN, "both")
