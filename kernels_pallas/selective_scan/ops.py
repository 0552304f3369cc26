"""Public op: the Mamba-1 selective scan with a custom VJP (arXiv 2312.00752, Alg. 2), the scan
of each direction of StereoAdapter-2's ConvSS2D (arXiv 2602.16915; VMamba's SS2D).

`selective_scan(u, delta, A, B, C, D)` returns `y [batch, L, channels]` with, per channel c and
state n, `s_t = exp(delta_t A) s_{t-1} + delta_t B_t u_t` and `y_t = C_t . s_t + D u_t`
(reference.py). Three implementations:

* "pallas" (default): one `jax.custom_vjp` whose forward and backward each pick the kernel family
  by the platform the program is lowered for (`kernels_pallas.dispatch`): the GPU/Triton kernels
  of kernel.py on GPU (and in interpret mode on CPU), the TPU/Mosaic kernels of tpu_kernel.py on
  TPU; `backend="gpu"|"tpu"` forces one. The state stays on chip over the sequence; only the
  state before each chunk of `chunk` steps is saved for the backward (`[batch, L / chunk, N,
  channels]` fp32), never all `L` states. The skip term `D u` and its gradients are plain jnp.
* "associative": `lax.associative_scan` (all states materialised), autodiff.
* "sequential": `lax.scan` over time, autodiff (the oracle).

Any L: the sequence is zero-padded at the end to a multiple of `chunk` (delta = 0 and u = 0 there,
so the state does not change and the padded outputs are sliced off; their cotangent is zero).
Channels and states are padded inside each kernel family to its tiles (zero `A`, `B`, `C` keep
padded states at zero). Batch over more axes (ConvSS2D's four directions, each with its own `A`
and `D`) with `jax.vmap`: the kernels gain a grid axis.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from kernels_pallas import dispatch, sharding
from kernels_pallas.selective_scan import kernel as gpu_kernel
from kernels_pallas.selective_scan import reference, tpu_kernel

IMPLEMENTATIONS = ("pallas", "associative", "sequential")
DEFAULT_CHUNK = 32
GPU_CHANNEL_BLOCK = 32
F32 = jnp.float32


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _pow2(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


def default_chunk(length: int) -> int:
  """The chunk for a sequence of `length` steps: 32, or the length rounded up to 8 if shorter."""
  return min(DEFAULT_CHUNK, _round_up(max(length, 1), 8))


def check_inputs(u, delta, A, B, C, D) -> None:
  """Raises ValueError unless the shapes are the op's (static checks, run once under jit)."""
  chex.assert_rank([u, delta, B, C, A], [3, 3, 3, 3, 2], exception_type=ValueError,
                   custom_message="u, delta, B, C must be [batch, L, *] and A [channels, N]")
  chex.assert_type([u, delta, A, B, C], float, exception_type=ValueError,
                   custom_message="u, delta, A, B, C must be floating")
  batch, length, channels = u.shape
  n = A.shape[-1]
  want = {"delta": (delta, (batch, length, channels)), "A": (A, (channels, n)),
          "B": (B, (batch, length, n)), "C": (C, (batch, length, n))}
  if D is not None:
    want["D"] = (D, (channels,))
  for name, (x, shape) in want.items():
    if tuple(x.shape) != shape:
      raise ValueError(f"{name} must have shape {shape} for u {tuple(u.shape)} and A "
                       f"[channels, N={n}]; got {tuple(x.shape)}")


class _Static(NamedTuple):
  chunk: int
  backend: str | None
  interpret: Any


def _pad_to(x: jax.Array, axis: int, size: int) -> jax.Array:
  if x.shape[axis] == size:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, size - x.shape[axis])
  return jnp.pad(x, widths)


def _gpu_tiles(channels: int, n: int) -> tuple[int, int, int]:
  """`(dc, padded channels, padded N)` of the GPU kernels (powers of two for Triton)."""
  dc = min(GPU_CHANNEL_BLOCK, _pow2(channels))
  return dc, _round_up(channels, dc), _pow2(n)


def _gpu_forward(static: _Static):
  def family(interpret):
    def run(u, delta, A, B, C):
      channels, n = A.shape
      dc, chp, nnp = _gpu_tiles(channels, n)
      u_, d_ = (_pad_to(x, 2, chp) for x in (u, delta))
      bt, ct = (_pad_to(jnp.swapaxes(x, 1, 2), 1, nnp) for x in (B, C))
      at = _pad_to(_pad_to(A.T, 0, nnp), 1, chp)
      y, s = gpu_kernel.forward(u_, d_, bt, ct, at, chunk=static.chunk, dc=dc,
                                interpret=bool(interpret))
      return y[..., :channels], s[:, :, :n, :channels]
    return run
  return family


def _tpu_forward(static: _Static):
  def family(interpret):
    def run(u, delta, A, B, C):
      channels = A.shape[0]
      dc, chp = tpu_kernel.channel_block(channels)
      u_, d_ = (_pad_to(x, 2, chp) for x in (u, delta))
      y, s = tpu_kernel.forward(u_, d_, B, C, _pad_to(A.T, 1, chp), chunk=static.chunk, dc=dc,
                                interpret=interpret)
      return y[..., :channels], s[..., :channels]
    return run
  return family


