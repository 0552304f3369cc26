"""GPU (Triton) Pallas kernels of the Mamba-1 selective scan (arXiv 2312.00752, Alg. 2), the
hot path of StereoAdapter-2's ConvSS2D (arXiv 2602.16915, VMamba's SS2D).

Layout inside the kernels (the wrapper in ops.py transposes): `u, delta: [batch, L, ch]`,
`Bt, Ct: [batch, N, L]` (time on the last axis, so one time step is an `[N, 1]` column), `At:
[N, ch]`; the state of a program is an `[N, dc]` tile of fp32 kept in registers (a
`fori_loop` carry) for the whole sequence, and the state *before* each chunk of `chunk` steps
is written out (`[batch, n_chunks, N, ch]`) for the backward. Grid `(batch, ch // dc)`; the
time loop runs inside the program, one step per iteration (`[1, dc]` rows of u and delta,
`[N, 1]` columns of B and C, every shape a power of two as Triton requires).

Backward (our derivation): with `g_t = dL/ds_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}`,
  `dC_t = sum_c s_t dy_t`, `dB_t = sum_c g_t delta_t u_t`, `w_t = sum_n g_t B_t`,
  `du_t = w_t delta_t`, `ddelta_t = w_t u_t + sum_n g_t s_{t-1} exp(delta_t A) A`,
  `dA = sum_t g_t s_{t-1} exp(delta_t A) delta_t`.
The reverse-time loop needs `s_{t-1}`; Triton has no scratch memory to keep a chunk's states, so
each step recomputes it from the saved chunk-boundary state (on average `chunk / 2` forward
steps per step: keep `chunk` small on GPU). The TPU kernel (tpu_kernel.py) keeps a chunk's
states in VMEM instead. `dB`, `dC` are partial sums over this program's channels (summed by the
caller), `dA` a per-batch partial sum.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

F32 = jnp.float32


def _compiler_params(interpret: bool):
  """Triton's parameters (None in interpret mode): one warp group per `[N, dc]` state tile."""
  if interpret:
    return None
  from jax.experimental.pallas import triton as plgpu  # pylint: disable=g-import-not-at-top
  return plgpu.CompilerParams(num_warps=4, num_stages=1)


def _rows(ref, t):
  return ref[pl.ds(t, 1), :].astype(F32)


def _cols(ref, t):
  return ref[:, pl.ds(t, 1)].astype(F32)


def _step(u_ref, dt_ref, bt_ref, at, t, s):
  """One recurrence step: the state after step t from the state before it."""
  u, d, b = _rows(u_ref, t), _rows(dt_ref, t), _cols(bt_ref, t)
  return jnp.exp(d * at) * s + b * (d * u)


def _forward_kernel(u_ref, dt_ref, bt_ref, ct_ref, at_ref, y_ref, s_ref, *, chunk: int,
                    n_chunks: int):
  at = at_ref[...].astype(F32)

  def chunk_body(c, s):
    s_ref[pl.ds(c, 1), :, :] = s[None]

    def step(i, s):
      t = c * chunk + i
      s = _step(u_ref, dt_ref, bt_ref, at, t, s)
      y_ref[pl.ds(t, 1), :] = jnp.sum(_cols(ct_ref, t) * s, axis=0,
                                      keepdims=True).astype(y_ref.dtype)
      return s
    return lax.fori_loop(0, chunk, step, s)

  lax.fori_loop(0, n_chunks, chunk_body, jnp.zeros(at.shape, F32))


