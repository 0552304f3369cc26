"""K-FAC factor collector (CrispEdit, arXiv 2602.15823): against brute force, one-token exactness, shards."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers import optim
from jaxpapers.optim import _kfac_factors


class _MLP(nnx.Module):

  def __init__(self, rngs):
    self.l1 = nnx.Linear(5, 7, rngs=rngs)
    self.l2 = nnx.Linear(7, 6, rngs=rngs)
    self.l3 = nnx.Linear(6, 4, rngs=rngs)

  def __call__(self, x):
    return self.l3(jnp.tanh(self.l2(jnp.tanh(self.l1(x)))))


def _logits(model, batch):
  return model(batch["x"])


@pytest.fixture(scope="module")
def setup():
  model = _MLP(nnx.Rngs(0))
  rng = np.random.default_rng(0)
  batches = [{"x": rng.normal(size=(16, 5)).astype(np.float32),
              "targets": rng.integers(0, 4, size=16).astype(np.int32),
              "mask": (rng.uniform(size=16) > 0.25).astype(np.float32)} for _ in range(3)]
  return model, batches


def _brute(model, batches, labels_of):
  """Per-token a and g = ∂(Σ_t m_t CE_t)/∂y_t of layer 2, by hand, then plain averages."""
  w1, b1 = model.l1.kernel[...], model.l1.bias[...]
  w2, b2 = model.l2.kernel[...], model.l2.bias[...]
  w3, b3 = model.l3.kernel[...], model.l3.bias[...]
  a_sum, g_sum, n = 0, 0, 0
  for i, batch in enumerate(batches):
    a = jnp.tanh(batch["x"] @ w1 + b1)
    y = a @ w2 + b2
    head = lambda y: jnp.tanh(y) @ w3 + b3
    labels = labels_of(i, batch, head(y))
    loss = lambda y: jnp.sum(batch["mask"] * optax.softmax_cross_entropy_with_integer_labels(head(y), labels))
    g = jax.grad(loss)(y)
    for t in range(a.shape[0]):
      m = batch["mask"][t]
      a_sum += m * np.outer(a[t], a[t])
      g_sum += m * np.outer(g[t], g[t])
      n += m
  return a_sum / n, g_sum / n, n


def test_collector_equals_brute_force_empirical(setup):
  model, batches = setup
  factors, n = optim.collect_kfac_factors(model, [("l2",)], batches, _logits, label_mode="empirical")
  a, g, n_ref = _brute(model, batches, lambda i, b, logits: b["targets"])
  assert set(factors) == {"l2"}
  assert factors["l2"].a.shape == (7, 7) and factors["l2"].g.shape == (6, 6)  # A: inputs, G: outputs
  np.testing.assert_allclose(n, n_ref)
  np.testing.assert_allclose(factors["l2"].a, a, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(factors["l2"].g, g, rtol=1e-4, atol=1e-9)


def test_collector_equals_brute_force_sampled(setup):
  model, batches = setup
  key = jax.random.key(7)
  factors, _ = optim.collect_kfac_factors(model, [("l2",)], batches, _logits, rng=key)
  labels_of = lambda i, b, logits: jax.random.categorical(jax.random.fold_in(key, i), logits)
  a, g, _ = _brute(model, batches, labels_of)
  np.testing.assert_allclose(factors["l2"].a, a, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(factors["l2"].g, g, rtol=1e-4, atol=1e-9)
  empirical, _ = optim.collect_kfac_factors(model, [("l2",)], batches, _logits, label_mode="empirical")
  assert not np.allclose(empirical["l2"].g, factors["l2"].g)  # labels matter for G only
  np.testing.assert_allclose(empirical["l2"].a, factors["l2"].a, rtol=1e-6)


def test_one_token_kronecker_is_the_exact_block(setup):
  """N = 1: A ⊗ G equals vec(∇W) vec(∇W)ᵀ of that token's loss (row-major vec of [d_in, d_out])."""
  model, batches = setup
  one = {"x": batches[0]["x"][:1], "targets": batches[0]["targets"][:1]}
  factors, n = optim.collect_kfac_factors(model, [("l2",)], [one], _logits, label_mode="empirical")
  assert n == 1

  def loss(kernel):
    m = nnx.clone(model)
    m.l2.kernel[...] = kernel
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(m(one["x"]), one["targets"]))

  grad_w = np.asarray(jax.grad(loss)(model.l2.kernel[...])).ravel()
  np.testing.assert_allclose(np.kron(factors["l2"].a, factors["l2"].g), np.outer(grad_w, grad_w),
                             rtol=1e-4, atol=1e-8)


def test_sharded_batch_equals_one_device(setup):
  model, batches = setup
  ref, n_ref = optim.collect_kfac_factors(model, [("l1",), ("l2",)], batches, _logits,
                                          label_mode="empirical")
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  with jax.set_mesh(mesh):
    sharded = [jax.device_put(b, NamedSharding(mesh, P("data"))) for b in batches]
    got, n = optim.collect_kfac_factors(model, [("l1",), ("l2",)], sharded, _logits,
                                        label_mode="empirical")
  assert n == n_ref
  for k in ("l1", "l2"):
    np.testing.assert_allclose(got[k].a, ref[k].a, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[k].g, ref[k].g, rtol=1e-4, atol=1e-9)


