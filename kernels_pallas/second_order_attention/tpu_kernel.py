"""TPU (Mosaic) Pallas kernels of 2Mamba's second-order attention (arXiv 2602.17363, Secs. 5-6;
backward equivalent to App. C.5).

Same contract, residuals and numerics as the GPU kernels of `kernel.py` (spec 1.8 of
`two_mamba.md`: `Acs` in fp32; the decay exponent `Acs_i - Acs_j` clamped at 0 and set to -inf
above the diagonal before the exponential; squared weights accumulated in plain fp32 with the
denominator clamped at `eps`; the exponential variant as an online softmax). How the tiles
differ from the GPU ones:

* Layout `[batch, heads, seq, dim]` (the wrapper transposes) and `Acs` as a lane-dense row
  `[batch, heads, 1, seq]`, so every block's last two dims are `(tile, dim)` or `(1, tile)`:
  tiles are multiples of 128 (or one tile over the whole, 8-padded sequence), the rule Mosaic
  imposes (last two block dims multiples of 8 and 128, or full). The GPU kernel takes powers of
  two from 16 and maps `[tile, 1 head, dim]` blocks of `[batch, seq, heads, dim]`.
* The grid carries the key loop: `(B, H, query tile, key tile)` with the key axis
  "arbitrary"; tiles above the causal diagonal skip the body (`pl.when`) and their index maps
  repeat the diagonal tile, so they cost no DMA. Accumulators live in VMEM scratch (`acc
  [bq, dim]`, row sum and running max lane-replicated `[bq, 128]`, fp32) instead of
  `fori_loop` carries over a whole-K/V block.
* Backward: a dK/dV/dAcs kernel (grid `(B, H, key tile, query tile)`, query tiles below the
  diagonal skipped) and a dQ kernel (grid `(B, H, query tile, key tile)`), both recomputing
  the weights per tile, with the per-row terms precomputed by the caller as on GPU.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from kernels_pallas.second_order_attention.kernel import _dot

NUM_LANES = 128
NUM_SUBLANES = 8
TPU_BLOCK = 128
_SEMANTICS = ("parallel", "parallel", "parallel", "arbitrary")


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def tpu_blocks(seq: int, block_q: int | None = None,
               block_k: int | None = None) -> tuple[int, int, int]:
  """`(block_q, block_k, padded length)` of the TPU kernels for a sequence of `seq` tokens.

  A sequence of at most `TPU_BLOCK` tokens is one tile, padded to a multiple of 8. Longer ones
  use the given tiles where they are multiples of 128 (else `TPU_BLOCK`) and are padded to a
  multiple of both.
  """
  if seq <= TPU_BLOCK:
    padded = _round_up(seq, NUM_SUBLANES)
    return padded, padded, padded
  legal = lambda b: b if b is not None and b > 0 and b % NUM_LANES == 0 else TPU_BLOCK
  bq, bk = legal(block_q), legal(block_k)
  return bq, bk, _round_up(seq, math.lcm(bq, bk))


def scratch_shapes(block_q: int, block_k: int, dim: int) -> dict[str, list[tuple[tuple[int, ...], jnp.dtype]]]:
  """The VMEM scratch `(shape, dtype)` of each kernel: "forward", "dkv" and "dq"."""
  f32 = jnp.dtype(jnp.float32)
  return {"forward": [((block_q, dim), f32), ((block_q, NUM_LANES), f32),
                      ((block_q, NUM_LANES), f32)],
          "dkv": [((block_k, dim), f32), ((block_k, dim), f32), ((1, block_k), f32)],
          "dq": [((block_q, dim), f32)]}


def vmem_scratch_bytes(block_q: int, block_k: int, dim: int) -> dict[str, int]:
  """Bytes of VMEM scratch of each kernel (XLA's memory analysis reports 0 for them)."""
  return {name: sum(math.prod(shape) * dtype.itemsize for shape, dtype in shapes)
          for name, shapes in scratch_shapes(block_q, block_k, dim).items()}


def _vmem(shapes) -> list:
  return [pltpu.VMEM(shape, dtype) for shape, dtype in shapes]


def _last_k(i, block_q: int, block_k: int):
  """Last key tile that meets the causal part of query tile i."""
  return lax.div(i * block_q + block_q - 1, block_k)


def _first_q(j, block_q: int, block_k: int):
  """First query tile that meets the causal part of key tile j."""
  return lax.div(j * block_k, block_q)


def _exponent(acs_col, acs_row, i, j, block_q: int, block_k: int):
  """`Acs_i - Acs_j` of tile (i, j), clamped at 0 and -inf above the diagonal (spec 1.8)."""
  shape = (block_q, block_k)
  rows = i * block_q + lax.broadcasted_iota(jnp.int32, shape, 0)
  cols = j * block_k + lax.broadcasted_iota(jnp.int32, shape, 1)
  diff = jnp.minimum(acs_col - acs_row, 0.0)
  return jnp.where(rows >= cols, diff, -jnp.inf)


def _col(ref) -> jax.Array:
  """A `(1, tile)` row block as a `(tile, 1)` column."""
  return jnp.expand_dims(ref[0], -1)


def _forward_kernel(q_ref, k_ref, v_ref, acs_q_ref, acs_k_ref, o_ref, res_ref, acc_sc, row_sc,
                    m_sc, *, variant, scale, eps, block_q, block_k, nk):
  i, j = pl.program_id(2), pl.program_id(3)

  @pl.when(j == 0)
  def _init():
    acc_sc[...] = jnp.zeros(acc_sc.shape, jnp.float32)
    row_sc[...] = jnp.zeros(row_sc.shape, jnp.float32)
    m_sc[...] = jnp.full(m_sc.shape, -jnp.inf, jnp.float32)

  @pl.when(j <= _last_k(i, block_q, block_k))
  def _step():
    v = v_ref[...]
    s = _dot(q_ref[...], k_ref[...], trans_b=True) * scale
    expo = _exponent(_col(acs_q_ref), acs_k_ref[...], i, j, block_q, block_k)
    if variant == "square":
      w = s * s * jnp.exp(expo)
      acc_sc[...] += _dot(w.astype(v.dtype), v)
      row_sc[...] += jnp.sum(w, axis=1, keepdims=True)
    else:
      logits = s + expo
      m_prev = m_sc[...]
      m_next = jnp.maximum(m_prev, jnp.max(logits, axis=1, keepdims=True))
      correction = jnp.exp(m_prev - m_next)
      p = jnp.exp(logits - m_next[:, :1])
      acc_sc[...] = acc_sc[...] * correction[:, :1] + _dot(p.astype(v.dtype), v)
      row_sc[...] = row_sc[...] * correction + jnp.sum(p, axis=1, keepdims=True)
      m_sc[...] = m_next

  @pl.when(j == nk - 1)
  def _end():
    row = row_sc[...]
    if variant == "square":
      o_ref[...] = (acc_sc[...] / jnp.maximum(row, eps)[:, :1]).astype(o_ref.dtype)
      res = row
    else:
      o_ref[...] = (acc_sc[...] / row[:, :1]).astype(o_ref.dtype)
      res = m_sc[...] + jnp.log(row)
    res_ref[...] = res.T[:1, :]


def _bhsd(x: jax.Array) -> jax.Array:
  return jnp.swapaxes(x, 1, 2)


def _rows(x: jax.Array) -> jax.Array:
  return x[:, :, None, :]


def _specs(block_q: int, block_k: int, dim: int, outer_is_q: bool):
  """(q tile, kv tile, q row, kv row) specs of a grid `(B, H, outer, inner)`.

  With `outer_is_q` the grid runs over query tiles and the key tiles past the diagonal repeat
  the last causal one; otherwise over key tiles, the query tiles before the diagonal repeating
  the first causal one.
  """
  if outer_is_q:
    qi = lambda i, j: i
    kj = lambda i, j: jnp.minimum(j, _last_k(i, block_q, block_k))
  else:
    qi = lambda j, i: jnp.maximum(i, _first_q(j, block_q, block_k))
    kj = lambda j, i: j
  return (pl.BlockSpec((None, None, block_q, dim), lambda b, h, x, y: (b, h, qi(x, y), 0)),
          pl.BlockSpec((None, None, block_k, dim), lambda b, h, x, y: (b, h, kj(x, y), 0)),
          pl.BlockSpec((None, None, 1, block_q), lambda b, h, x, y: (b, h, 0, qi(x, y))),
          pl.BlockSpec((None, None, 1, block_k), lambda b, h, x, y: (b, h, 0, kj(x, y))))


def forward(q, k, v, acs, *, variant: str, scale: float, eps: float, block_q: int, block_k: int,
            interpret):
  """Forward kernel on TPU: `(o [batch, seq, heads, dim], res [batch, heads, seq] fp32)`.

  Args:
    q, k, v: `[batch, seq, heads, dim]`, seq a multiple of both tiles (see `tpu_blocks`).
    acs: cumulative log-decay, `[batch, heads, seq]` fp32.
    variant, scale, eps: as `kernel.forward`.
    block_q, block_k: TPU tiles (multiples of 128, or both the whole sequence).
    interpret: False (Mosaic) or a `pltpu.InterpretParams` (TPU interpret mode).
  """
  batch, seq, heads, dim = q.shape
  nq, nk = seq // block_q, seq // block_k
  q_tile, kv_tile, q_row, kv_row = _specs(block_q, block_k, dim, outer_is_q=True)
  kernel = functools.partial(_forward_kernel, variant=variant, scale=scale, eps=eps,
                             block_q=block_q, block_k=block_k, nk=nk)
  acs_rows = _rows(acs)
  o, res = pl.pallas_call(
      kernel,
      grid=(batch, heads, nq, nk),
      in_specs=[q_tile, kv_tile, kv_tile, q_row, kv_row],
      out_specs=[q_tile, q_row],
      out_shape=[jax.ShapeDtypeStruct((batch, heads, seq, dim), q.dtype),
                 jax.ShapeDtypeStruct((batch, heads, 1, seq), jnp.float32)],
      scratch_shapes=_vmem(scratch_shapes(block_q, block_k, dim)["forward"]),
      compiler_params=pltpu.CompilerParams(dimension_semantics=_SEMANTICS),
      interpret=interpret,
      name=f"second_order_attention_{variant}_tpu_fwd",
  )(_bhsd(q), _bhsd(k), _bhsd(v), acs_rows, acs_rows)
  return _bhsd(o), res[:, :, 0]


def _tile_grads(variant, k, v, do, expo, s, row_a, row_b):
  """Per-tile `(yn, ds, g)` as `kernel._tile_grads`, with row terms as `(bq, 1)` columns."""
  dp = _dot(do, v, trans_b=True)
  if variant == "square":
    e = jnp.exp(expo)
    w = s * s * e
    dw = dp * row_a - row_b
    return w * row_a, dw * 2.0 * s * e, w * dw
  p = jnp.exp(s + expo - row_a)
  ds = p * (dp - row_b)
  return p, ds, ds


def _dkv_kernel(q_ref, k_ref, v_ref, do_ref, acs_q_ref, acs_k_ref, a_ref, b_ref, dk_ref, dv_ref,
                dacs_ref, dk_sc, dv_sc, dacs_sc, *, variant, scale, block_q, block_k, nq):
  j, i = pl.program_id(2), pl.program_id(3)

  @pl.when(i == 0)
  def _init():
    dk_sc[...] = jnp.zeros(dk_sc.shape, jnp.float32)
    dv_sc[...] = jnp.zeros(dv_sc.shape, jnp.float32)
    dacs_sc[...] = jnp.zeros(dacs_sc.shape, jnp.float32)

  @pl.when(i >= _first_q(j, block_q, block_k))
  def _step():
    q, k, v, do = q_ref[...], k_ref[...], v_ref[...], do_ref[...]
    s = _dot(q, k, trans_b=True) * scale
    expo = _exponent(_col(acs_q_ref), acs_k_ref[...], i, j, block_q, block_k)
    yn, ds, g = _tile_grads(variant, k, v, do, expo, s, _col(a_ref), _col(b_ref))
    dv_sc[...] += _dot(yn.astype(do.dtype), do, trans_a=True)
    dk_sc[...] += _dot(ds.astype(q.dtype), q, trans_a=True) * scale
    dacs_sc[...] -= jnp.sum(g, axis=0, keepdims=True)

  @pl.when(i == nq - 1)
  def _end():
    dk_ref[...] = dk_sc[...].astype(dk_ref.dtype)
    dv_ref[...] = dv_sc[...].astype(dv_ref.dtype)
    dacs_ref[...] = dacs_sc[...]


def _dq_kernel(q_ref, k_ref, v_ref, do_ref, acs_q_ref, acs_k_ref, a_ref, b_ref, dq_ref, dq_sc, *,
               variant, scale, block_q, block_k, nk):
  i, j = pl.program_id(2), pl.program_id(3)

  @pl.when(j == 0)
  def _init():
    dq_sc[...] = jnp.zeros(dq_sc.shape, jnp.float32)

  @pl.when(j <= _last_k(i, block_q, block_k))
  def _step():
    q, k, v, do = q_ref[...], k_ref[...], v_ref[...], do_ref[...]
    s = _dot(q, k, trans_b=True) * scale
    expo = _exponent(_col(acs_q_ref), acs_k_ref[...], i, j, block_q, block_k)
    _, ds, _ = _tile_grads(variant, k, v, do, expo, s, _col(a_ref), _col(b_ref))
    dq_sc[...] += _dot(ds.astype(k.dtype), k) * scale

  @pl.when(j == nk - 1)
  def _end():
    dq_ref[...] = dq_sc[...].astype(dq_ref.dtype)


def backward(q, k, v, do, acs, row_a, row_b, *, variant: str, scale: float, block_q: int,
             block_k: int, interpret):
  """Backward kernels on TPU: `(dq, dk, dv, dacs_col)`, as `kernel.backward`."""
  batch, seq, heads, dim = q.shape
  nq, nk = seq // block_q, seq // block_k
  args = (_bhsd(q), _bhsd(k), _bhsd(v), _bhsd(do), _rows(acs), _rows(acs), _rows(row_a),
          _rows(row_b))
  params = pltpu.CompilerParams(dimension_semantics=_SEMANTICS)
  scratch = scratch_shapes(block_q, block_k, dim)
  common = dict(variant=variant, scale=scale, block_q=block_q, block_k=block_k)

  q_tile, kv_tile, q_row, kv_row = _specs(block_q, block_k, dim, outer_is_q=False)
  dk, dv, dacs = pl.pallas_call(
      functools.partial(_dkv_kernel, nq=nq, **common),
      grid=(batch, heads, nk, nq),
      in_specs=[q_tile, kv_tile, kv_tile, q_tile, q_row, kv_row, q_row, q_row],
      out_specs=[kv_tile, kv_tile, kv_row],
      out_shape=[jax.ShapeDtypeStruct((batch, heads, seq, dim), k.dtype),
                 jax.ShapeDtypeStruct((batch, heads, seq, dim), v.dtype),
                 jax.ShapeDtypeStruct((batch, heads, 1, seq), jnp.float32)],
      scratch_shapes=_vmem(scratch["dkv"]),
      compiler_params=params,
      interpret=interpret,
      name=f"second_order_attention_{variant}_tpu_dkv",
  )(*args)

  q_tile, kv_tile, q_row, kv_row = _specs(block_q, block_k, dim, outer_is_q=True)
  dq = pl.pallas_call(
      functools.partial(_dq_kernel, nk=nk, **common),
      grid=(batch, heads, nq, nk),
      in_specs=[q_tile, kv_tile, kv_tile, q_tile, q_row, kv_row, q_row, q_row],
      out_specs=q_tile,
      out_shape=jax.ShapeDtypeStruct((batch, heads, seq, dim), q.dtype),
      scratch_shapes=_vmem(scratch["dq"]),
      compiler_params=params,
      interpret=interpret,
      name=f"second_order_attention_{variant}_tpu_dq",
  )(*args)
  return _bhsd(dq), _bhsd(dk), _bhsd(dv), dacs[:, :, 0]
