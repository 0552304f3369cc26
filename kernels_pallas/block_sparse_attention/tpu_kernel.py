"""TPU (Mosaic) Pallas kernels of block-sparse attention (SpargeAttention2, arXiv 2602.13515,
Alg. 1, Sec. 4.3), after JAX's splash attention (`pallas/ops/tpu/splash_attention`).

Same contract and numerics as the GPU kernels of `kernel.py` (online softmax in fp32, `lse =
m + log l` residual, the FlashAttention backward restricted to the kept tiles); how the tiles
differ from the GPU ones:

* Layout `[batch, heads, seq, dim]` (the wrapper transposes), so every block's last two dims
  are `(tile, dim)`: the tile on sublanes (a multiple of 8), the full head dim on lanes, as
  Mosaic requires. Per-row vectors (`lse`, `delta`) travel lane-dense as `[B, H, 1, seq]`
  (blocks `(1, block_q)`, as splash's backward) when `block_q` is a multiple of 128, else as
  `[B, H, seq, 1]` columns.
* The kept-block lists are scalar-prefetch operands in SMEM (`pltpu.PrefetchScalarGridSpec`,
  flattened to 1-D int32): the grid is `(B, H, query block, list slot)`; the K/V index maps
  read `lut[b, h, i, t]`, so only the kept key tiles are DMA'd into VMEM. Slots past the row's
  count repeat its last kept index (no new DMA, splash's `data_next` trick) and skip the body
  (`pl.when(t < cnt)`). The GPU kernel instead maps the whole K/V of a head and loops over the
  list in a `fori_loop`.
* Running max / sum / accumulator live in VMEM scratch (`m`, `l` lane-replicated
  `[block_q, 128]` fp32, `acc [block_q, dim]` fp32), initialised at slot 0 and written out at
  the last slot, instead of loop carries.
* Backward: a dq kernel over the lists (grid `(B, H, nq, nk)`) and a dk/dv kernel over the
  transposed lists (grid `(B, H, nk, nq)`), each accumulating in VMEM scratch.

The lists take `4 * B * H * nq * (nk + 1)` bytes of SMEM per kernel; long sequences with many
heads need them shrunk or split (splash shrinks and downcasts them), not done here.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from kernels_pallas.block_sparse_attention.kernel import MASK_VALUE, _dot

NUM_LANES = 128
NUM_SUBLANES = 8
_SEMANTICS = ("parallel", "parallel", "parallel", "arbitrary")


def tile_error(block_q: int, block_k: int) -> str | None:
  """Why (block_q, block_k) cannot be TPU tiles, or None when they can."""
  if block_q % NUM_SUBLANES or block_k % NUM_SUBLANES:
    return (f"the TPU kernel needs block_q and block_k multiples of {NUM_SUBLANES}; got "
            f"block_q={block_q}, block_k={block_k} (use e.g. 128 and 64, or backend='gpu')")
  return None


def scratch_shapes(block_q: int, block_k: int, dim: int) -> dict[str, list[tuple[tuple[int, ...], jnp.dtype]]]:
  """The VMEM scratch `(shape, dtype)` of each kernel: "forward", "dq" and "dkv"."""
  f32 = jnp.dtype(jnp.float32)
  return {"forward": [((block_q, NUM_LANES), f32), ((block_q, NUM_LANES), f32),
                      ((block_q, dim), f32)],
          "dq": [((block_q, dim), f32)],
          "dkv": [((block_k, dim), f32), ((block_k, dim), f32)]}


def vmem_scratch_bytes(block_q: int, block_k: int, dim: int) -> dict[str, int]:
  """Bytes of VMEM scratch of each kernel (XLA's memory analysis reports 0 for them)."""
  return {name: sum(math.prod(shape) * dtype.itemsize for shape, dtype in shapes)
          for name, shapes in scratch_shapes(block_q, block_k, dim).items()}


def _vmem(shapes) -> list:
  return [pltpu.VMEM(shape, dtype) for shape, dtype in shapes]


def _lane_dense(block_q: int) -> bool:
  return block_q % NUM_LANES == 0


def _to_rows(x: jax.Array, block_q: int) -> jax.Array:
  """[B, H, S] -> the kernels' row layout ([B, H, 1, S] lane-dense, else [B, H, S, 1])."""
  return x[:, :, None, :] if _lane_dense(block_q) else x[..., None]


def _row_spec(block_q: int, index_map) -> pl.BlockSpec:
  """Block of the row vector of query block `index_map(...) -> (b, h, i)`."""
  if _lane_dense(block_q):
    return pl.BlockSpec((None, None, 1, block_q),
                        lambda *a: (lambda b, h, i: (b, h, 0, i))(*index_map(*a)))
  return pl.BlockSpec((None, None, block_q, 1),
                      lambda *a: (lambda b, h, i: (b, h, i, 0))(*index_map(*a)))


def _read_rows(ref, lane_dense: bool) -> jax.Array:
  """A row-vector block as a column `[block_q, 1]`."""
  return jnp.expand_dims(ref[0], -1) if lane_dense else ref[...]


def _write_rows(ref, value: jax.Array, lane_dense: bool) -> None:
  """Writes a lane-replicated `[block_q, 128]` value into a row-vector block."""
  ref[...] = value.T[:1, :] if lane_dense else value[:, :1]


def _logits(q, k, j, scale, block_k, kv_len):
  s = _dot(q, k, trans_b=True) * scale
  if kv_len is not None:
    cols = j * block_k + lax.broadcasted_iota(jnp.int32, s.shape, 1)
    s = jnp.where(cols < kv_len, s, MASK_VALUE)
  return s


def _list_index(heads: int, rows: int):
  """Flat index of row `i` of (b, h) in a [B, H, rows] count array."""
  return lambda b, h, i: (b * heads + h) * rows + i


def _listed(heads: int, rows: int, width: int):
  """Index map helper: the block listed at slot t of row (b, h, i), clamped to the last kept."""
  row_of = _list_index(heads, rows)

  def listed(b, h, i, t, lut_ref, cnt_ref):
    row = row_of(b, h, i)
    slot = jnp.minimum(t, jnp.maximum(cnt_ref[row] - 1, 0))
    return lut_ref[row * width + slot]
  return listed


def _forward_kernel(lut_ref, cnt_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, m_sc, l_sc, acc_sc, *,
                    scale, block_k, kv_len, heads, rows, width, lane_dense):
  b, h, i, t = (pl.program_id(a) for a in range(4))
  row = _list_index(heads, rows)(b, h, i)

  @pl.when(t == 0)
  def _init():
    m_sc[...] = jnp.full(m_sc.shape, -jnp.inf, jnp.float32)
    l_sc[...] = jnp.zeros(l_sc.shape, jnp.float32)
    acc_sc[...] = jnp.zeros(acc_sc.shape, jnp.float32)

  @pl.when(t < cnt_ref[row])
  def _step():
    j = lut_ref[row * width + t]
    v = v_ref[...]
    s = _logits(q_ref[...], k_ref[...], j, scale, block_k, kv_len)
    m_prev = m_sc[...]
    m_next = jnp.maximum(m_prev, jnp.max(s, axis=1, keepdims=True))
    alpha = jnp.exp(m_prev - m_next)
    p = jnp.exp(s - m_next[:, :1])
    l_sc[...] = alpha * l_sc[...] + jnp.sum(p, axis=1, keepdims=True)
    m_sc[...] = m_next
    acc_sc[...] = alpha[:, :1] * acc_sc[...] + _dot(p.astype(v.dtype), v)

  @pl.when(t == width - 1)
  def _end():
    l = l_sc[...]
    visited = l > 0
    safe = jnp.where(visited, l, 1.0)
    o_ref[...] = (acc_sc[...] / safe[:, :1]).astype(o_ref.dtype)
    _write_rows(lse_ref, jnp.where(visited, m_sc[...] + jnp.log(safe), 0.0), lane_dense)


def _flat_lists(lut: jax.Array, cnt: jax.Array) -> tuple[jax.Array, jax.Array]:
  return lut.reshape(-1).astype(jnp.int32), cnt.reshape(-1).astype(jnp.int32)


def _bhsd(x: jax.Array) -> jax.Array:
  return jnp.swapaxes(x, 1, 2)


def forward(q, k, v, lut, cnt, *, block_q: int, block_k: int, kv_len: int | None, scale: float,
            interpret):
  """Block-sparse attention forward on TPU: (out [B, Nq, H, D], lse [B, H, Nq] float32).

  Args:
    q: [B, nq*bq, H, D]; k, v: [B, nk*bk, H, D] (padded to whole blocks).
    lut: int32 [B, H, nq, nk], kept key-block indices of each query block first.
    cnt: int32 [B, H, nq], how many entries of `lut` are valid.
    kv_len: number of real keys, or None when the keys fill the last block.
    interpret: False (Mosaic) or a `pltpu.InterpretParams` (TPU interpret mode).
  """
  b, seq_q, h, d = q.shape
  nq, width = lut.shape[-2:]
  lane = _lane_dense(block_q)
  listed = _listed(h, nq, width)
  tile = pl.BlockSpec((None, None, block_q, d), lambda b_, h_, i, t, *_: (b_, h_, i, 0))
  kv = pl.BlockSpec((None, None, block_k, d),
                    lambda b_, h_, i, t, lut_, cnt_: (b_, h_, listed(b_, h_, i, t, lut_, cnt_), 0))
  lse_spec = _row_spec(block_q, lambda b_, h_, i, t, *_: (b_, h_, i))
  kernel = functools.partial(_forward_kernel, scale=scale, block_k=block_k, kv_len=kv_len,
                             heads=h, rows=nq, width=width, lane_dense=lane)
  lse_shape = (b, h, 1, seq_q) if lane else (b, h, seq_q, 1)
  out, lse = pl.pallas_call(
      kernel,
      grid_spec=pltpu.PrefetchScalarGridSpec(
          num_scalar_prefetch=2, grid=(b, h, nq, width), in_specs=[tile, kv, kv],
          out_specs=[tile, lse_spec], scratch_shapes=_vmem(scratch_shapes(block_q, block_k, d)["forward"])),
      out_shape=[jax.ShapeDtypeStruct((b, h, seq_q, d), q.dtype),
                 jax.ShapeDtypeStruct(lse_shape, jnp.float32)],
      compiler_params=pltpu.CompilerParams(dimension_semantics=_SEMANTICS),
      interpret=interpret,
      name="block_sparse_attention_tpu_forward",
  )(*_flat_lists(lut, cnt), _bhsd(q), _bhsd(k), _bhsd(v))
  return _bhsd(out), lse.reshape(b, h, seq_q)


def _dq_kernel(lut_ref, cnt_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, dq_sc,
               *, scale, block_k, kv_len, heads, rows, width, lane_dense):
  b, h, i, t = (pl.program_id(a) for a in range(4))
  row = _list_index(heads, rows)(b, h, i)

  @pl.when(t == 0)
  def _init():
    dq_sc[...] = jnp.zeros(dq_sc.shape, jnp.float32)

  @pl.when(t < cnt_ref[row])
  def _step():
    k, v, do = k_ref[...], v_ref[...], do_ref[...]
    s = _logits(q_ref[...], k, lut_ref[row * width + t], scale, block_k, kv_len)
    p = jnp.exp(s - _read_rows(lse_ref, lane_dense))
    ds = p * (_dot(do, v, trans_b=True) - _read_rows(delta_ref, lane_dense))
    dq_sc[...] += _dot(ds.astype(k.dtype), k) * scale

  @pl.when(t == width - 1)
  def _end():
    dq_ref[...] = dq_sc[...].astype(dq_ref.dtype)


def _dkv_kernel(lut_ref, cnt_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref,
                dk_sc, dv_sc, *, scale, block_k, kv_len, heads, rows, width, lane_dense):
  b, h, j, t = (pl.program_id(a) for a in range(4))
  row = _list_index(heads, rows)(b, h, j)

  @pl.when(t == 0)
  def _init():
    dk_sc[...] = jnp.zeros(dk_sc.shape, jnp.float32)
    dv_sc[...] = jnp.zeros(dv_sc.shape, jnp.float32)

  @pl.when(t < cnt_ref[row])
  def _step():
    q, k, v, do = q_ref[...], k_ref[...], v_ref[...], do_ref[...]
    p = jnp.exp(_logits(q, k, j, scale, block_k, kv_len) - _read_rows(lse_ref, lane_dense))
    dv_sc[...] += _dot(p.astype(do.dtype), do, trans_a=True)
    ds = p * (_dot(do, v, trans_b=True) - _read_rows(delta_ref, lane_dense))
    dk_sc[...] += _dot(ds.astype(q.dtype), q, trans_a=True) * scale

  @pl.when(t == width - 1)
  def _end():
    dk_ref[...] = dk_sc[...].astype(dk_ref.dtype)
    dv_ref[...] = dv_sc[...].astype(dv_ref.dtype)


def backward(q, k, v, out, lse, do, lut, cnt, lut_t, cnt_t, *, block_q: int, block_k: int,
             kv_len: int | None, scale: float, interpret):
  """Gradients (dq, dk, dv) on TPU, shapes as q, k, v.

  Args:
    q, k, v, out, lse: the forward's inputs and outputs (padded; lse [B, H, Nq]).
    do: output cotangent [B, nq*bq, H, D] (zero on padded query rows).
    lut, cnt: the forward's lists ([B, H, nq, nk], [B, H, nq]).
    lut_t, cnt_t: the transposed lists ([B, H, nk, nq], [B, H, nk]): for each key block the
      query blocks that kept it, first.
    interpret: False (Mosaic) or a `pltpu.InterpretParams`.
  """
  b, seq_q, h, d = q.shape
  seq_k = k.shape[1]
  nq, nk = lut.shape[-2], lut_t.shape[-2]
  lane = _lane_dense(block_q)
  delta = jnp.einsum("bqhd,bqhd->bhq", out.astype(jnp.float32), do.astype(jnp.float32))
  lse_rows, delta_rows = _to_rows(lse, block_q), _to_rows(delta, block_q)
  qt, kt, vt, dot_ = _bhsd(q), _bhsd(k), _bhsd(v), _bhsd(do)
  params = pltpu.CompilerParams(dimension_semantics=_SEMANTICS)
  common = dict(scale=scale, block_k=block_k, kv_len=kv_len, heads=h, lane_dense=lane)
  scratch = scratch_shapes(block_q, block_k, d)

  listed = _listed(h, nq, nk)
  q_tile = pl.BlockSpec((None, None, block_q, d), lambda b_, h_, i, t, *_: (b_, h_, i, 0))
  kv = pl.BlockSpec((None, None, block_k, d),
                    lambda b_, h_, i, t, lut_, cnt_: (b_, h_, listed(b_, h_, i, t, lut_, cnt_), 0))
  q_row = _row_spec(block_q, lambda b_, h_, i, t, *_: (b_, h_, i))
  dq = pl.pallas_call(
      functools.partial(_dq_kernel, rows=nq, width=nk, **common),
      grid_spec=pltpu.PrefetchScalarGridSpec(
          num_scalar_prefetch=2, grid=(b, h, nq, nk),
          in_specs=[q_tile, kv, kv, q_tile, q_row, q_row], out_specs=q_tile,
          scratch_shapes=_vmem(scratch["dq"])),
      out_shape=jax.ShapeDtypeStruct((b, h, seq_q, d), q.dtype),
      compiler_params=params,
      interpret=interpret,
      name="block_sparse_attention_tpu_dq",
  )(*_flat_lists(lut, cnt), qt, kt, vt, dot_, lse_rows, delta_rows)

  listed_t = _listed(h, nk, nq)
  k_tile = pl.BlockSpec((None, None, block_k, d), lambda b_, h_, j, t, *_: (b_, h_, j, 0))
  qs = pl.BlockSpec((None, None, block_q, d),
                    lambda b_, h_, j, t, lut_, cnt_: (b_, h_, listed_t(b_, h_, j, t, lut_, cnt_), 0))
  q_rows = _row_spec(block_q, lambda b_, h_, j, t, lut_, cnt_: (
      b_, h_, listed_t(b_, h_, j, t, lut_, cnt_)))
  dk, dv = pl.pallas_call(
      functools.partial(_dkv_kernel, rows=nk, width=nq, **common),
      grid_spec=pltpu.PrefetchScalarGridSpec(
          num_scalar_prefetch=2, grid=(b, h, nk, nq),
          in_specs=[qs, k_tile, k_tile, qs, q_rows, q_rows], out_specs=[k_tile, k_tile],
          scratch_shapes=_vmem(scratch["dkv"])),
      out_shape=[jax.ShapeDtypeStruct((b, h, seq_k, d), k.dtype),
                 jax.ShapeDtypeStruct((b, h, seq_k, d), v.dtype)],
      compiler_params=params,
      interpret=interpret,
      name="block_sparse_attention_tpu_dkv",
  )(*_flat_lists(lut_t, cnt_t), qt, kt, vt, dot_, lse_rows, delta_rows)
  return _bhsd(dq), _bhsd(dk), _bhsd(dv)
