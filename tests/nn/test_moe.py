"""Tests for jaxpapers.nn.moe: sigmoid top-k router with expert bias, dense and ragged dispatch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers.nn import moe as moe_lib
from jaxpapers.nn import partitioning

D, E, K, F = 8, 6, 2, 12
# Large enough inits that every term of the output is far above float32 round-off.
INIT = dict(router_init_std=0.5, init_std=0.3)


def _make(seed=0, **kwargs):
  kwargs = {**INIT, **kwargs}
  return moe_lib.MoE(D, kwargs.pop("num_experts", E), kwargs.pop("top_k", K), F,
                     rngs=nnx.Rngs(seed), **kwargs)


def _x(shape=(2, 5, D), seed=1):
  # numpy, not jax.random: every new shape would cost a compile of the sampler.
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _silu(v):
  return v / (1.0 + np.exp(-v))


def _reference(model, x):
  """Per-token loop in float64 numpy, straight from the router equations (DeepSeek-V3 style)."""
  router = np.asarray(model.router[...], np.float64)
  gate = np.asarray(model.gate[...], np.float64)
  up = np.asarray(model.up[...], np.float64)
  down = np.asarray(model.down[...], np.float64)
  bias = np.asarray(model.expert_bias[...], np.float64)
  xs = np.asarray(x, np.float64).reshape(-1, D)
  out = np.zeros_like(xs)
  for n, u in enumerate(xs):
    s = 1.0 / (1.0 + np.exp(-(u @ router)))
    chosen = np.argsort(-(s + bias), kind="stable")[:model.top_k]
    for i in chosen:
      g = s[i] / (s[chosen].sum() + 1e-20) * model.route_scale
      out[n] += g * ((_silu(u @ gate[i]) * (u @ up[i])) @ down[i])
    if model.shared is not None:
      sh = model.shared
      wg, wu, wd = (np.asarray(m.kernel[...], np.float64) for m in (sh.gate, sh.up, sh.down))
      out[n] += (_silu(u @ wg) * (u @ wu)) @ wd
  return out.reshape(x.shape)


def _loss_and_grads(model, x):
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, x):
    y, _ = nnx.merge(graphdef, params, rest)(x)
    return jnp.sum(y ** 2)

  # Jitted: one compile instead of dozens of op-by-op ones (keeps the file fast).
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)


def test_dense_matches_per_token_reference():
  model = _make(num_shared=2, route_scale=2.448)
  model.expert_bias[...] = jnp.array([0.3, -0.2, 0.0, 0.1, -0.4, 0.25])
  x = _x()
  y, _ = model(x)
  ref = _reference(model, x)
  assert np.abs(ref).mean() > 0.1
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dispatch,block_size", [("ragged", 64), ("blocked", 3), ("blocked", 64)])
def test_sorted_dispatch_matches_dense_forward_and_gradients(dispatch, block_size):
  dense = _make(route_scale=1.7)
  ragged = _make(route_scale=1.7, dispatch=dispatch, block_size=block_size)
  bias = jnp.array([0.0, 0.2, -0.1, 0.05, 0.0, -0.3])
  dense.expert_bias[...] = bias
  ragged.expert_bias[...] = bias
  x = _x()
  (yd, cd), (yr, cr) = dense(x), ragged(x)
  np.testing.assert_allclose(yr, yd, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(cr, cd)
  (ld, (gd, gxd)), (lr, (gr, gxr)) = _loss_and_grads(dense, x), _loss_and_grads(ragged, x)
  np.testing.assert_allclose(lr, ld, rtol=1e-5)
  flat_d, flat_r = jax.tree.leaves_with_path(gd), jax.tree.leaves_with_path(gr)
  assert [p for p, _ in flat_d] == [p for p, _ in flat_r]
  assert len(flat_d) == 7  # router, gate, up, down, shared gate/up/down
  for (path, a), (_, b) in zip(flat_d, flat_r):
    assert np.abs(a).max() > 0, path
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max(), err_msg=str(path))
  np.testing.assert_allclose(gxr, gxd, rtol=1e-5, atol=1e-5 * np.abs(gxd).max())


@pytest.mark.parametrize("dispatch", ["dense", "ragged", "blocked"])
def test_bias_only_changes_selection(dispatch):
  model = _make(dispatch=dispatch)
  x = _x()
  free = model.route(x)
  forced = 4
  model.expert_bias[...] = jnp.zeros(E).at[forced].set(10.0)  # scores are < 1: always in top-k
  routing = model.route(x)
  np.testing.assert_array_equal(routing.selected[..., 0], forced)
  np.testing.assert_allclose(routing.scores, free.scores)  # scores do not see the bias
  # The other slot is the best unbiased expert apart from the forced one; the gates are the
  # normalised UNBIASED scores.
  s = np.asarray(free.scores)
  other = np.argmax(np.where(np.arange(E) == forced, -np.inf, s), axis=-1)
  np.testing.assert_array_equal(routing.selected[..., 1], other)
  s_forced = s[..., forced]
  s_other = np.take_along_axis(s, other[..., None], axis=-1)[..., 0]
  np.testing.assert_allclose(routing.gates[..., 0], s_forced / (s_forced + s_other), rtol=1e-6)
  np.testing.assert_allclose(routing.gates[..., 1], s_other / (s_forced + s_other), rtol=1e-6)
  y, counts = model(x)
  np.testing.assert_allclose(y, _reference(model, x), rtol=1e-5, atol=1e-5)
  assert counts[forced] == x.shape[0] * x.shape[1]


def test_router_state_is_not_a_param_and_gets_no_gradient():
  model = _make()
  params = nnx.state(model, nnx.Param)
  assert set(nnx.to_pure_dict(params)) == {"router", "gate", "up", "down", "shared"}
  assert model.gate.shape == model.up.shape == (E, D, F) and model.down.shape == (E, F, D)
  assert partitioning.names_of(model.gate) == ("expert", "embed", "mlp")
  assert partitioning.names_of(model.down) == ("expert", "mlp", "embed")
  router_state = nnx.state(model, moe_lib.RouterState)
  assert set(nnx.to_pure_dict(router_state)) == {"expert_bias", "bias_momentum"}
  for v in jax.tree.leaves(router_state):
    assert v.dtype == jnp.float32 and v.shape == (E,) and not np.any(v)
  # Even when differentiated explicitly, the bias receives a zero gradient (stop_gradient).
  model.expert_bias[...] = jnp.linspace(-0.3, 0.3, E)
  graphdef, rs, rest = nnx.split(model, moe_lib.RouterState, ...)
  x = _x()

  def loss(rs):
    y, _ = nnx.merge(graphdef, rs, rest)(x)
    return jnp.sum(y ** 2)

  for g in jax.tree.leaves(jax.grad(loss)(rs)):
    np.testing.assert_array_equal(g, 0.0)


@pytest.mark.parametrize("dispatch", ["dense", "ragged", "blocked"])
def test_counts_are_assignment_loads(dispatch):
  model = _make(dispatch=dispatch)
  x = _x()
  _, counts = model(x)
  selected = np.asarray(model.route(x).selected)
  assert counts.dtype == jnp.float32 and counts.shape == (E,)
  assert counts.sum() == 2 * 5 * K
  np.testing.assert_array_equal(counts, np.bincount(selected.ravel(), minlength=E))
  mask = np.ones((2, 5), np.int32)
  mask[0, 3:] = 0
  mask[1, 1:] = 0
  y_masked, counts_masked = model(x, mask=jnp.asarray(mask))
  assert counts_masked.sum() == mask.sum() * K
  np.testing.assert_array_equal(counts_masked,
                                np.bincount(selected[mask == 1].ravel(), minlength=E))
  np.testing.assert_allclose(y_masked, model(x)[0])  # the mask only affects the loads


def test_route_scale_scales_routed_part_only_and_no_shared():
  x = _x()
  one, two = _make(route_scale=1.0), _make(route_scale=2.0)
  shared = one.shared(x)
  np.testing.assert_allclose(two(x)[0] - shared, 2.0 * (one(x)[0] - shared), rtol=1e-5,
                             atol=1e-6)
  # Same seed: the routed parameters are drawn before the shared expert's, so they agree.
  bare = _make(route_scale=1.0, num_shared=0)
  assert bare.shared is None
  assert "shared" not in nnx.to_pure_dict(nnx.state(bare, nnx.Param))
  np.testing.assert_allclose(bare(x)[0], one(x)[0] - shared, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(bare(x)[0], _reference(bare, x), rtol=1e-5, atol=1e-5)
  ragged = _make(route_scale=1.0, num_shared=0, dispatch="ragged")
  np.testing.assert_allclose(ragged(x)[0], bare(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dispatch", ["dense", "ragged", "blocked"])
def test_sharded_jit_gives_global_counts_and_same_gradients(dispatch):
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
  model = _make(dispatch=dispatch)
  x = _x((8, 4, D))  # one sequence per device
  mask = jnp.ones((8, 4), jnp.int32).at[5, 2:].set(0)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def step(params, rest, x, mask):
    def loss(params, x):
      y, counts = nnx.merge(graphdef, params, rest)(x, mask)
      return jnp.sum(y ** 2), (y, counts)
    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  (_, (y_ref, counts_ref)), grads_ref = step(params, rest, x, mask)
  replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  with jax.set_mesh(mesh):
    (_, (y, counts)), grads = step(jax.device_put(params, replicated),
                                   jax.device_put(rest, replicated),
                                   jax.device_put(x, batch), jax.device_put(mask, batch))
  assert y.sharding.spec == P("data", None, None)
  assert counts.sharding.is_fully_replicated
  assert counts_ref.sum() == (8 * 4 - 2) * K
  np.testing.assert_array_equal(counts, counts_ref)  # global, not one shard's 4 tokens
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(grads_ref), jax.tree.leaves(grads)):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())


def test_compute_dtype_bfloat16():
  x = _x()
  dense = _make(dtype=jnp.bfloat16)
  ragged = _make(dtype=jnp.bfloat16, dispatch="ragged")
  (yd, cd), (yr, cr) = dense(x), ragged(x)
  assert yd.dtype == yr.dtype == jnp.bfloat16 and cd.dtype == jnp.float32
  np.testing.assert_array_equal(cd, cr)
  ref = _reference(dense, x)
  scale = np.abs(ref).max()
  np.testing.assert_allclose(np.asarray(yd, np.float32), ref, atol=0.03 * scale)
  np.testing.assert_allclose(np.asarray(yr, np.float32), ref, atol=0.03 * scale)


def test_swiglu_matches_formula():
  mlp = moe_lib.SwiGLU(D, F, init_std=0.3, rngs=nnx.Rngs(0))
  assert mlp.gate.kernel.shape == (D, F) and mlp.down.kernel.shape == (F, D)
  assert mlp.gate.bias is None
  x = np.asarray(_x((3, D)), np.float64)
  wg, wu, wd = (np.asarray(m.kernel[...], np.float64) for m in (mlp.gate, mlp.up, mlp.down))
  np.testing.assert_allclose(mlp(jnp.asarray(x, jnp.float32)), (_silu(x @ wg) * (x @ wu)) @ wd,
                             rtol=1e-5, atol=1e-6)


def test_auxiliary_balance_loss():
  b, t = 2, 4
  uniform = jnp.full((b, t, E), 0.3)
  rng = np.random.default_rng(0)
  selected = jnp.asarray(rng.integers(0, E, (b, t, K)), jnp.int32)
  np.testing.assert_allclose(moe_lib.auxiliary_balance_loss(uniform, selected, K), 1.0,
                             rtol=1e-6)
  scores = jax.nn.sigmoid(jnp.asarray(rng.standard_normal((b, t, E)), jnp.float32))
  s, sel = np.asarray(scores, np.float64), np.asarray(selected)
  expected = 0.0
  for seq in range(b):
    f = np.bincount(sel[seq].ravel(), minlength=E) * E / (K * t)
    p = (s[seq] / s[seq].sum(-1, keepdims=True)).mean(0)
    expected += (f * p).sum() / b
  np.testing.assert_allclose(moe_lib.auxiliary_balance_loss(scores, selected, K), expected,
                             rtol=1e-5)


def _balance_reference(scores, selected, top_k, mask):
  """Sequence-wise balance loss in float64 numpy over each sequence's real tokens."""
  s, sel, m = np.asarray(scores, np.float64), np.asarray(selected), np.asarray(mask, bool)
  e = s.shape[-1]
  total = 0.0
  for seq in range(s.shape[0]):
    real = m[seq]
    if not real.any():
      continue
    f = np.bincount(sel[seq][real].ravel(), minlength=e) * e / (top_k * real.sum())
    p = (s[seq][real] / s[seq][real].sum(-1, keepdims=True)).mean(0)
    total += (f * p).sum()
  return total / s.shape[0]


