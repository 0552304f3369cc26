"""TPU (Mosaic) Pallas kernels of the Mamba-1 selective scan (arXiv 2312.00752, Alg. 2; the
scan of StereoAdapter-2's ConvSS2D, arXiv 2602.16915).

Same contract and canonical residual as the GPU kernels of kernel.py (the state before each
chunk, `[batch, n_chunks, N, ch]` fp32, the same derivation of the backward), tiled for TPU:

* Grid `(batch, ch // dc, n_chunks)` with the chunk axis "arbitrary" (sequential on a core):
  the `[N, dc]` state lives in VMEM scratch across the chunk steps, and each step maps
  `[chunk, dc]` tiles of u, delta (and y) and `[chunk, N]` tiles of B, C (time on sublanes,
  channels or states on lanes: every block's last two dims are multiples of (8, 128) or whole).
  An inner `fori_loop` runs the chunk's time steps, reading one row per step.
* B and C rows (`[1, N]`) become `[N, 1]` columns by a product with an `[N, N]` identity and a
  lane reduction (no relayout of a one-row vector).
* Backward: the same grid with the chunks visited last to first (index maps `n_chunks - 1 -
  j`); each chunk's states are recomputed from its saved boundary state into a `[chunk, N, dc]`
  VMEM scratch, then the reverse-time step runs with the carry `exp(delta A) g` in VMEM scratch
  across chunks, and dA accumulates in VMEM until the last chunk. dB and dC are partial sums
  over this program's channels (summed by the caller).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

F32 = jnp.float32
NUM_LANES = 128
_SEMANTICS = ("parallel", "parallel", "arbitrary")


def channel_block(channels: int) -> tuple[int, int]:
  """`(dc, padded channels)`: all channels in one block up to 128, else blocks of 128."""
  if channels <= NUM_LANES:
    return channels, channels
  return NUM_LANES, -(-channels // NUM_LANES) * NUM_LANES


def scratch_shapes(chunk: int, n: int, dc: int) -> dict[str, list[tuple[tuple[int, ...], jnp.dtype]]]:
  """The VMEM scratch `(shape, dtype)` of each kernel: "forward" and "backward"."""
  f32 = jnp.dtype(F32)
  return {"forward": [((n, dc), f32)],
          "backward": [((chunk, n, dc), f32), ((n, dc), f32), ((n, dc), f32)]}


def vmem_scratch_bytes(chunk: int, n: int, dc: int) -> dict[str, int]:
  """Bytes of VMEM scratch of each kernel (XLA's memory analysis reports 0 for them)."""
  return {name: sum(math.prod(shape) * dtype.itemsize for shape, dtype in shapes)
          for name, shapes in scratch_shapes(chunk, n, dc).items()}


def _row(ref, i):
  return ref[pl.ds(i, 1), :].astype(F32)


def _col(row, eye):
  """A `[1, N]` row as an `[N, 1]` column."""
  return jnp.sum(eye * row, axis=1, keepdims=True)


def _eye(n: int) -> jax.Array:
  return (lax.broadcasted_iota(jnp.int32, (n, n), 0)
          == lax.broadcasted_iota(jnp.int32, (n, n), 1)).astype(F32)


def _forward_kernel(u_ref, dt_ref, b_ref, c_ref, at_ref, y_ref, s_out_ref, s_sc, *, chunk: int):
  @pl.when(pl.program_id(2) == 0)
  def _init():
    s_sc[...] = jnp.zeros(s_sc.shape, F32)

  s_out_ref[...] = s_sc[...]
  at = at_ref[...].astype(F32)
  eye = _eye(at.shape[0])

  def step(i, s):
    u, d = _row(u_ref, i), _row(dt_ref, i)
    s = jnp.exp(d * at) * s + _col(_row(b_ref, i), eye) * (d * u)
    y_ref[pl.ds(i, 1), :] = jnp.sum(_col(_row(c_ref, i), eye) * s, axis=0,
                                    keepdims=True).astype(y_ref.dtype)
    return s

  s_sc[...] = lax.fori_loop(0, chunk, step, s_sc[...])


def _vmem(shapes) -> list:
  return [pltpu.VMEM(shape, dtype) for shape, dtype in shapes]


def forward(u, delta, b, c, at, *, chunk: int, dc: int, interpret):
  """`(y [batch, L, ch], states [batch, L // chunk, N, ch])`, as `kernel.forward`, with B and C
  in `[batch, L, N]` (not transposed)."""
  batch, length, ch = u.shape
  n = at.shape[0]
  n_chunks = length // chunk
  tile = pl.BlockSpec((None, chunk, dc), lambda bi, j, k: (bi, k, j))
  bc = pl.BlockSpec((None, chunk, n), lambda bi, j, k: (bi, k, 0))
  return pl.pallas_call(
      functools.partial(_forward_kernel, chunk=chunk),
      grid=(batch, ch // dc, n_chunks),
      in_specs=[tile, tile, bc, bc, pl.BlockSpec((n, dc), lambda bi, j, k: (0, j))],
      out_specs=[tile, pl.BlockSpec((None, None, n, dc), lambda bi, j, k: (bi, k, 0, j))],
      out_shape=[jax.ShapeDtypeStruct((batch, length, ch), F32),
                 jax.ShapeDtypeStruct((batch, n_chunks, n, ch), F32)],
      scratch_shapes=_vmem(scratch_shapes(chunk, n, dc)["forward"]),
      compiler_params=pltpu.CompilerParams(dimension_semantics=_SEMANTICS),
      interpret=interpret,
      name="selective_scan_tpu_fwd",
  )(u, delta, b, c, at)


def _backward_kernel(u_ref, dt_ref, b_ref, c_ref, at_ref, s_ref, dy_ref, du_ref, ddt_ref,
                     db_ref, dc_ref, dat_ref, states_sc, h_sc, da_sc, *, chunk: int,
                     n_chunks: int):
  j = pl.program_id(2)

  @pl.when(j == 0)
  def _init():
    h_sc[...] = jnp.zeros(h_sc.shape, F32)
    da_sc[...] = jnp.zeros(da_sc.shape, F32)

  at = at_ref[...].astype(F32)
  eye = _eye(at.shape[0])

  def recompute(i, s):
    states_sc[i] = s
    u, d = _row(u_ref, i), _row(dt_ref, i)
    return jnp.exp(d * at) * s + _col(_row(b_ref, i), eye) * (d * u)

  lax.fori_loop(0, chunk, recompute, s_ref[...].astype(F32))

  def step(k, carry):
    h, da = carry
    i = chunk - 1 - k
    s_prev = states_sc[i]
    u, d, dy = _row(u_ref, i), _row(dt_ref, i), _row(dy_ref, i)
    b, cc = _col(_row(b_ref, i), eye), _col(_row(c_ref, i), eye)
    decay = jnp.exp(d * at)
    s = decay * s_prev + b * (d * u)
    g = cc * dy + h
    dc_ref[pl.ds(i, 1), :] = jnp.sum(eye * jnp.sum(s * dy, axis=1, keepdims=True), axis=0,
                                     keepdims=True)
    db_ref[pl.ds(i, 1), :] = jnp.sum(eye * jnp.sum(g * (d * u), axis=1, keepdims=True),
                                     axis=0, keepdims=True)
    w = jnp.sum(g * b, axis=0, keepdims=True)
    dlog = g * s_prev * decay
    du_ref[pl.ds(i, 1), :] = w * d
    ddt_ref[pl.ds(i, 1), :] = w * u + jnp.sum(dlog * at, axis=0, keepdims=True)
    return decay * g, da + dlog * d

  h, da = lax.fori_loop(0, chunk, step, (h_sc[...], da_sc[...]))
  h_sc[...] = h
  da_sc[...] = da

  @pl.when(j == n_chunks - 1)
  def _end():
    dat_ref[...] = da_sc[...]


def backward(u, delta, b, c, at, states, dy, *, chunk: int, dc: int, interpret):
  """`(du, ddelta, dB, dC, dAt)`: dB, dC `[batch, ch // dc, L, N]` and dAt `[batch, N, ch]`
  partial sums, with B and C in `[batch, L, N]`."""
  batch, length, ch = u.shape
  n = at.shape[0]
  n_chunks, nd = length // chunk, ch // dc
  rev = lambda k: n_chunks - 1 - k
  tile = pl.BlockSpec((None, chunk, dc), lambda bi, j, k: (bi, rev(k), j))
  bc = pl.BlockSpec((None, chunk, n), lambda bi, j, k: (bi, rev(k), 0))
  part = pl.BlockSpec((None, None, chunk, n), lambda bi, j, k: (bi, j, rev(k), 0))
  return pl.pallas_call(
      functools.partial(_backward_kernel, chunk=chunk, n_chunks=n_chunks),
      grid=(batch, nd, n_chunks),
      in_specs=[tile, tile, bc, bc, pl.BlockSpec((n, dc), lambda bi, j, k: (0, j)),
                pl.BlockSpec((None, None, n, dc), lambda bi, j, k: (bi, rev(k), 0, j)), tile],
      out_specs=[tile, tile, part, part,
                 pl.BlockSpec((None, n, dc), lambda bi, j, k: (bi, 0, j))],
      out_shape=[jax.ShapeDtypeStruct((batch, length, ch), F32),
                 jax.ShapeDtypeStruct((batch, length, ch), F32),
                 jax.ShapeDtypeStruct((batch, nd, length, n), F32),
                 jax.ShapeDtypeStruct((batch, nd, length, n), F32),
                 jax.ShapeDtypeStruct((batch, n, ch), F32)],
      scratch_shapes=_vmem(scratch_shapes(chunk, n, dc)["backward"]),
      compiler_params=pltpu.CompilerParams(dimension_semantics=_SEMANTICS),
      interpret=interpret,
      name="selective_scan_tpu_bwd",
  )(u, delta, b, c, at, states, dy)
