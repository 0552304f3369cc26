"""Pallas kernels of block-sparse attention (SpargeAttention2, arXiv 2602.13515, Alg. 1, Sec. 4.3).

GPU (Triton) style, after `jax.experimental.pallas.ops.gpu.attention`: the grid runs over
(query block, batch, head); each program keeps one query tile and visits only the key blocks
listed for it (`lut[b, h, i, :cnt[b, h, i]]`, the kept-block index lists of splash attention),
with an online softmax (running max m, running sum l, fp32 accumulation). The forward also
stores `lse = m + log l` per query row for the backward.

Backward (the FlashAttention backward restricted to kept tiles, as in thu-ml's SLA kernel), with
`delta = rowsum(dO * O)`:
  P = exp(q k^T s - lse);  dV += P^T dO;  dP = dO V^T;  dS = P (dP - delta);
  dQ += dS K s (dq kernel, per query block over `lut`);
  dK += dS^T Q s (dkv kernel, per key block over the transposed list `lut_t`).

Arrays arrive padded to whole blocks: q, dO [B, nq*bq, H, D], k, v [B, nk*bk, H, D]; keys at or
beyond `kv_len` are masked inside the kernels. Every kernel takes `interpret` (required on CPU).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def _dot(a: jax.Array, b: jax.Array, trans_a: bool = False, trans_b: bool = False) -> jax.Array:
  """a @ b with optional transposes, accumulated in fp32."""
  dims = (((0 if trans_a else 1,), (1 if trans_b else 0,)), ((), ()))
  return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def _key_logits(q, k, start, scale, block_k, kv_len):
  """Scaled logits of a q tile against the key block starting at token `start`, tail masked."""
  s = _dot(q, k, trans_b=True) * scale
  if kv_len is not None:
    cols = start + jnp.arange(block_k)
    s = jnp.where((cols < kv_len)[None, :], s, MASK_VALUE)
  return s


def _forward_kernel(lut_ref, cnt_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, *, scale, block_k,
                    kv_len):
  q = q_ref[...]
  block_q, dim = q.shape

  def body(t, carry):
    acc, m, l = carry
    start = lut_ref[t] * block_k
    k = k_ref[pl.ds(start, block_k), :]
    v = v_ref[pl.ds(start, block_k), :]
    s = _key_logits(q, k, start, scale, block_k, kv_len)
    m_new = jnp.maximum(m, jnp.max(s, axis=-1))
    alpha = jnp.exp(m - m_new)
    p = jnp.exp(s - m_new[:, None])
    l = alpha * l + jnp.sum(p, axis=-1)
    acc = alpha[:, None] * acc + _dot(p.astype(v.dtype), v)
    return acc, m_new, l

  init = (jnp.zeros((block_q, dim), jnp.float32), jnp.full((block_q,), -jnp.inf, jnp.float32),
          jnp.zeros((block_q,), jnp.float32))
  acc, m, l = jax.lax.fori_loop(0, cnt_ref[0], body, init)
  visited = l > 0
  safe = jnp.where(visited, l, 1.0)
  o_ref[...] = (acc / safe[:, None]).astype(o_ref.dtype)
  lse_ref[...] = jnp.where(visited, m + jnp.log(safe), 0.0)


def _dq_kernel(lut_ref, cnt_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, *,
               scale, block_k, kv_len):
  q, do = q_ref[...], do_ref[...]
  lse, delta = lse_ref[...], delta_ref[...]

  def body(t, dq):
    start = lut_ref[t] * block_k
    k = k_ref[pl.ds(start, block_k), :]
    v = v_ref[pl.ds(start, block_k), :]
    p = jnp.exp(_key_logits(q, k, start, scale, block_k, kv_len) - lse[:, None])
    ds = p * (_dot(do, v, trans_b=True) - delta[:, None])
    return dq + _dot(ds.astype(k.dtype), k) * scale

  dq = jax.lax.fori_loop(0, cnt_ref[0], body, jnp.zeros(q.shape, jnp.float32))
  dq_ref[...] = dq.astype(dq_ref.dtype)


def _dkv_kernel(lut_t_ref, cnt_t_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dk_ref,
                dv_ref, *, scale, block_q, block_k, kv_len):
  k, v = k_ref[...], v_ref[...]
  start_k = pl.program_id(0) * block_k

  def body(t, carry):
    dk, dv = carry
    rows = pl.ds(lut_t_ref[t] * block_q, block_q)
    q, do = q_ref[rows, :], do_ref[rows, :]
    lse, delta = lse_ref[rows], delta_ref[rows]
    p = jnp.exp(_key_logits(q, k, start_k, scale, block_k, kv_len) - lse[:, None])
    dv = dv + _dot(p.astype(do.dtype), do, trans_a=True)
    ds = p * (_dot(do, v, trans_b=True) - delta[:, None])
    dk = dk + _dot(ds.astype(q.dtype), q, trans_a=True) * scale
    return dk, dv

  init = (jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32))
  dk, dv = jax.lax.fori_loop(0, cnt_t_ref[0], body, init)
  dk_ref[...] = dk.astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)


def _compiler_params(dim: int, num_warps: int | None, num_stages: int):
  return plgpu.CompilerParams(num_warps=num_warps or (4 if dim <= 64 else 8),
                              num_stages=num_stages)


def _list_spec(length: int) -> pl.BlockSpec:
  """One (b, h, block) row of a [B, H, n, length] index array."""
  return pl.BlockSpec((None, None, None, length), lambda i, b, h: (b, h, i, 0))


def forward(q, k, v, lut, cnt, *, block_q: int, block_k: int, kv_len: int | None, scale: float,
            interpret: bool, num_warps: int | None = None, num_stages: int = 2):
  """Block-sparse attention forward: (out [B, Nq, H, D], lse [B, H, Nq] float32).

  Args:
    q: [B, nq*bq, H, D]; k, v: [B, nk*bk, H, D] (padded to whole blocks).
    lut: int32 [B, H, nq, nk], kept key-block indices of each query block first.
    cnt: int32 [B, H, nq, 1], how many entries of `lut` are valid.
    kv_len: number of real keys, or None when the keys fill the last block.
  """
  b, seq_q, h, d = q.shape
  seq_k = k.shape[1]
  kernel = functools.partial(_forward_kernel, scale=scale, block_k=block_k, kv_len=kv_len)
  tile = pl.BlockSpec((None, block_q, None, d), lambda i, b_, h_: (b_, i, h_, 0))
  whole = pl.BlockSpec((None, seq_k, None, d), lambda i, b_, h_: (b_, 0, h_, 0))
  return pl.pallas_call(
      kernel,
      grid=(seq_q // block_q, b, h),
      in_specs=[_list_spec(lut.shape[-1]), _list_spec(1), tile, whole, whole],
      out_specs=[tile, pl.BlockSpec((None, None, block_q), lambda i, b_, h_: (b_, h_, i))],
      out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((b, h, seq_q), jnp.float32)],
      compiler_params=_compiler_params(d, num_warps, num_stages),
      interpret=interpret,
      name="block_sparse_attention_forward",
  )(lut, cnt, q, k, v)


def backward(q, k, v, out, lse, do, lut, cnt, lut_t, cnt_t, *, block_q: int, block_k: int,
             kv_len: int | None, scale: float, interpret: bool, num_warps: int | None = None,
             num_stages: int = 2):
  """Gradients (dq, dk, dv) of block-sparse attention, shapes as q, k, v.

  Args:
    q, k, v, out, lse: the forward's inputs and outputs (padded).
    do: output cotangent [B, nq*bq, H, D] (zero on padded query rows).
    lut, cnt: the forward's lists (per query block).
    lut_t: int32 [B, H, nk, nq], for each key block the query blocks that kept it, first.
    cnt_t: int32 [B, H, nk, 1], valid entries of `lut_t`.
  """
  b, seq_q, h, d = q.shape
  seq_k = k.shape[1]
  delta = jnp.einsum("bqhd,bqhd->bhq", out.astype(jnp.float32), do.astype(jnp.float32))
  params = _compiler_params(d, num_warps, num_stages)
  q_tile = pl.BlockSpec((None, block_q, None, d), lambda i, b_, h_: (b_, i, h_, 0))
  q_row = pl.BlockSpec((None, None, block_q), lambda i, b_, h_: (b_, h_, i))
  k_whole = pl.BlockSpec((None, seq_k, None, d), lambda i, b_, h_: (b_, 0, h_, 0))
  dq = pl.pallas_call(
      functools.partial(_dq_kernel, scale=scale, block_k=block_k, kv_len=kv_len),
      grid=(seq_q // block_q, b, h),
      in_specs=[_list_spec(lut.shape[-1]), _list_spec(1), q_tile, k_whole, k_whole, q_tile,
                q_row, q_row],
      out_specs=q_tile,
      out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
      compiler_params=params,
      interpret=interpret,
      name="block_sparse_attention_dq",
  )(lut, cnt, q, k, v, do, lse, delta)
  k_tile = pl.BlockSpec((None, block_k, None, d), lambda j, b_, h_: (b_, j, h_, 0))
  q_whole = pl.BlockSpec((None, seq_q, None, d), lambda j, b_, h_: (b_, 0, h_, 0))
  q_rows = pl.BlockSpec((None, None, seq_q), lambda j, b_, h_: (b_, h_, 0))
  dk, dv = pl.pallas_call(
      functools.partial(_dkv_kernel, scale=scale, block_q=block_q, block_k=block_k,
                        kv_len=kv_len),
      grid=(seq_k // block_k, b, h),
      in_specs=[_list_spec(lut_t.shape[-1]), _list_spec(1), q_whole, k_tile, k_tile, q_whole,
                q_rows, q_rows],
      out_specs=[k_tile, k_tile],
      out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
      compiler_params=params,
      interpret=interpret,
      name="block_sparse_attention_dkv",
  )(lut_t, cnt_t, q, k, v, do, lse, delta)
  return dq, dk, dv
