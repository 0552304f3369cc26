"""Attention layers against per-head numpy references; masks, GQA, causality."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.nn import attention as attn


def reference(layer, x, segment_ids):
  """Explicit loops over heads: causal + window + segment mask, RoPE, QK-norm, sigmoid gate."""
  heads, kv_heads, dim = layer.shape
  x = np.asarray(x, np.float64)
  b, t, _ = x.shape

  def rms(z, scale):
    return z / np.sqrt(np.mean(z**2, -1, keepdims=True) + 1e-5) * np.asarray(scale)

  q = rms((x @ np.asarray(layer.q[...])).reshape(b, t, heads, dim), layer.q_norm.scale[...])
  k = rms((x @ np.asarray(layer.k[...])).reshape(b, t, kv_heads, dim), layer.k_norm.scale[...])
  v = (x @ np.asarray(layer.v[...])).reshape(b, t, kv_heads, dim)
  if layer.window is not None:
    half = dim // 2
    freq = layer.rope_theta ** (-np.arange(half) / half)
    ang = np.arange(t)[:, None] * freq  # [T, D/2]
    def rot(z):
      z1, z2 = z[..., :half], z[..., half:]
      c, s = np.cos(ang)[None, :, None], np.sin(ang)[None, :, None]
      return np.concatenate([z1 * c - z2 * s, z2 * c + z1 * s], -1)
    q, k = rot(q), rot(k)
  out = np.zeros((b, t, heads, dim))
  for bi in range(b):
    for h in range(heads):
      g = h // (heads // kv_heads)
      for i in range(t):
        keys = [j for j in range(i + 1) if segment_ids[bi, j] == segment_ids[bi, i]
                and (layer.window is None or i - j < layer.window)]
        logits = np.array([q[bi, i, h] @ k[bi, j, g] for j in keys]) / np.sqrt(dim)
        w = np.exp(logits - logits.max())
        out[bi, i, h] = (w / w.sum()) @ v[bi, keys, g]
  out = out.reshape(b, t, heads * dim) / (1 + np.exp(-(x @ np.asarray(layer.gate[...]))))
  return out @ np.asarray(layer.o[...])


def test_local_and_global_layers_match_the_reference():
  x = jax.random.normal(jax.random.key(0), (2, 9, 16))
  segments = np.array([[0] * 4 + [1] * 5, [0] * 9])
  for window in (3, None):
    layer = attn.GatedAttention(16, 4, 2, 8, window=window, rngs=nnx.Rngs(1), init_std=0.3)
    np.testing.assert_allclose(layer(x, jnp.asarray(segments)), reference(layer, x, segments),
                               rtol=2e-4, atol=2e-5)


def test_tokens_do_not_see_other_documents_or_the_future():
  layer = attn.GatedAttention(16, 2, 1, 8, window=None, rngs=nnx.Rngs(0), init_std=0.3)
  x = jax.random.normal(jax.random.key(4), (1, 6, 16))
  segments = jnp.array([[0, 0, 0, 1, 1, 1]])
  base = layer(x, segments)
  changed = x.at[0, 0].add(5.0)  # edit the first document's first token
  after = layer(changed, segments)
  np.testing.assert_allclose(after[0, 3:], base[0, 3:], atol=1e-6)  # second document unaffected
  future = x.at[0, 5].add(5.0)
  np.testing.assert_allclose(layer(future, segments)[0, :5], base[0, :5], atol=1e-6)


def causal_reference(layer, x):
  """Causal multi-head attention with RoPE, per head and query in float64 (no fused ops)."""
  x = np.asarray(x, np.float64)
  b, t, d = x.shape
  heads = layer.num_heads
  dim = d // heads
  q, k, v = np.split((x @ np.asarray(layer.qkv.kernel[...])).reshape(b, t, 3 * heads, dim), 3, 2)
  half = dim // 2
  angle = np.arange(t)[:, None] * layer.rope_theta ** (-np.arange(half) / half)  # [T, D/2]
  c, s = np.cos(angle)[None, :, None], np.sin(angle)[None, :, None]
  rot = lambda z: np.concatenate([z[..., :half] * c - z[..., half:] * s,
                                  z[..., half:] * c + z[..., :half] * s], -1)
  q, k = rot(q), rot(k)
  out = np.zeros((b, t, heads, dim))
  for bi in range(b):
    for h in range(heads):
      for i in range(t):
        logits = k[bi, :i + 1, h] @ q[bi, i, h] / np.sqrt(dim)
        w = np.exp(logits - logits.max())
        out[bi, i, h] = (w / w.sum()) @ v[bi, :i + 1, h]
  return out.reshape(b, t, d) @ np.asarray(layer.out.kernel[...])


def test_causal_self_attention_matches_the_reference():
  layer = attn.CausalSelfAttention(16, 4, rngs=nnx.Rngs(3))
  x = jax.random.normal(jax.random.key(5), (2, 7, 16))
  assert layer.qkv.kernel.shape == (16, 48) and layer.qkv.bias is None and layer.out.bias is None
  np.testing.assert_allclose(layer(x), causal_reference(layer, x), rtol=2e-4, atol=2e-5)
  with np.testing.assert_raises(ValueError):
    attn.CausalSelfAttention(10, 4, rngs=nnx.Rngs(0))
