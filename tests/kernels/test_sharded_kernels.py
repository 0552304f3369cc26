"""Pallas ops on arrays an Explicit mesh shards over batch and heads (kernels_pallas/sharding.py).

Traced on sharded arrays, a raw `pallas_call` refuses to slice its refs; each op runs per shard
instead. Forward and gradients must equal the unsharded op's (the split is over independent
rows and heads, so exactly).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from kernels_pallas.block_sparse_attention import ops as block_sparse
from kernels_pallas.second_order_attention import ops as second_order
from kernels_pallas.selective_scan import ops as selective_scan
from kernels_pallas.selective_scan import reference as scan_reference

B, S, H, D = 2, 32, 2, 16


def _inputs():
  keys = jax.random.split(jax.random.key(0), 5)
  q, k, v = (jax.random.normal(key, (B, S, H, D)) for key in keys[:3])
  log_decay = -jax.nn.softplus(jax.random.normal(keys[3], (B, S, H)))
  mask = jax.random.bernoulli(keys[4], 0.5, (B, H, S // 16, S // 8)).at[..., 0].set(True)
  return q, k, v, log_decay, mask


OPS = {
    "second_order": lambda q, k, v, a, m: second_order.second_order_attention(
        q, k, v, a, block_q=16, block_k=16),
    "block_sparse": lambda q, k, v, a, m: block_sparse.block_sparse_attention(
        q, k, v, m, block_q=16, block_k=8),
}


@pytest.mark.parametrize("name", OPS)
def test_op_on_batch_and_head_sharded_inputs_equals_unsharded(name):
  op = OPS[name]
  q, k, v, a, m = _inputs()
  loss = lambda q, k, v: jnp.sum(op(q, k, v, a, m) ** 2)
  want_out = op(q, k, v, a, m)
  want_grads = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
  mesh = jax.make_mesh((2, 2), ("data", "fsdp"), axis_types=(AxisType.Explicit,) * 2,
                       devices=jax.devices()[:4])
  with jax.set_mesh(mesh):
    put = lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec))
    qs, ks, vs = (put(x, P("data", None, "fsdp")) for x in (q, k, v))  # batch and heads split
    a_s, m_s = put(a, P("data")), put(m, P("data", "fsdp"))
    sharded_loss = lambda q, k, v: jnp.sum(op(q, k, v, a_s, m_s) ** 2)
    out = jax.jit(lambda q, k, v: op(q, k, v, a_s, m_s))(qs, ks, vs)
    grads = jax.jit(jax.grad(sharded_loss, argnums=(0, 1, 2)))(qs, ks, vs)
  assert out.sharding.is_equivalent_to(NamedSharding(mesh, P("data", None, "fsdp")), out.ndim)
  np.testing.assert_allclose(out, want_out, rtol=1e-6, atol=1e-6)
  for got, want in zip(grads, want_grads):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", OPS)
def test_op_under_an_auto_mesh_splits_the_batch_and_equals_unsharded(name):
  op = OPS[name]
  q, k, v, a, m = _inputs()
  loss = lambda q, k, v: jnp.sum(op(q, k, v, a, m) ** 2)
  want = jax.grad(loss, argnums=(0, 1, 2))(q, k, v)
  mesh = jax.make_mesh((2, 2), ("data", "tensor"), axis_types=(AxisType.Auto,) * 2,
                       devices=jax.devices()[:4])
  with jax.set_mesh(mesh):
    text = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, v).as_text()
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
  assert "shard_map" in text or "sdy.manual_computation" in text  # run per shard of the batch
  for got, expected in zip(grads, want):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _scan_op(u, delta, A, B, C):
  """ConvSS2D's use: one scan per direction under vmap (each direction its own A)."""
  return jax.vmap(lambda a, uu: selective_scan.selective_scan(uu, delta, a, B, C, chunk=8),
                  in_axes=(0, None))(A, u)


@pytest.mark.parametrize("axis_type", [AxisType.Explicit, AxisType.Auto])
def test_selective_scan_on_a_batch_sharded_mesh_equals_unsharded(axis_type):
  """Mosaic kernels cannot be partitioned by XLA: the scan runs per batch shard, and the
  gradient of the replicated A sums over the shards."""
  u, delta, A, B, C, _ = scan_reference.random_inputs(4, 12, 8, 4)
  A = jnp.stack([A, 0.5 * A])  # two directions
  loss = lambda u, delta, A, B, C: jnp.sum(_scan_op(u, delta, A, B, C) ** 2)
  grad = jax.grad(loss, argnums=(0, 1, 2, 3, 4))
  want_out, want_grads = _scan_op(u, delta, A, B, C), grad(u, delta, A, B, C)
  mesh = jax.make_mesh((2, 2), ("data", "fsdp"), axis_types=(axis_type,) * 2,
                       devices=jax.devices()[:4])
  with jax.set_mesh(mesh):
    args = (u, delta, A, B, C)
    if axis_type == AxisType.Explicit:
      split = lambda x: jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"))))
      args = (split(u), split(delta), A, split(B), split(C))
    text = jax.jit(grad).lower(*args).as_text()
    out = jax.jit(_scan_op)(*args)
    grads = jax.jit(grad)(*args)
  assert "shard_map" in text or "sdy.manual_computation" in text
  np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
  for got, want in zip(grads, want_grads):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
