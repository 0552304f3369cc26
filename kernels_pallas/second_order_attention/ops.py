"""Public op: 2Mamba second-order attention with a custom VJP (arXiv 2602.17363, Secs. 5-6).

`second_order_attention(q, k, v, log_decay)` computes, per batch and head,

  `o_i = sum_{j<=i} w_ij v_j / max(sum_{j<=i} w_ij, eps)`,
  `w_ij = (q_i . k_j * scale)^2 exp(Acs_i - Acs_j)`,  `Acs = cumsum(log_decay)`,

and `exp_decay_attention` the 2Mamba-E variant `w_ij = exp(q_i . k_j * scale + Acs_i - Acs_j)`
(Sec. 6). The Pallas path is a `jax.custom_vjp` whose backward runs the kernels of kernel.py
(gradients equivalent to the paper's App. C.5); the gradient of `log_decay` is the reverse
cumulative sum of the `Acs` gradient, left to autodiff of the cumsum. `implementation="xla"` runs the dense reference.

Any sequence length: with the tiles left as None they are chosen from the length
(`default_block`) and the sequence is zero-padded at the end to a multiple of the tile. That is
exact because the attention is causal: a padded key comes after every real query, so it gets no
weight in a real row, and the padded query rows are sliced off (their cotangent is zero, so they
add nothing to the gradients either).
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp

from kernels_pallas.second_order_attention import kernel as kernel_lib
from kernels_pallas.second_order_attention import reference

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


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7, 8, 9))
def _attention(q, k, v, acs, variant, scale, eps, block_q, block_k, interpret):
  o, _ = kernel_lib.forward(q, k, v, acs, variant=variant, scale=scale, eps=eps,
                            block_q=block_q, block_k=block_k, interpret=interpret)
  return o


def _attention_fwd(q, k, v, acs, variant, scale, eps, block_q, block_k, interpret):
  o, res = kernel_lib.forward(q, k, v, acs, variant=variant, scale=scale, eps=eps,
                              block_q=block_q, block_k=block_k, interpret=interpret)
  return o, (q, k, v, acs, o, res)


def _attention_bwd(variant, scale, eps, block_q, block_k, interpret, saved, do):
  q, k, v, acs, o, res = saved
  # delta_i = dO_i . O_i, [batch, heads, seq] fp32.
  delta = jnp.swapaxes(jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), -1), 1, 2)
  if variant == "square":
    clamped = res <= eps
    row_a = 1.0 / jnp.maximum(res, eps)
    row_b = jnp.where(clamped, 0.0, delta * row_a)
    dacs_row = jnp.where(clamped, delta, 0.0)  # sum_j w_ij dw_ij: 0 unless r_i was clamped
  else:
    row_a, row_b, dacs_row = res, delta, 0.0  # softmax rows: sum_j dS_ij = 0 exactly
  dq, dk, dv, dacs = kernel_lib.backward(q, k, v, do.astype(q.dtype), acs, row_a, row_b,
                                         variant=variant, scale=scale, block_q=block_q,
                                         block_k=block_k, interpret=interpret)
  return dq, dk, dv, dacs + dacs_row


_attention.defvjp(_attention_fwd, _attention_bwd)


def second_order_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array, *,
                           variant: str = "square", scale: float | None = None,
                           eps: float = reference.DEFAULT_EPS, block_q: int | None = None,
                           block_k: int | None = None, implementation: str = "pallas",
                           interpret: bool | None = None) -> jax.Array:
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
    interpret: run the Pallas interpreter; default True on CPU.

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
  seq = q.shape[1]
  block_q, block_k, padded = _blocks(block_q, block_k, seq)
  if interpret is None:
    interpret = jax.default_backend() == "cpu"
  if padded != seq:  # causal: the padded keys come after every real query, so they get no
    # weight in its row; the padded queries' rows are dropped (and get a zero cotangent).
    pad = lambda x: jnp.pad(x, [(0, 0), (0, padded - seq)] + [(0, 0)] * (x.ndim - 2))
    q, k, v, log_decay = pad(q), pad(k), pad(v), pad(log_decay)
  acs = jnp.swapaxes(jnp.cumsum(log_decay.astype(jnp.float32), axis=1), 1, 2)
  out = _attention(q, k, v, acs, variant, scale, float(eps), block_q, block_k, bool(interpret))
  return out[:, :seq]


def exp_decay_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array,
                        **kwargs) -> jax.Array:
  """2Mamba-E (Sec. 6 of arXiv 2602.17363): `second_order_attention(..., variant="exp")`."""
  return second_order_attention(q, k, v, log_decay, variant="exp", **kwargs)
