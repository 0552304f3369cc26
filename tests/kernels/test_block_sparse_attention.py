"""Block-sparse attention (arXiv 2602.13515, Alg. 1): Pallas kernel in interpret mode
and the XLA gather path against the dense masked jnp reference, forward and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kernels_pallas
from kernels_pallas.block_sparse_attention import block_sparse_attention_reference, kept_block_lists

B, N, H, D, BQ, BK = 1, 512, 2, 64, 128, 64


def _qkv(seq_q, seq_k, seed=0):
  rng = np.random.default_rng(seed)
  shapes = ((B, seq_q, H, D), (B, seq_k, H, D), (B, seq_k, H, D))
  return tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes)


def _random_mask(nq, nk, density, seed=1):
  rng = np.random.default_rng(seed)
  mask = rng.random((B, H, nq, nk)) < density
  empty = ~mask.any(-1)
  mask[empty, rng.integers(0, nk, size=int(empty.sum()))] = True  # >= 1 block per row
  return jnp.asarray(mask)


def _loss(impl, mask, seq_q=N, **kw):
  weights = jnp.asarray(np.random.default_rng(7).normal(size=(B, seq_q, H, D)), jnp.float32)

  def f(q, k, v):
    out = kernels_pallas.block_sparse_attention(q, k, v, mask, block_q=BQ, block_k=BK,
                                                implementation=impl, **kw)
    return jnp.sum(weights * out)
  return f


@functools.cache
def _case(seq_q, seq_k):
  q, k, v = _qkv(seq_q, seq_k)
  mask = _random_mask(-(-seq_q // BQ), -(-seq_k // BK), 0.3)
  ref_out = block_sparse_attention_reference(q, k, v, mask, block_q=BQ, block_k=BK)
  ref_grads = jax.grad(_loss("reference", mask, seq_q), argnums=(0, 1, 2))(q, k, v)
  return (q, k, v), mask, ref_out, ref_grads


@pytest.mark.parametrize("impl", ["pallas", "xla"])
@pytest.mark.parametrize("seq_q,seq_k", [(N, N), (300, 250)])
def test_forward_and_gradients_match_reference(impl, seq_q, seq_k):
  (q, k, v), mask, ref_out, ref_grads = _case(seq_q, seq_k)
  out = kernels_pallas.block_sparse_attention(q, k, v, mask, block_q=BQ, block_k=BK,
                                              implementation=impl)
  assert out.shape == (B, seq_q, H, D)
  assert float(jnp.max(jnp.abs(out - ref_out))) < 1e-5
  grads = jax.jit(jax.grad(_loss(impl, mask, seq_q), argnums=(0, 1, 2)))(q, k, v)
  for g, r in zip(grads, ref_grads):
    assert float(jnp.max(jnp.abs(g - r))) < 1e-4


def test_all_ones_mask_equals_dense_attention():
  (q, k, v), _, _, _ = _case(N, N)
  ones = jnp.ones((1, 1, N // BQ, N // BK), bool)  # broadcast over batch and heads
  dense = jax.nn.dot_product_attention(q, k, v)
  for impl in ("pallas", "xla", "reference"):
    out = kernels_pallas.block_sparse_attention(q, k, v, ones, block_q=BQ, block_k=BK,
                                                implementation=impl)
    assert float(jnp.max(jnp.abs(out - dense))) < 1e-5, impl


def test_reference_drops_skipped_blocks_exactly():
  """Changing keys/values of skipped blocks changes nothing; of a kept block, it does."""
  (q, k, v), mask, ref_out, _ = _case(N, N)
  m = np.asarray(mask)
  skipped = ~m[0, 0].any(0)  # key blocks no query block of head 0 keeps
  kept = m[0, 0, 0]
  j_skip, j_keep = int(np.argmax(skipped)), int(np.argmax(kept))
  assert skipped.any()
  for j, changes in ((j_skip, False), (j_keep, True)):
    v2 = v.at[0, j * BK:(j + 1) * BK, 0].add(10.0)
    out = block_sparse_attention_reference(q, k, v2, mask, block_q=BQ, block_k=BK)
    assert bool(jnp.any(jnp.abs(out - ref_out)[0, :, 0] > 1e-3)) == changes


def test_empty_row_gives_zero_output_everywhere():
  q, k, v = _qkv(256, 256)
  mask = jnp.asarray(np.array([[[[True, False, True, False], [False] * 4]] * H]))
  for impl in ("pallas", "xla", "reference"):
    out = kernels_pallas.block_sparse_attention(q, k, v, mask, block_q=BQ, block_k=BK,
                                                implementation=impl)
    assert float(jnp.max(jnp.abs(out[:, BQ:]))) == 0.0, impl
    assert float(jnp.max(jnp.abs(out[:, :BQ]))) > 0.1, impl


def test_xla_path_under_jit_and_with_max_kept_blocks():
  (q, k, v), mask, ref_out, _ = _case(N, N)
  traced = jax.jit(functools.partial(kernels_pallas.block_sparse_attention, block_q=BQ,
                                     block_k=BK, implementation="xla"))(q, k, v, mask)
  assert float(jnp.max(jnp.abs(traced - ref_out))) < 1e-5
  bound = int(np.asarray(mask).sum(-1).max())
  bounded = jax.jit(functools.partial(kernels_pallas.block_sparse_attention, block_q=BQ,
                                      block_k=BK, implementation="xla",
                                      max_kept_blocks=bound))(q, k, v, mask)
  assert float(jnp.max(jnp.abs(bounded - ref_out))) < 1e-5


def test_kept_block_lists():
  mask = np.random.default_rng(3).random((2, 3, 5, 9)) < 0.4
  lut, cnt = kept_block_lists(jnp.asarray(mask))
  np.testing.assert_array_equal(np.asarray(cnt), mask.sum(-1))
  for idx in np.ndindex(mask.shape[:-1]):
    c = int(cnt[idx])
    np.testing.assert_array_equal(np.asarray(lut[idx][:c]), np.nonzero(mask[idx])[0])
    assert sorted(np.asarray(lut[idx]).tolist()) == list(range(9))


@pytest.mark.parametrize("bad,message", [
    (jnp.ones((B, H, 4, 4), bool), r"expected \[1 or 1, 2 or 1, 4, 8\]"),
    (jnp.ones((B, H, 4, 8), jnp.int32), "must be boolean"),
])
def test_bad_masks_are_refused_clearly(bad, message):
  q, k, v = _qkv(N, N)
  with pytest.raises(ValueError, match=message):
    kernels_pallas.block_sparse_attention(q, k, v, bad, block_q=BQ, block_k=BK)


@pytest.mark.parametrize("change,message", [
    (lambda q, k, v: (q[0], k, v), r"expects q, k, v as \[batch, seq, heads, dim\]"),
    (lambda q, k, v: (q, k, v[:, :64]), r"k \(1, 512, 2, 64\) and v \(1, 64, 2, 64\) must have the same shape"),
    (lambda q, k, v: (q[:, :, :1], k, v), "must share batch, heads and dim"),
    (lambda q, k, v: (q.astype(jnp.int32), k, v), "expects floating q, k, v"),
])
def test_bad_qkv_are_refused_clearly_at_trace_time(change, message):
  q, k, v = change(*_qkv(N, N))
  mask = jnp.ones((1, 1, N // BQ, N // BK), bool)
  op = functools.partial(kernels_pallas.block_sparse_attention, block_q=BQ, block_k=BK, implementation="xla")
  with pytest.raises(ValueError, match=message):
    op(q, k, v, mask)
  with pytest.raises(ValueError, match=message):  # static checks: raised while tracing
    jax.jit(op)(q, k, v, mask)
