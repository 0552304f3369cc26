"""Flash-style Pallas kernels for 2Mamba's second-order attention (arXiv 2602.17363).

Forward (paper Sec. 5 / Sec. 6, tiled like the authors' Triton kernel): grid
`(seq // block_q, batch, heads)`; each program keeps one `[block_q, dim]` query tile, and loops
over key/value tiles of `block_k` up to the causal diagonal, with the whole K, V and `Acs` of
its (batch, head) mapped as one block (the layout of JAX's GPU flash attention, so the same code
lowers through Triton).

* squared: `w = s^2 exp(Acs_i - Acs_j)`; since the exponent is <= 0 on and below the diagonal,
  numerator and denominator are accumulated in plain fp32 with no running maximum (our
  numerics; the authors' kernel subtracts one);
  the residual is the raw row sum `r`.
* exponential: online softmax of `s + Acs_i - Acs_j` (running max `m`, sum `l`); the residual is
  `lse = m + log(l)`.

Backward (our derivation; the paper's App. C.5 gives an equivalent set): a `dK, dV, dAcs`
kernel (grid over key tiles, scanning query tiles from the diagonal to the end) and a `dQ`
kernel (grid over query tiles, scanning key tiles up to the diagonal), both recomputing the
weights tile by tile. Per-row quantities (`delta`, `1/r`, ...) are precomputed by the caller
(ops.py).

Every kernel takes `interpret`; on CPU only interpret mode exists.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

VARIANTS = ("square", "exp")


def _dot(a, b, trans_a: bool = False, trans_b: bool = False):
  """2-D matmul with fp32 accumulation (exact fp32, no TF32, for fp32 inputs; the
  paper found TF32 too imprecise)."""
  precision = lax.Precision.HIGHEST if a.dtype == jnp.float32 else None
  dims = (((0 if trans_a else 1,), (1 if trans_b else 0,)), ((), ()))
  return lax.dot_general(a, b, dims, precision=precision, preferred_element_type=jnp.float32)


def _exponent(acs_q, acs_k, start_q, start_k, block_q, block_k):
  """`Acs_i - Acs_j` of a tile, clamped at 0 and set to -inf above the diagonal."""
  rows = start_q * block_q + jnp.arange(block_q)
  cols = start_k * block_k + jnp.arange(block_k)
  diff = jnp.minimum(acs_q[:, None] - acs_k[None, :], 0.0)
  return jnp.where(rows[:, None] >= cols[None, :], diff, -jnp.inf)


def _causal_upper(start_q, block_q: int, block_k: int):
  """Number of key tiles that intersect the causal part of query tile `start_q`."""
  return lax.div(block_q * (start_q + 1) + block_k - 1, block_k)


# ---------------------------------------------------------------------------
# Forward.
# ---------------------------------------------------------------------------


def _forward_kernel(q_ref, k_ref, v_ref, acs_q_ref, acs_ref, o_ref, res_ref, *, variant: str,
                    scale: float, eps: float, block_q: int, block_k: int):
  start_q = pl.program_id(0)
  q = q_ref[...]
  acs_q = acs_q_ref[...]
  dim = q.shape[-1]

  def body(start_k, carry):
    acc, row, m = carry
    span = pl.ds(start_k * block_k, block_k)
    k, v = k_ref[span, :], v_ref[span, :]
    s = _dot(q, k, trans_b=True) * scale
    expo = _exponent(acs_q, acs_ref[span], start_q, start_k, block_q, block_k)
    if variant == "square":
      w = s * s * jnp.exp(expo)
      return acc + _dot(w.astype(v.dtype), v), row + jnp.sum(w, axis=1), m
    logits = s + expo
    m_new = jnp.maximum(m, jnp.max(logits, axis=1))
    correction = jnp.exp(m - m_new)
    p = jnp.exp(logits - m_new[:, None])
    acc = acc * correction[:, None] + _dot(p.astype(v.dtype), v)
    return acc, row * correction + jnp.sum(p, axis=1), m_new

  init = (jnp.zeros((block_q, dim), jnp.float32), jnp.zeros((block_q,), jnp.float32),
          jnp.full((block_q,), -jnp.inf, jnp.float32))
  acc, row, m = lax.fori_loop(0, _causal_upper(start_q, block_q, block_k), body, init)
  if variant == "square":
    o_ref[...] = (acc / jnp.maximum(row, eps)[:, None]).astype(o_ref.dtype)
    res_ref[...] = row
  else:
    o_ref[...] = (acc / row[:, None]).astype(o_ref.dtype)
    res_ref[...] = m + jnp.log(row)


def _tile(block, dim):
  return pl.BlockSpec((None, block, None, dim), lambda i, b, h: (b, i, h, 0))


def _whole(seq, dim):
  return pl.BlockSpec((None, seq, None, dim), lambda i, b, h: (b, 0, h, 0))


def _row_tile(block):
  return pl.BlockSpec((None, None, block), lambda i, b, h: (b, h, i))


def _row_whole(seq):
  return pl.BlockSpec((None, None, seq), lambda i, b, h: (b, h, 0))


def _compiler_params(dim: int, interpret: bool):
  if interpret:
    return None
  from jax.experimental.pallas import triton as plgpu  # pylint: disable=g-import-not-at-top
  return plgpu.CompilerParams(num_warps=4 if dim <= 64 else 8, num_stages=2)


@functools.partial(jax.jit, static_argnames=("variant", "scale", "eps", "block_q", "block_k",
                                             "interpret"))
def forward(q, k, v, acs, *, variant: str, scale: float, eps: float, block_q: int, block_k: int,
            interpret: bool):
  """Forward kernel.

  Args:
    q, k, v: `[batch, seq, heads, dim]`.
    acs: cumulative log-decay, `[batch, heads, seq]` fp32.
    variant: "square" (2Mamba) or "exp" (2Mamba-E).
    scale: score scale (1/sqrt(dim) for the paper).
    eps: denominator clamp of the squared variant.
    block_q, block_k: tile sizes; both divide seq.
    interpret: run the Pallas interpreter (CPU).

  Returns:
    `(o, res)`: output like q, and the per-row residual `[batch, heads, seq]` fp32 (the row
    sum `r` for "square", the log-sum-exp for "exp").
  """
  batch, seq, heads, dim = q.shape
  kernel = functools.partial(_forward_kernel, variant=variant, scale=scale, eps=eps,
                             block_q=block_q, block_k=block_k)
  return pl.pallas_call(
      kernel,
      grid=(seq // block_q, batch, heads),
      in_specs=[_tile(block_q, dim), _whole(seq, dim), _whole(seq, dim), _row_tile(block_q),
                _row_whole(seq)],
      out_specs=[_tile(block_q, dim), _row_tile(block_q)],
      out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                 jax.ShapeDtypeStruct((batch, heads, seq), jnp.float32)],
      compiler_params=_compiler_params(dim, interpret),
      interpret=interpret,
      name=f"second_order_attention_{variant}_fwd",
  )(q, k, v, acs, acs)


# ---------------------------------------------------------------------------
# Backward.
# ---------------------------------------------------------------------------


def _tile_grads(variant, q, k, v, do, expo, s, row_a, row_b):
  """Per-tile `(yn, ds, g)`: normalised weights, score gradient, and `w * dw` (cf. App. C.5).

  For "square", `row_a = 1 / max(r, eps)` and `row_b = delta * row_a * [r > eps]`;
  for "exp", `row_a = lse` and `row_b = delta = rowsum(dO * O)`.
  """
  dp = _dot(do, v, trans_b=True)
  if variant == "square":
    e = jnp.exp(expo)
    w = s * s * e
    dw = dp * row_a[:, None] - row_b[:, None]
    return w * row_a[:, None], dw * 2.0 * s * e, w * dw
  p = jnp.exp(s + expo - row_a[:, None])
  ds = p * (dp - row_b[:, None])
  return p, ds, ds


def _dkv_kernel(q_ref, k_ref, v_ref, do_ref, acs_ref, acs_k_ref, a_ref, b_ref,
                dk_ref, dv_ref, dacs_ref, *, variant: str, scale: float, block_q: int,
                block_k: int, seq: int):
  start_k = pl.program_id(0)
  k, v = k_ref[...], v_ref[...]
  acs_k = acs_k_ref[...]
  dim = k.shape[-1]

  def body(start_q, carry):
    dk, dv, dacs = carry
    span = pl.ds(start_q * block_q, block_q)
    q, do = q_ref[span, :], do_ref[span, :]
    s = _dot(q, k, trans_b=True) * scale
    expo = _exponent(acs_ref[span], acs_k, start_q, start_k, block_q, block_k)
    yn, ds, g = _tile_grads(variant, q, k, v, do, expo, s, a_ref[span], b_ref[span])
    dv = dv + _dot(yn.astype(do.dtype), do, trans_a=True)
    dk = dk + _dot(ds.astype(q.dtype), q, trans_a=True) * scale
    return dk, dv, dacs - jnp.sum(g, axis=0)

  lower = lax.div(start_k * block_k, block_q)
  init = (jnp.zeros((block_k, dim), jnp.float32), jnp.zeros((block_k, dim), jnp.float32),
          jnp.zeros((block_k,), jnp.float32))
  dk, dv, dacs = lax.fori_loop(lower, seq // block_q, body, init)
  dk_ref[...] = dk.astype(dk_ref.dtype)
  dv_ref[...] = dv.astype(dv_ref.dtype)
  dacs_ref[...] = dacs


def _dq_kernel(q_ref, k_ref, v_ref, do_ref, acs_q_ref, acs_ref, a_ref, b_ref, dq_ref, *,
               variant: str, scale: float, block_q: int, block_k: int):
  start_q = pl.program_id(0)
  q, do = q_ref[...], do_ref[...]
  acs_q, row_a, row_b = acs_q_ref[...], a_ref[...], b_ref[...]

  def body(start_k, dq):
    span = pl.ds(start_k * block_k, block_k)
    k, v = k_ref[span, :], v_ref[span, :]
    s = _dot(q, k, trans_b=True) * scale
    expo = _exponent(acs_q, acs_ref[span], start_q, start_k, block_q, block_k)
    _, ds, _ = _tile_grads(variant, q, k, v, do, expo, s, row_a, row_b)
    return dq + _dot(ds.astype(k.dtype), k) * scale

  dq = lax.fori_loop(0, _causal_upper(start_q, block_q, block_k), body,
                     jnp.zeros(q.shape, jnp.float32))
  dq_ref[...] = dq.astype(dq_ref.dtype)


@functools.partial(jax.jit, static_argnames=("variant", "scale", "block_q", "block_k",
                                             "interpret"))
def backward(q, k, v, do, acs, row_a, row_b, *, variant: str, scale: float, block_q: int,
             block_k: int, interpret: bool):
  """Backward kernels: returns `(dq, dk, dv, dacs_col)`.

  `dacs_col[j] = -sum_i w_ij dw_ij` is the column part of the `Acs` gradient, `[batch, heads,
  seq]`; the row part is added by the caller (it is zero unless a denominator was clamped).
  """
  batch, seq, heads, dim = q.shape
  params = _compiler_params(dim, interpret)
  dkv = functools.partial(_dkv_kernel, variant=variant, scale=scale, block_q=block_q,
                          block_k=block_k, seq=seq)
  dk, dv, dacs = pl.pallas_call(
      dkv,
      grid=(seq // block_k, batch, heads),
      in_specs=[_whole(seq, dim), _tile(block_k, dim), _tile(block_k, dim), _whole(seq, dim),
                _row_whole(seq), _row_tile(block_k), _row_whole(seq), _row_whole(seq)],
      out_specs=[_tile(block_k, dim), _tile(block_k, dim), _row_tile(block_k)],
      out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype),
                 jax.ShapeDtypeStruct((batch, heads, seq), jnp.float32)],
      compiler_params=params,
      interpret=interpret,
      name=f"second_order_attention_{variant}_dkv",
  )(q, k, v, do, acs, acs, row_a, row_b)
  dq_kernel = functools.partial(_dq_kernel, variant=variant, scale=scale, block_q=block_q,
                                block_k=block_k)
  dq = pl.pallas_call(
      dq_kernel,
      grid=(seq // block_q, batch, heads),
      in_specs=[_tile(block_q, dim), _whole(seq, dim), _whole(seq, dim), _tile(block_q, dim),
                _row_tile(block_q), _row_whole(seq), _row_tile(block_q), _row_tile(block_q)],
      out_specs=_tile(block_q, dim),
      out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
      compiler_params=params,
      interpret=interpret,
      name=f"second_order_attention_{variant}_dq",
  )(q, k, v, do, acs, acs, row_a, row_b)
  return dq, dk, dv, dacs
