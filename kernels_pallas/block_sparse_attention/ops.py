"""Public block-sparse attention op (SpargeAttention2, arXiv 2602.13515, Alg. 1, Sec. 4.3).

`block_sparse_attention(q, k, v, block_mask, *, block_q, block_k)` computes, for every query
block i, softmax attention over the key blocks j with `block_mask[b, h, i, j]` True only. Three
implementations share one contract:

* "pallas": Pallas kernels (visit only kept blocks, online softmax) with a hand-written
  backward under one `jax.custom_vjp`. Its forward and backward each pick the kernel family
  by the lowering platform (`kernels_pallas.dispatch`): the GPU/Triton kernels of `kernel.py`
  on GPU (and in interpret mode on CPU, as before), the TPU/Mosaic kernels of `tpu_kernel.py`
  (scalar-prefetched kept-block lists) on TPU; `backend="gpu"|"tpu"` forces a family.
* "xla": gather of the kept key blocks (`xla.py`), fast on CPU, differentiated by autodiff.
* "reference": dense masked attention (`reference.py`).

Sequences that are not multiples of the block sizes are zero-padded to whole blocks; padded keys
are masked out and padded query rows dropped, so the result equals the reference on the real
tokens. The mask is `[B or 1, H or 1, ceil(Nq / bq), ceil(Nk / bk)]` (True = computed); no
gradient flows to it. A query block that keeps no key block outputs zeros.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from kernels_pallas import dispatch, sharding
from kernels_pallas.block_sparse_attention import kernel as kernel_lib
from kernels_pallas.block_sparse_attention import reference as reference_lib
from kernels_pallas.block_sparse_attention import tpu_kernel
from kernels_pallas.block_sparse_attention import xla as xla_lib

IMPLEMENTATIONS = ("pallas", "xla", "reference")


class _Static(NamedTuple):
  block_q: int
  block_k: int
  kv_len: int | None
  scale: float
  interpret: Any  # None (by platform), bool or pltpu.InterpretParams
  num_warps: int | None
  num_stages: int
  backend: str | None


def kept_block_lists(block_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Kept-block index lists of a [..., n, m] mask: (lut int32 [..., n, m], cnt int32 [..., n]).

  `lut[..., i, :cnt[..., i]]` are the kept column indices of row i in increasing order; the rest
  of the row holds the skipped indices (never visited).
  """
  lut = jnp.argsort(~block_mask, axis=-1, stable=True).astype(jnp.int32)
  return lut, jnp.sum(block_mask, axis=-1, dtype=jnp.int32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def _pallas_attention(q, k, v, lut, cnt, lut_t, cnt_t, static: _Static):
  return _pallas_forward(q, k, v, lut, cnt, lut_t, cnt_t, static)[0]


def _gpu_args(static: _Static) -> dict:
  return dict(block_q=static.block_q, block_k=static.block_k, kv_len=static.kv_len,
              scale=static.scale, num_warps=static.num_warps, num_stages=static.num_stages)


def _tpu_args(static: _Static) -> dict:
  return dict(block_q=static.block_q, block_k=static.block_k, kv_len=static.kv_len,
              scale=static.scale)


def _tpu_family(static: _Static, family):
  """The TPU family, or None when the tiles cannot run on it (then only GPU is offered)."""
  error = tpu_kernel.tile_error(static.block_q, static.block_k)
  if error is None:
    return family
  if static.backend == "tpu":
    raise ValueError(error)
  return None


def _pallas_forward(q, k, v, lut, cnt, lut_t, cnt_t, static: _Static):
  gpu = lambda interpret: lambda *a: kernel_lib.forward(
      *a[:3], a[3], a[4][..., None], interpret=interpret, **_gpu_args(static))
  tpu = lambda interpret: lambda *a: tpu_kernel.forward(*a, interpret=interpret,
                                                         **_tpu_args(static))
  out, lse = dispatch.dispatch(static.backend, static.interpret, gpu, _tpu_family(static, tpu),
                               q, k, v, lut, cnt)
  return out, (q, k, v, out, lse, lut, cnt, lut_t, cnt_t)


def _pallas_backward(static: _Static, residuals, do):
  q, k, v, out, lse, lut, cnt, lut_t, cnt_t = residuals
  gpu = lambda interpret: lambda q, k, v, out, lse, do, lut, cnt, lut_t, cnt_t: kernel_lib.backward(
      q, k, v, out, lse, do, lut, cnt[..., None], lut_t, cnt_t[..., None], interpret=interpret,
      **_gpu_args(static))
  tpu = lambda interpret: lambda *a: tpu_kernel.backward(*a, interpret=interpret,
                                                          **_tpu_args(static))
  dq, dk, dv = dispatch.dispatch(static.backend, static.interpret, gpu,
                                 _tpu_family(static, tpu), q, k, v, out, lse, do, lut, cnt,
                                 lut_t, cnt_t)
  return dq, dk, dv, None, None, None, None


_pallas_attention.defvjp(_pallas_forward, _pallas_backward)


def _check(q, k, v, block_mask, block_q, block_k) -> tuple[int, int]:
  """Static (trace-time) checks of the public op's inputs; returns the mask's block counts."""
  chex.assert_rank([q, k, v], 4, exception_type=ValueError,
                   custom_message="block_sparse_attention expects q, k, v as [batch, seq, heads, dim]")
  chex.assert_type([q, k, v], float, exception_type=ValueError,
                   custom_message="block_sparse_attention expects floating q, k, v")
  chex.assert_equal_shape([k, v], exception_type=ValueError,
                          custom_message=f"k {k.shape} and v {v.shape} must have the same shape")
  chex.assert_equal_shape([q, k], dims=(0, 2, 3), exception_type=ValueError,
                          custom_message=f"q {q.shape} and k {k.shape} must share batch, heads and dim")
  if block_q < 1 or block_k < 1:
    raise ValueError(f"block sizes must be >= 1; got block_q={block_q}, block_k={block_k}")
  nq, nk = -(-q.shape[1] // block_q), -(-k.shape[1] // block_k)
  b, h = q.shape[0], q.shape[2]
  chex.assert_shape(block_mask, ({1, b}, {1, h}, nq, nk), exception_type=ValueError, custom_message=(
      f"block_mask has shape {tuple(block_mask.shape)}; expected [{b} or 1, {h} or 1, {nq}, {nk}] = "
      f"[batch, heads, ceil({q.shape[1]}/{block_q}), ceil({k.shape[1]}/{block_k})]"))
  chex.assert_type(block_mask, bool, exception_type=ValueError,
                   custom_message=f"block_mask must be boolean (True = computed); got {block_mask.dtype}")
  return nq, nk


def _pad_to(x: jax.Array, length: int) -> jax.Array:
  return x if x.shape[1] == length else jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0),
                                                    (0, 0)))


