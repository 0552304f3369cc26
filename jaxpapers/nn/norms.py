"""Root-mean-square layer normalization (RMSNorm; Zhang and Sennrich, arXiv 1910.07467).

  y = x / sqrt(mean(x^2) + eps) * scale

computed in float32 and cast back to the input dtype; `scale` is a learned per-channel gain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class RMSNorm(nnx.Module):
  """y = x / rms(x) * scale over the last axis, in float32 (scale initialized to `init`).

  Args:
    dim: width of the normalized (last) axis.
    eps: added to the mean square before the square root.
    init: initial value of every scale entry.
  """

  def __init__(self, dim: int, *, eps: float = 1e-5, init: float = 1.0):
    self.scale = nnx.Param(jnp.full((dim,), init, jnp.float32))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32**2, axis=-1, keepdims=True) + self.eps)
    return (normed * self.scale[...]).astype(x.dtype)