def forward(u, delta, bt, ct, at, *, chunk: int, dc: int, interpret: bool):
  """`(y [batch, L, ch], states [batch, L // chunk, N, ch])`; L a multiple of chunk, ch of dc."""
  batch, length, ch = u.shape
  n = at.shape[0]
  n_chunks = length // chunk
  row = pl.BlockSpec((None, length, dc), lambda b, j: (b, 0, j))
  col = pl.BlockSpec((None, n, length), lambda b, j: (b, 0, 0))
  return pl.pallas_call(
      functools.partial(_forward_kernel, chunk=chunk, n_chunks=n_chunks),
      grid=(batch, ch // dc),
      in_specs=[row, row, col, col, pl.BlockSpec((n, dc), lambda b, j: (0, j))],
      out_specs=[row, pl.BlockSpec((None, n_chunks, n, dc), lambda b, j: (b, 0, 0, j))],
      out_shape=[jax.ShapeDtypeStruct((batch, length, ch), F32),
                 jax.ShapeDtypeStruct((batch, n_chunks, n, ch), F32)],
      compiler_params=_compiler_params(interpret),
      interpret=interpret,
      name="selective_scan_fwd",
  )(u, delta, bt, ct, at)


def _backward_kernel(u_ref, dt_ref, bt_ref, ct_ref, at_ref, s_ref, dy_ref, du_ref, ddt_ref,
                     dbt_ref, dct_ref, dat_ref, *, chunk: int, n_chunks: int):
  at = at_ref[...].astype(F32)

  def chunk_body(k, carry):
    c = n_chunks - 1 - k
    s0 = s_ref[pl.ds(c, 1), :, :][0]

    def step(k2, carry):
      h, da = carry  # h = exp(delta_{t+1} A) g_{t+1}; da accumulates dA
      i = chunk - 1 - k2
      t = c * chunk + i
      s_prev = lax.fori_loop(0, i, lambda j, s: _step(u_ref, dt_ref, bt_ref, at,
                                                      c * chunk + j, s), s0)
      u, d, b = _rows(u_ref, t), _rows(dt_ref, t), _cols(bt_ref, t)
      cc, dy = _cols(ct_ref, t), _rows(dy_ref, t)
      decay = jnp.exp(d * at)
      s = decay * s_prev + b * (d * u)
      g = cc * dy + h
      dct_ref[:, pl.ds(t, 1)] = jnp.sum(s * dy, axis=1, keepdims=True)
      dbt_ref[:, pl.ds(t, 1)] = jnp.sum(g * (d * u), axis=1, keepdims=True)
      w = jnp.sum(g * b, axis=0, keepdims=True)
      dlog = g * s_prev * decay
      du_ref[pl.ds(t, 1), :] = w * d
      ddt_ref[pl.ds(t, 1), :] = w * u + jnp.sum(dlog * at, axis=0, keepdims=True)
      return decay * g, da + dlog * d
    return lax.fori_loop(0, chunk, step, carry)

  zeros = jnp.zeros(at.shape, F32)
  _, da = lax.fori_loop(0, n_chunks, chunk_body, (zeros, zeros))
  dat_ref[...] = da


def backward(u, delta, bt, ct, at, states, dy, *, chunk: int, dc: int, interpret: bool):
  """`(du, ddelta, dBt, dCt, dAt)`: dBt, dCt `[batch, ch // dc, N, L]` and dAt `[batch, N, ch]`
  partial sums (over channel blocks, and over batch)."""
  batch, length, ch = u.shape
  n = at.shape[0]
  n_chunks, nd = length // chunk, ch // dc
  row = pl.BlockSpec((None, length, dc), lambda b, j: (b, 0, j))
  col = pl.BlockSpec((None, n, length), lambda b, j: (b, 0, 0))
  part = pl.BlockSpec((None, None, n, length), lambda b, j: (b, j, 0, 0))
  return pl.pallas_call(
      functools.partial(_backward_kernel, chunk=chunk, n_chunks=n_chunks),
      grid=(batch, nd),
      in_specs=[row, row, col, col, pl.BlockSpec((n, dc), lambda b, j: (0, j)),
                pl.BlockSpec((None, n_chunks, n, dc), lambda b, j: (b, 0, 0, j)), row],
      out_specs=[row, row, part, part, pl.BlockSpec((None, n, dc), lambda b, j: (b, 0, j))],
      out_shape=[jax.ShapeDtypeStruct((batch, length, ch), F32),
                 jax.ShapeDtypeStruct((batch, length, ch), F32),
                 jax.ShapeDtypeStruct((batch, nd, n, length), F32),
                 jax.ShapeDtypeStruct((batch, nd, n, length), F32),
                 jax.ShapeDtypeStruct((batch, n, ch), F32)],
      compiler_params=_compiler_params(interpret),
      interpret=interpret,
      name="selective_scan_bwd",
  )(u, delta, bt, ct, at, states, dy)
