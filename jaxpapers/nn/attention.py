"""Causal self-attention layers.

`GatedAttention`: gated grouped-query attention with local (RoPE, sliding window) and global
(NoPE) layers, the attention of the AFMoE block of Arcee Trinity (arXiv 2602.17004; released form in
Hugging Face transformers' `models/afmoe/modeling_afmoe.py`):
  q = RMSNorm(x Wq), k = RMSNorm(x Wk), v = x Wv            (per-head QK-norm, GQA)
  local layers: RoPE on q, k and a causal sliding window of width W
  global layers: no positional encoding (NoPE), full causal attention
  o = softmax(q k^T / sqrt(d_h) + mask) v,   y = (o * sigmoid(x Wg)) Wo
The gate is elementwise per channel. Packed sequences pass `segment_ids` so that tokens never
attend across document boundaries.

`CausalSelfAttention`: plain causal multi-head attention with RoPE on q and k (Vaswani et al.,
arXiv 1706.03762, section 3.2.2), a fused bias-free qkv projection; the attention mixer of the
shared tiny LM (`jaxpapers.nn.tiny_lm`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn import partitioning as pt
from jaxpapers.nn.norms import RMSNorm
from jaxpapers.nn.rope import rope


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
    self.q = pt.param(init(rngs.params(), (d_model, num_heads * head_dim)), (pt.EMBED, pt.HEADS))
    self.k = pt.param(init(rngs.params(), (d_model, num_kv_heads * head_dim)), (pt.EMBED, pt.KV))
    self.v = pt.param(init(rngs.params(), (d_model, num_kv_heads * head_dim)), (pt.EMBED, pt.KV))
    self.gate = pt.param(init(rngs.params(), (d_model, num_heads * head_dim)),
                         (pt.EMBED, pt.HEADS))
    self.o = pt.param(init(rngs.params(), (num_heads * head_dim, d_model)), (pt.HEADS, pt.EMBED))
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


class CausalSelfAttention(nnx.Module):
  """Causal multi-head self-attention with RoPE, `x [B, T, d] -> [B, T, d]`.

  `q, k, v = split(x W_qkv)` into `num_heads` heads of width `d / num_heads`, RoPE on q and k,
  `o = softmax(q k^T / sqrt(d_h) + causal mask) v`, `y = o W_out`; both projections are
  bias-free `nnx.Linear`s (`qkv`, then `out`, initialized in that order).

  Args:
    d_model: model width d (a multiple of num_heads).
    num_heads: attention heads.
    rope_theta: RoPE base.
    rngs: parameter initialization.
  """

  def __init__(self, d_model: int, num_heads: int, *, rope_theta: float = 10_000.0,
               rngs: nnx.Rngs):
    if d_model % num_heads:
      raise ValueError(f"d_model={d_model} must be a multiple of num_heads={num_heads}")
    self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, rngs=rngs,
                          kernel_metadata=pt.metadata((pt.EMBED, pt.HEADS)))
    self.out = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs,
                          kernel_metadata=pt.metadata((pt.HEADS, pt.EMBED)))
    self.num_heads, self.rope_theta = num_heads, rope_theta

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, T, d] -> [B, T, d]; token t attends to tokens 0..t."""
    b, t, d = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(b, t, 3 * self.num_heads, d // self.num_heads), 3, 2)
    positions = jnp.broadcast_to(jnp.arange(t), (b, t))
    q, k = rope(q, positions, self.rope_theta), rope(k, positions, self.rope_theta)
    out = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    return self.out(out.reshape(b, t, d))
