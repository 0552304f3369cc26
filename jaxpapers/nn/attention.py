"""Gated grouped-query attention with local (RoPE, sliding window) and global (NoPE) layers.

The attention of the AFMoE block of Arcee Trinity (arXiv 2602.17004, spec section 1.5):
  q = RMSNorm(x Wq), k = RMSNorm(x Wk), v = x Wv            (per-head QK-norm, GQA)
  local layers: RoPE on q, k and a causal sliding window of width W
  global layers: no positional encoding (NoPE), full causal attention
  o = softmax(q k^T / sqrt(d_h) + mask) v,   y = (o * sigmoid(x Wg)) Wo
The gate is elementwise per channel. Packed sequences pass `segment_ids` so that tokens never
attend across document boundaries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class RMSNorm(nnx.Module):
  """y = x / rms(x) * scale, computed in float32 (scale initialized to `init`)."""

  def __init__(self, dim: int, *, eps: float = 1e-5, init: float = 1.0):
    self.scale = nnx.Param(jnp.full((dim,), init, jnp.float32))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32**2, axis=-1, keepdims=True) + self.eps)
    return (normed * self.scale[...]).astype(x.dtype)


def rope(x: jax.Array, positions: jax.Array, theta: float = 10_000.0) -> jax.Array:
  """Rotary position embedding (rotate-half form) of x [B, T, H, D] at positions [B, T]."""
  half = x.shape[-1] // 2
  freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[..., None, None].astype(jnp.float32) * freq  # [B, T, 1, D/2]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


def attention_mask(segment_ids: jax.Array, window: int | None) -> jax.Array:
  """[B, 1, T, T] boolean: causal, same segment, and within `window` tokens if given."""
  t = segment_ids.shape[1]
  query, key = jnp.arange(t)[:, None], jnp.arange(t)[None, :]
  allowed = key <= query
  if window is not None:
    allowed &= query - key < window
  same = segment_ids[:, :, None] == segment_ids[:, None, :]
  return (allowed[None] & same)[:, None]


class GatedAttention(nnx.Module):
  """Causal GQA with QK-norm and a sigmoid output gate; `window=None` makes a NoPE global layer.

  Args:
    d_model: model width.
    num_heads: query heads.
    num_kv_heads: key/value heads (divides num_heads).
    head_dim: width of each head.
    window: sliding-window width of a local (RoPE) layer, or None for a global NoPE layer.
    rope_theta: RoPE base.
    init_std: normal init scale of the projections.
  """

  def __init__(self, d_model: int, num_heads: int, num_kv_heads: int, head_dim: int, *,
               window: int | None, rope_theta: float = 10_000.0, init_std: float = 0.02,
               rngs: nnx.Rngs):
    if num_heads % num_kv_heads:
      raise ValueError(f"num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads}")
    init = nnx.initializers.normal(init_std)
    self.q = nnx.Param(init(rngs.params(), (d_model, num_heads * head_dim)))
    self.k = nnx.Param(init(rngs.params(), (d_model, num_kv_heads * head_dim)))
    self.v = nnx.Param(init(rngs.params(), (d_model, num_kv_heads * head_dim)))
    self.gate = nnx.Param(init(rngs.params(), (d_model, num_heads * head_dim)))
    self.o = nnx.Param(init(rngs.params(), (num_heads * head_dim, d_model)))
    self.q_norm, self.k_norm = RMSNorm(head_dim), RMSNorm(head_dim)
    self.shape = (num_heads, num_kv_heads, head_dim)
    self.window, self.rope_theta = window, rope_theta

  def __call__(self, x: jax.Array, segment_ids: jax.Array | None = None) -> jax.Array:
    """x [B, T, d] -> [B, T, d]; segment_ids [B, T] (default: one segment per row)."""
    b, t, _ = x.shape
    heads, kv_heads, dim = self.shape
    q = self.q_norm((x @ self.q[...]).reshape(b, t, heads, dim))
    k = self.k_norm((x @ self.k[...]).reshape(b, t, kv_heads, dim))
    v = (x @ self.v[...]).reshape(b, t, kv_heads, dim)
    if self.window is not None:
      positions = jnp.broadcast_to(jnp.arange(t), (b, t))
      q, k = rope(q, positions, self.rope_theta), rope(k, positions, self.rope_theta)
    if segment_ids is None:
      segment_ids = jnp.zeros((b, t), jnp.int32)
    out = jax.nn.dot_product_attention(q, k, v, mask=attention_mask(segment_ids, self.window),
                                       implementation="xla")
    out = out.reshape(b, t, heads * dim) * jax.nn.sigmoid(x @ self.gate[...])
    return out @ self.o[...]