def block_sparse_attention(q: jax.Array, k: jax.Array, v: jax.Array, block_mask: jax.Array, *,
                           block_q: int, block_k: int, scale: float | None = None,
                           implementation: str = "pallas", interpret: Any = None,
                           max_kept_blocks: int | None = None, num_warps: int | None = None,
                           num_stages: int = 2, backend: str | None = None) -> jax.Array:
  """Attention restricted to the kept blocks of `block_mask`.

  Args:
    q: [batch, seq_q, heads, dim]; k, v: [batch, seq_k, heads, dim].
    block_mask: bool [batch or 1, heads or 1, ceil(seq_q / block_q), ceil(seq_k / block_k)].
    block_q, block_k: block sizes of the mask (paper: 128 and 64).
    scale: logit scale (default 1/sqrt(dim)).
    implementation: "pallas" (kernel, custom VJP), "xla" (gather) or "reference" (dense).
    interpret: Pallas interpret mode. Default None: by the lowering platform (interpret on
      CPU, where it is required; compiled on GPU and TPU). True with backend "tpu" means
      `pltpu.InterpretParams()`; a `pltpu.InterpretParams` may be passed for that backend.
    max_kept_blocks: "xla" only: kept blocks gathered per query block. Default: the mask's
      largest row count when the mask is concrete, else all blocks. A smaller value than a
      row's count drops that row's surplus blocks.
    num_warps, num_stages: Triton compiler settings of the Pallas kernels on GPU.
    backend: "pallas" only: None picks the kernel family by the platform the program is
      lowered for (TPU kernel on TPU, GPU kernel elsewhere); "gpu" or "tpu" forces one (the
      TPU kernel needs block sizes that are multiples of 8).

  Returns:
    [batch, seq_q, heads, dim], q's dtype.
  """
  nq, nk = _check(q, k, v, block_mask, block_q, block_k)
  dispatch.check_backend(backend)
  if backend == "tpu" and implementation == "pallas" and tpu_kernel.tile_error(block_q, block_k):
    raise ValueError(tpu_kernel.tile_error(block_q, block_k))
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"unknown implementation {implementation!r}; choose one of "
                     f"{', '.join(IMPLEMENTATIONS)}")
  scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
  b, seq_q, h, _ = q.shape
  seq_k = k.shape[1]
  block_mask = jnp.broadcast_to(block_mask, (b, h, nq, nk))
  if implementation == "reference":
    return reference_lib.block_sparse_attention_reference(q, k, v, block_mask, block_q=block_q,
                                                          block_k=block_k, scale=scale)
  kv_len = None if seq_k == nk * block_k else seq_k
  qp, kp, vp = _pad_to(q, nq * block_q), _pad_to(k, nk * block_k), _pad_to(v, nk * block_k)
  lut, cnt = kept_block_lists(block_mask)
  if implementation == "xla":
    if max_kept_blocks is None:
      max_kept_blocks = nk if isinstance(cnt, jax.core.Tracer) else max(1, int(np.max(cnt)))
    out = xla_lib.forward(qp, kp, vp, lut, cnt, block_mask, block_q=block_q, block_k=block_k, kv_len=kv_len,
                          scale=scale, max_kept=min(int(max_kept_blocks), nk))
  else:
    lut_t, cnt_t = kept_block_lists(jnp.swapaxes(block_mask, -1, -2))
    static = _Static(block_q, block_k, kv_len, scale, interpret, num_warps, num_stages, backend)
    out = sharding.per_shard(lambda *a: _pallas_attention(*a, static),
                             (qp, kp, vp, lut, cnt, lut_t, cnt_t),
                             ("bshd", "bshd", "bshd", "bhqk", "bhq", "bhkq", "bhk"), "bshd")
  return out[:, :seq_q]