def test_sequence_tokens_and_merge():
  """[B, T, d] inputs with a [B, T] mask: tokens are every (b, t); merge weights by counts."""
  lin = nnx.Linear(3, 4, rngs=nnx.Rngs(1))
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 5, 3)).astype(np.float32)
  mask = np.ones((2, 5), np.float32)
  mask[1, 3:] = 0
  batch = {"x": x, "mask": mask, "targets": np.zeros((2, 5), np.int32)}

  class Wrap(nnx.Module):

    def __init__(self):
      self.lin = lin

    def __call__(self, x):
      return self.lin(x)

  f, n = optim.collect_kfac_factors(Wrap(), [("lin",)], [batch], lambda m, b: m(b["x"]),
                                    label_mode="empirical")
  tokens = x.reshape(-1, 3)[mask.ravel() > 0]
  np.testing.assert_allclose(n, 8)
  np.testing.assert_allclose(f["lin"].a, tokens.T @ tokens / 8, rtol=1e-5)
  f2 = {"lin": optim.KroneckerFactors(2 * f["lin"].a, 3 * f["lin"].g)}
  merged, total = optim.merge_kfac_factors([(f, 8.0), (f2, 24.0)])
  assert total == 32
  np.testing.assert_allclose(merged["lin"].a, (8 + 48) / 32 * f["lin"].a, rtol=1e-6)
  np.testing.assert_allclose(merged["lin"].g, (8 + 72) / 32 * f["lin"].g, rtol=1e-6)
  with pytest.raises(ValueError, match="mask"):
    bad = dict(batch, mask=np.ones((2,), np.float32))
    optim.collect_kfac_factors(Wrap(), [("lin",)], [bad], lambda m, b: m(b["x"]).sum(1),
                               label_mode="sampled")


def test_factor_tree_with_nnx_optimizer(setup):
  """kfac_projector inside nnx.Optimizer: the edited kernel moves in the subspace, others freely."""
  model, batches = setup
  model = nnx.clone(model)
  factors, _ = optim.collect_kfac_factors(model, [("l2",)], batches, _logits)
  tree = optim.factor_tree(nnx.state(model, nnx.Param), factors)
  opt = nnx.Optimizer(model, optim.kfac_projector(tree, 0.5, inner=optax.sgd(0.1)), wrt=nnx.Param)
  x = jnp.asarray(batches[0]["x"])
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
  before = {k: getattr(model, k).kernel[...] for k in ("l1", "l2")}
  opt.update(model, grads)
  basis = optim.kfac_eigenbasis(factors["l2"], 0.5)
  d2 = model.l2.kernel[...] - before["l2"]
  np.testing.assert_allclose(optim.kfac_project(d2, basis), d2, atol=1e-6)
  assert float(jnp.linalg.norm(d2)) > 0
  np.testing.assert_allclose(model.l1.kernel[...] - before["l1"], -0.1 * grads["l1"]["kernel"][...], atol=1e-6)
  with pytest.raises(ValueError, match="no 'kernel'"):
    optim.factor_tree(nnx.state(model, nnx.Param), {"l9": factors["l2"]})


def test_taps_record_only_into_the_context_bound_to_them(setup):
  """The tap context is explicit: bound to one tapped model, seen by no other, unbound on exit."""
  model, batches = setup
  x = jnp.asarray(batches[0]["x"])
  first = _kfac_factors.tapped_clone(model, [("l2",)])
  second = _kfac_factors.tapped_clone(model, [("l2",)])
  np.testing.assert_array_equal(first(x), model(x))  # an unbound tap is the layer itself
  delta = jnp.full((x.shape[0], 6), 0.25)
  with _kfac_factors.tapping(first, [("l2",)], {"l2": delta}) as ctx:
    perturbed = first(x)
    plain = second(x)  # another tapped model called inside the context: neither sees the other
  hidden = jnp.tanh(model.l1(x))
  np.testing.assert_allclose(ctx.inputs["l2"], hidden, rtol=1e-6)
  np.testing.assert_allclose(ctx.outputs["l2"], model.l2(hidden), rtol=1e-6)
  np.testing.assert_allclose(perturbed, model.l3(jnp.tanh(model.l2(hidden) + 0.25)), rtol=1e-5)
  np.testing.assert_array_equal(plain, model(x))
  assert first.l2.context is None and second.l2.context is None
  np.testing.assert_array_equal(first(x), model(x))
  with pytest.raises(TypeError, match="no tap at 'l1'"):
    with _kfac_factors.tapping(first, [("l1",)]):
      pass


def test_models_of_one_structure_share_the_compiled_step(setup):
  """The model's state is an argument of the compiled step: a second model of the same structure
  (another seed) reuses it and gets its own factors (brute force of that model)."""
  model, batches = setup
  optim.collect_kfac_factors(model, [("l2",)], batches, _logits, label_mode="empirical")
  size = _kfac_factors._factor_sums_jit._cache_size()
  other = _MLP(nnx.Rngs(5))
  factors, _ = optim.collect_kfac_factors(other, [("l2",)], batches, _logits, label_mode="empirical")
  assert _kfac_factors._factor_sums_jit._cache_size() == size
  a, g, _ = _brute(other, batches, lambda i, b, logits: b["targets"])
  np.testing.assert_allclose(factors["l2"].a, a, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(factors["l2"].g, g, rtol=1e-4, atol=1e-9)