def _z_reference(logits, mask):
  """Router z-loss in float64 numpy: mean over real tokens of logsumexp(logits)^2."""
  z = np.asarray(logits, np.float64)
  lse = np.log(np.exp(z).sum(-1))
  return (lse[np.asarray(mask, bool)] ** 2).mean()


# Real-token mask of a [2, 5] input: sequence 0 keeps 3 tokens, sequence 1 one.
MASK = np.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], np.float32)


def test_masked_balance_and_z_losses_match_numpy():
  rng = np.random.default_rng(3)
  scores = jax.nn.sigmoid(jnp.asarray(rng.standard_normal((2, 5, E)), jnp.float32))
  selected = jnp.asarray(np.argsort(-rng.random((2, 5, E)), axis=-1)[..., :K], jnp.int32)
  logits = jnp.asarray(3 * rng.standard_normal((2, 5, E)), jnp.float32)
  np.testing.assert_allclose(moe_lib.auxiliary_balance_loss(scores, selected, K, MASK),
                             _balance_reference(scores, selected, K, MASK), rtol=1e-5)
  # all-real mask = no mask; and the padded tokens are really left out (the values differ)
  ones = np.ones((2, 5))
  np.testing.assert_allclose(moe_lib.auxiliary_balance_loss(scores, selected, K, ones),
                             moe_lib.auxiliary_balance_loss(scores, selected, K), rtol=1e-6)
  assert abs(_balance_reference(scores, selected, K, ones)
             - _balance_reference(scores, selected, K, MASK)) > 1e-3
  np.testing.assert_allclose(moe_lib.router_z_loss(logits, MASK), _z_reference(logits, MASK),
                             rtol=1e-5)
  np.testing.assert_allclose(moe_lib.router_z_loss(logits), _z_reference(logits, ones), rtol=1e-5)


