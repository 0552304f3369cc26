"""Public op: 2Mamba second-order attention with a custom VJP (arXiv 2602.17363, Secs. 5-6).

`second_order_attention(q, k, v, log_decay)` computes, per batch and head,

  `o_i = sum_{j<=i} w_ij v_j / max(sum_{j<=i} w_ij, eps)`,
  `w_ij = (q_i . k_j * scale)^2 exp(Acs_i - Acs_j)`,  `Acs = cumsum(log_decay)`,

and `exp_decay_attention` the 2Mamba-E variant `w_ij = exp(q_i . k_j * scale + Acs_i - Acs_j)`
(Sec. 6). The Pallas path is one `jax.custom_vjp` whose forward and backward each pick the
kernel family by the platform the program is lowered for (`kernels_pallas.dispatch`): the
GPU/Triton kernels of kernel.py on GPU (and in interpret mode on CPU), the TPU/Mosaic kernels
of tpu_kernel.py on TPU; `backend="gpu"|"tpu"` forces one. Gradients are equivalent to the
paper's App. C.5; the gradient of `log_decay` is the reverse cumulative sum of the `Acs`
gradient, left to autodiff of the cumsum. `implementation="xla"` runs the dense reference.

Any sequence length: with the tiles left as None they are chosen from the length
(`default_block` on GPU, `tpu_kernel.tpu_blocks` on TPU) and the sequence is zero-padded at the
end, inside each family's branch, to a multiple of its tiles. That is
exact because the attention is causal: a padded key comes after every real query, so it gets no
weight in a real row, and the padded query rows are sliced off (their cotangent is zero, so they
add nothing to the gradients either).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from kernels_pallas import dispatch, sharding
from kernels_pallas.second_order_attention import kernel as kernel_lib
from kernels_pallas.second_order_attention import reference, tpu_kernel

DEFAULT_BLOCK = 128
MIN_BLOCK = 16  # Triton's smallest dot tile; every default tile is a power of two in [16, 128]


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def default_block(seq: int) -> int:
  """The tile chosen for a sequence of `seq` tokens when none is given.

  The largest power of two in [MIN_BLOCK, DEFAULT_BLOCK] whose padded length stays within
  `seq // 8` tokens of the shortest padding (to a multiple of MIN_BLOCK): N 1,024 -> 128,
  N 1,000 -> 128 (pads to 1,024), N 160 -> 32 (no padding), N 97 -> 16 (pads to 112), N 1 -> 16.
  """
  if seq < 1:
    raise ValueError(f"the sequence length must be >= 1; got {seq}")
  shortest = _round_up(seq, MIN_BLOCK)
  block = DEFAULT_BLOCK
  while block > MIN_BLOCK and _round_up(seq, block) > shortest + seq // 8:
    block //= 2
  return block


def _blocks(block_q: int | None, block_k: int | None, seq: int) -> tuple[int, int, int]:
  """`(block_q, block_k, padded length)`.

  With both tiles None, both are `default_block(seq)` and the sequence is padded to a multiple
  of it. An explicit tile must be >= 1 and divide `seq` (a ValueError naming it otherwise); then
  nothing is padded, and a tile left None is `default_block(seq)` if that divides `seq`, else
  the explicit one.
  """
  for name, block in (("block_q", block_q), ("block_k", block_k)):
    if block is not None and (block < 1 or seq % block):
      raise ValueError(f"{name}={block} must be >= 1 and divide the sequence length {seq}; pass "
                       f"a divisor of {seq}, or leave both tiles None to have them chosen and "
                       "the sequence padded")
  chosen = default_block(seq)
  if block_q is None and block_k is None:
    return chosen, chosen, _round_up(seq, chosen)
  fallback = chosen if seq % chosen == 0 else (block_q or block_k)
  return block_q or fallback, block_k or fallback, seq


def check_inputs(q, k, v, log_decay) -> None:
  """Raises ValueError unless q, k, v are [batch, seq, heads, dim] and log_decay [batch, seq, heads].

  The checks read static shapes and dtypes only, so under `jax.jit` they run once at trace time.
  """
  chex.assert_rank(q, 4, exception_type=ValueError,
                   custom_message="q, k, v must share the shape [batch, seq, heads, dim]")
  chex.assert_equal_shape([q, k, v], exception_type=ValueError, custom_message=(
      "q, k, v must share the shape [batch, seq, heads, dim]; got "
      f"q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}"))
  chex.assert_type([q, k, v, log_decay], float, exception_type=ValueError,
                   custom_message="q, k, v and log_decay must be floating")
  chex.assert_shape(log_decay, q.shape[:3], exception_type=ValueError, custom_message=(
      f"log_decay must be [batch, seq, heads] = {tuple(q.shape[:3])}; got {tuple(log_decay.shape)}"))


class _Static(NamedTuple):
  variant: str
  scale: float
  eps: float
  gpu_tiles: tuple[int, int, int]  # (block_q, block_k, padded length) of the GPU kernels
  tpu_tiles: tuple[int, int, int]  # the same for the TPU kernels (`tpu_kernel.tpu_blocks`)
  backend: str | None
  interpret: Any  # None (by platform), bool or pltpu.InterpretParams


def _pad_seq(x: jax.Array, length: int, axis: int, mode: str = "constant") -> jax.Array:
  """`x` padded at the end of `axis` to `length` (zeros, or "edge" values)."""
  if x.shape[axis] == length:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, length - x.shape[axis])
  return jnp.pad(x, widths, mode=mode)


def _families(static: _Static, gpu_fn, tpu_fn):
  """`(gpu, tpu)` families of `fn(tiles, interpret) -> kernel`, each padding to its own length.

  Causal attention makes the padding exact: a padded key comes after every real query, so it
  gets no weight in a real row; padded query rows have a zero cotangent, and their outputs and
  residuals are sliced off.
  """
  gpu = lambda interpret: gpu_fn(static.gpu_tiles, bool(interpret))
  tpu = lambda interpret: tpu_fn(static.tpu_tiles, interpret)
  return gpu, tpu


def _forward_kernel(module, static: _Static, seq: int):
  def family(tiles, interpret):
    block_q, block_k, padded = tiles

    def run(q, k, v, acs):
      q, k, v = (_pad_seq(x, padded, 1) for x in (q, k, v))
      o, res = module.forward(q, k, v, _pad_seq(acs, padded, 2, "edge"), variant=static.variant,
                              scale=static.scale, eps=static.eps, block_q=block_q,
                              block_k=block_k, interpret=interpret)
      return o[:, :seq], res[..., :seq]
    return run
  return family


def _backward_kernel(module, static: _Static, seq: int):
  def family(tiles, interpret):
    block_q, block_k, padded = tiles

    def run(q, k, v, do, acs, row_a, row_b):
      q, k, v, do = (_pad_seq(x, padded, 1) for x in (q, k, v, do))
      row_a, row_b = (_pad_seq(x, padded, 2) for x in (row_a, row_b))
      grads = module.backward(q, k, v, do, _pad_seq(acs, padded, 2, "edge"), row_a, row_b,
                              variant=static.variant, scale=static.scale, block_q=block_q,
                              block_k=block_k, interpret=interpret)
      dq, dk, dv, dacs = grads
      return dq[:, :seq], dk[:, :seq], dv[:, :seq], dacs[..., :seq]
    return run
  return family


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention(q, k, v, acs, static: _Static):
  return _attention_fwd(q, k, v, acs, static)[0]


def _attention_fwd(q, k, v, acs, static: _Static):
  seq = q.shape[1]
  gpu, tpu = _families(static, _forward_kernel(kernel_lib, static, seq),
                       _forward_kernel(tpu_kernel, static, seq))
  o, res = dispatch.dispatch(static.backend, static.interpret, gpu, tpu, q, k, v, acs)
  return o, (q, k, v, acs, o, res)


def _attention_bwd(static: _Static, saved, do):
  q, k, v, acs, o, res = saved
  eps = static.eps
  # delta_i = dO_i . O_i, [batch, heads, seq] fp32.
  delta = jnp.swapaxes(jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), -1), 1, 2)
  if static.variant == "square":
    clamped = res <= eps
    row_a = 1.0 / jnp.maximum(res, eps)
    row_b = jnp.where(clamped, 0.0, delta * row_a)
    dacs_row = jnp.where(clamped, delta, 0.0)  # sum_j w_ij dw_ij: 0 unless r_i was clamped
  else:
    row_a, row_b, dacs_row = res, delta, 0.0  # softmax rows: sum_j dS_ij = 0 exactly
  seq = q.shape[1]
  gpu, tpu = _families(static, _backward_kernel(kernel_lib, static, seq),
                       _backward_kernel(tpu_kernel, static, seq))
  dq, dk, dv, dacs = dispatch.dispatch(static.backend, static.interpret, gpu, tpu, q, k, v,
                                       do.astype(q.dtype), acs, row_a, row_b)
  return dq, dk, dv, dacs + dacs_row


_attention.defvjp(_attention_fwd, _attention_bwd)


def second_order_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array, *,
                           variant: str = "square", scale: float | None = None,
                           eps: float = reference.DEFAULT_EPS, block_q: int | None = None,
                           block_k: int | None = None, implementation: str = "pallas",
                           interpret: Any = None, backend: str | None = None) -> jax.Array:
  """Causal 2Mamba attention with a data-dependent decay (Sec. 5; Sec. 6 with variant="exp").

  Args:
    q, k, v: `[batch, seq, heads, dim]` (fp32 or bf16; accumulation is fp32).
    log_decay: `A_t <= 0`, `[batch, seq, heads]`; its cumulative sum is taken in fp32.
    variant: "square" (`(q.k * scale)^2` weights, 2Mamba) or "exp" (2Mamba-E).
    scale: score scale, default `1/sqrt(dim)`.
    eps: clamp of the squared variant's denominator (ours; the authors' kernel uses 1e-8).
    block_q, block_k: kernel tiles. Left as None, they are chosen from the length
      (`default_block`: a power of two in [16, 128]) and the sequence is padded internally to a
      multiple of the tile, so any length works. A tile given explicitly must divide seq.
    implementation: "pallas" (the flash-style kernel) or "xla" (dense reference).
    interpret: run the Pallas interpreter. Default None: by the lowering platform (interpret
      on CPU; compiled on GPU and TPU). With backend "tpu", True means
      `pltpu.InterpretParams()`, and such params may be passed.
    backend: "pallas" only: None picks the kernel family by the platform the program is
      lowered for (the TPU kernel of `tpu_kernel.py` on TPU, the GPU kernel elsewhere); "gpu"
      or "tpu" forces one. The TPU kernel uses its own tiles (`tpu_kernel.tpu_blocks`: the
      given ones where they are multiples of 128, else 128; a sequence of <= 128 tokens is
      one tile) and its own padding.

  Returns:
    `[batch, seq, heads, dim]`, dtype of q.

  Raises:
    ValueError: shapes, variant, implementation or tiles are invalid.

  References:
    Mongaras and Larson, "2Mamba2Furious: Linear in Complexity, Competitive in Accuracy",
    arXiv:2602.17363, 2026.
  """
  check_inputs(q, k, v, log_decay)
  if variant not in kernel_lib.VARIANTS:
    raise ValueError(f"variant must be one of {kernel_lib.VARIANTS}; got {variant!r}")
  scale = float(q.shape[-1] ** -0.5 if scale is None else scale)
  if implementation == "xla":
    if variant == "square":
      return reference.squared_attention(q, k, v, log_decay, scale=scale, eps=eps)
    return reference.exp_attention(q, k, v, log_decay, scale=scale)
  if implementation != "pallas":
    raise ValueError(f"implementation must be 'pallas' or 'xla'; got {implementation!r}")
  dispatch.check_backend(backend)
  seq = q.shape[1]
  gpu_tiles = _blocks(block_q, block_k, seq)
  tpu_tiles = tpu_kernel.tpu_blocks(seq, block_q, block_k)
  acs = jnp.swapaxes(jnp.cumsum(log_decay.astype(jnp.float32), axis=1), 1, 2)
  static = _Static(variant, scale, float(eps), gpu_tiles, tpu_tiles, backend, interpret)
  return sharding.per_shard(lambda *a: _attention(*a, static), (q, k, v, acs),
                            ("bshd", "bshd", "bshd", "bhs"), "bshd")


def exp_decay_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array,
                        **kwargs) -> jax.Array:
  """2Mamba-E (Sec. 6 of arXiv 2602.17363): `second_order_attention(..., variant="exp")`."""
  return second_order_attention(q, k, v, log_decay, variant="exp", **kwargs)
