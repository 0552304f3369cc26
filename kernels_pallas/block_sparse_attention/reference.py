"""Pure-jnp references of block-sparse attention (SpargeAttention2, arXiv 2602.13515, Alg. 1).

`O_i = softmax over the kept key blocks of (q k^T * scale) @ V`: a dense masked attention whose
token mask is the block mask expanded to tiles. Unselected blocks contribute exactly zero (the
softmax is renormalised over what is kept); a query row that keeps no valid key gets output 0.
Readable and differentiable by autodiff: the oracle of the kernel tests.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def expand_block_mask(block_mask: jax.Array, seq_q: int, seq_k: int, block_q: int,
                      block_k: int) -> jax.Array:
  """[B, H, nq, nk] block mask -> [B, H, seq_q, seq_k] token mask (partial blocks cropped)."""
  token = jnp.repeat(jnp.repeat(block_mask, block_q, axis=-2), block_k, axis=-1)
  return token[..., :seq_q, :seq_k]


def masked_attention(q: jax.Array, k: jax.Array, v: jax.Array, token_mask: jax.Array | None,
                     scale: float | None = None) -> jax.Array:
  """Dense attention [B, N, H, D] restricted to `token_mask` [B, H, Nq, Nk] (None: full)."""
  scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
  logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * scale
  if token_mask is None:
    token_mask = jnp.ones(logits.shape, bool)
  masked = jnp.where(token_mask, logits, -jnp.inf)
  row_max = jnp.max(masked, axis=-1, keepdims=True)
  row_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
  weights = jnp.where(token_mask, jnp.exp(logits - row_max), 0.0)
  total = jnp.sum(weights, axis=-1, keepdims=True)
  probs = weights / jnp.where(total > 0, total, 1.0)
  out = jnp.einsum("bhqk,bkhd->bqhd", probs, v.astype(jnp.float32))
  return out.astype(q.dtype)


def block_sparse_attention_reference(q: jax.Array, k: jax.Array, v: jax.Array,
                                     block_mask: jax.Array, *, block_q: int, block_k: int,
                                     scale: float | None = None) -> jax.Array:
  """Dense masked attention with the expanded block mask: the kernel's oracle."""
  token_mask = expand_block_mask(block_mask, q.shape[1], k.shape[1], block_q, block_k)
  return masked_attention(q, k, v, token_mask, scale)