def _gpu_backward(static: _Static):
  def family(interpret):
    def run(u, delta, A, B, C, states, dy):
      channels, n = A.shape
      dc, chp, nnp = _gpu_tiles(channels, n)
      u_, d_, dy_ = (_pad_to(x, 2, chp) for x in (u, delta, dy))
      bt, ct = (_pad_to(jnp.swapaxes(x, 1, 2), 1, nnp) for x in (B, C))
      at = _pad_to(_pad_to(A.T, 0, nnp), 1, chp)
      s = _pad_to(_pad_to(states, 2, nnp), 3, chp)
      du, ddt, dbt, dct, dat = gpu_kernel.backward(u_, d_, bt, ct, at, s, dy_,
                                                   chunk=static.chunk, dc=dc,
                                                   interpret=bool(interpret))
      db, dcc = (jnp.swapaxes(jnp.sum(x, 1), 1, 2)[..., :n] for x in (dbt, dct))
      return (du[..., :channels], ddt[..., :channels], jnp.sum(dat, 0).T[:channels, :n],
              db, dcc)
    return run
  return family


def _tpu_backward(static: _Static):
  def family(interpret):
    def run(u, delta, A, B, C, states, dy):
      channels = A.shape[0]
      dc, chp = tpu_kernel.channel_block(channels)
      u_, d_, dy_ = (_pad_to(x, 2, chp) for x in (u, delta, dy))
      du, ddt, db, dcc, dat = tpu_kernel.backward(u_, d_, B, C, _pad_to(A.T, 1, chp),
                                                  _pad_to(states, 3, chp), dy_,
                                                  chunk=static.chunk, dc=dc,
                                                  interpret=interpret)
      return (du[..., :channels], ddt[..., :channels], jnp.sum(dat, 0).T[:channels],
              jnp.sum(db, 1), jnp.sum(dcc, 1))
    return run
  return family


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _scan(u, delta, A, B, C, static: _Static):
  return _scan_fwd(u, delta, A, B, C, static)[0]


def _scan_fwd(u, delta, A, B, C, static: _Static):
  y, states = dispatch.dispatch(static.backend, static.interpret, _gpu_forward(static),
                                _tpu_forward(static), u, delta, A, B, C)
  return y, (u, delta, A, B, C, states)


def _scan_bwd(static: _Static, saved, dy):
  u, delta, A, B, C, states = saved
  du, ddelta, dA, dB, dC = dispatch.dispatch(
      static.backend, static.interpret, _gpu_backward(static), _tpu_backward(static),
      u, delta, A, B, C, states, dy.astype(F32))
  return du, ddelta, dA, dB, dC


_scan.defvjp(_scan_fwd, _scan_bwd)


def selective_scan(u: jax.Array, delta: jax.Array, A: jax.Array, B: jax.Array, C: jax.Array,
                   D: jax.Array | None = None, *, chunk: int | None = None,
                   implementation: str = "pallas", interpret: Any = None,
                   backend: str | None = None) -> jax.Array:
  """The Mamba-1 selective scan of one direction (arXiv 2312.00752, Alg. 2).

  Args:
    u: inputs `[batch, L, channels]`.
    delta: positive step sizes `[batch, L, channels]` (after softplus).
    A: `[channels, N]`, negative (`-exp(A_log)`).
    B, C: input and output projections `[batch, L, N]`.
    D: skip `[channels]` (Mamba's name), or None.
    chunk: time steps per chunk of the Pallas kernels (a multiple of 8); the state before each
      chunk is what the backward keeps. Default: `default_chunk(L)`.
    implementation: "pallas", "associative" or "sequential" (see the module docstring).
    interpret: run the Pallas interpreter; None: by the lowering platform (interpret on CPU).
      With backend "tpu", True means `pltpu.InterpretParams()`.
    backend: "pallas" only: None picks the kernel family by the lowering platform; "gpu" or
      "tpu" forces one.

  Returns:
    `y [batch, L, channels]` in u's dtype (arithmetic in fp32).

  Raises:
    ValueError: shapes, chunk, implementation or backend are invalid.
  """
  check_inputs(u, delta, A, B, C, D)
  if implementation == "sequential":
    return reference.sequential(u, delta, A, B, C, D)
  if implementation == "associative":
    return reference.associative(u, delta, A, B, C, D)
  if implementation != "pallas":
    raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}; got {implementation!r}")
  dispatch.check_backend(backend)
  length = u.shape[1]
  chunk = default_chunk(length) if chunk is None else chunk
  if chunk < 8 or chunk % 8:
    raise ValueError(f"chunk={chunk} must be a positive multiple of 8 (TPU sublanes); pass "
                     "e.g. 16, 32 or 64, or None for the default")
  padded = _round_up(length, chunk)
  args = [_pad_to(x.astype(F32), 1, padded) for x in (u, delta, B, C)]
  static = _Static(chunk, backend, interpret)
  y = sharding.per_shard(lambda *a: _scan(*a, static), (args[0], args[1], A.astype(F32), *args[2:]),
                         ("blc", "blc", "cn", "bln", "bln"), "blc")[:, :length]
  if D is not None:
    y = y + D.astype(F32) * u.astype(F32)
  return y.astype(u.dtype)