def test_call_with_stats_losses_and_z_loss_gradient():
  model = _make()
  x = _x()
  y, counts = model(x, MASK)
  y_stats, stats = model.call_with_stats(x, MASK)
  routing = model.route(x)
  np.testing.assert_array_equal(y_stats, y)
  np.testing.assert_array_equal(stats.counts, counts)
  np.testing.assert_allclose(stats.balance_loss,
                             _balance_reference(routing.scores, routing.selected, K, MASK),
                             rtol=1e-5)
  np.testing.assert_allclose(stats.z_loss, _z_reference(routing.logits, MASK), rtol=1e-5)
  np.testing.assert_allclose(routing.logits, np.asarray(x) @ np.asarray(model.router[...]),
                             rtol=1e-5, atol=1e-5)
  # d/dW (1/N) sum_t lse(x_t W)^2 = (2/N) sum_t x_t (lse_t softmax(x_t W))^T over real tokens
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def z_loss(params):
    return nnx.merge(graphdef, params, rest).call_with_stats(x, MASK)[1].z_loss

  grad = jax.jit(jax.grad(z_loss))(params)["router"][...]
  xs = np.asarray(x, np.float64)[MASK == 1]
  z = xs @ np.asarray(model.router[...], np.float64)
  lse = np.log(np.exp(z).sum(-1, keepdims=True))
  expected = 2 / len(xs) * xs.T @ (lse * np.exp(z - lse))
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_zero_router_init_keeps_other_draws_and_routes_by_index():
  normal, zeros = _make(), _make(router_init="zeros")
  np.testing.assert_array_equal(zeros.router[...], 0.0)
  assert np.abs(np.asarray(normal.router[...])).min() > 0
  for name in ("gate", "up", "down"):  # the same key order: only the router differs
    np.testing.assert_array_equal(getattr(zeros, name)[...], getattr(normal, name)[...])
  routing = zeros.route(_x())
  np.testing.assert_array_equal(routing.scores, 0.5)
  np.testing.assert_array_equal(routing.selected, np.broadcast_to(np.arange(K), (2, 5, K)))
  np.testing.assert_allclose(routing.gates, 1 / K)
  _, stats = zeros.call_with_stats(_x())
  np.testing.assert_allclose(stats.balance_loss, 1.0, rtol=1e-6)  # uniform scores
  np.testing.assert_allclose(stats.z_loss, np.log(E) ** 2, rtol=1e-6)
  with pytest.raises(ValueError, match="router_init"):
    _make(router_init="uniform")


@pytest.mark.parametrize("scores_shape,selected_shape,dtype,message", [
    ((2, 4, E), (2, 4 * K), jnp.int32, r"scores \[B, T, E\], selected \[B, T, K\]"),
    ((2, 4, E), (2, 3, K), jnp.int32, r"scores and selected share \[B, T\]"),
    ((2, 4, E), (2, 4, K + 1), jnp.int32, f"selected holds top_k={K} experts per token"),
    ((2, 4, E), (2, 4, K), jnp.float32, "selected holds integer expert indices"),
])
def test_auxiliary_balance_loss_refuses_bad_shapes_at_trace_time(scores_shape, selected_shape, dtype, message):
  scores, selected = jnp.full(scores_shape, 0.3), jnp.zeros(selected_shape, dtype)
  with pytest.raises(ValueError, match=message):
    jax.jit(moe_lib.auxiliary_balance_loss, static_argnums=2)(scores, selected, K)


def test_invalid_arguments():
  with pytest.raises(ValueError, match="dispatch"):
    _make(dispatch="sparse")
  with pytest.raises(ValueError, match="block_size"):
    _make(dispatch="blocked", block_size=0)
  with pytest.raises(ValueError, match="top_k"):
    _make(top_k=E + 1)
