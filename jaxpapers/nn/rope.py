"""Rotary position embedding (RoPE; Su et al., RoFormer, arXiv 2104.09864), rotate-half form.

The channels are split into halves (x1, x2) and pair i of (x1, x2) is rotated
by the angle `position * theta^(-i / (D/2))`, so that the score of a rotated query and key
depends only on their relative position.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rope(x: jax.Array, positions: jax.Array, theta: float = 10_000.0) -> jax.Array:
  """Rotary position embedding (rotate-half form) of x [B, T, H, D] at positions [B, T].

  Args:
    x: queries or keys, `[batch, seq, heads, dim]` with an even `dim`.
    positions: integer position of each token, `[batch, seq]` (broadcastable).
    theta: the frequency base.

  Returns:
    The rotated x, same shape and dtype (computed in float32).
  """
  half = x.shape[-1] // 2
  freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[..., None, None].astype(jnp.float32) * freq  # [B, T, 1, D/2]
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)
