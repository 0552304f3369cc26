"""Pure-jnp references of the Mamba-1 selective scan (one scan direction).

The recurrence (Gu and Dao, arXiv 2312.00752, Alg. 2, zero-order-hold `A`, Euler `B`), as
VMamba's SS2D and StereoAdapter-2's ConvSS2D (arXiv 2602.16915) use it, per channel `c` and
state `n`:

  `s_t[c, n] = exp(delta_t[c] A[c, n]) s_{t-1}[c, n] + delta_t[c] B_t[n] u_t[c]`,  `s_{-1} = 0`,
  `y_t[c] = sum_n C_t[n] s_t[c, n] + D[c] u_t[c]`.

Layouts: `u, delta: [batch, L, channels]`, `B, C: [batch, L, N]`, `A: [channels, N]`,
`D: [channels]`. `sequential` is a `lax.scan` over time (the oracle); `associative` runs
`lax.associative_scan` with the operator `(a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)` on
`(exp(delta A), delta B u)`, which materialises every state (`[batch, L, channels, N]`).
Both are differentiated by autodiff. Arithmetic is in fp32 (or wider), the result in u's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _acc(x: jax.Array) -> jax.Array:
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _skip(y: jax.Array, u: jax.Array, D: jax.Array | None) -> jax.Array:
  return y if D is None else y + _acc(D) * _acc(u)


def sequential(u, delta, A, B, C, D=None) -> jax.Array:
  """`y [batch, L, channels]` of the selective scan by a `lax.scan` over time."""
  u32, d32, a32, b32, c32 = (_acc(x) for x in (u, delta, A, B, C))

  def step(s, xs):
    u_t, d_t, b_t, c_t = xs  # [batch, ch], [batch, ch], [batch, N], [batch, N]
    s = jnp.exp(d_t[..., None] * a32) * s + (d_t * u_t)[..., None] * b_t[:, None, :]
    return s, jnp.einsum("bcn,bn->bc", s, c_t, precision=lax.Precision.HIGHEST)

  batch, _, channels = u.shape
  s0 = jnp.zeros((batch, channels, A.shape[-1]), u32.dtype)
  xs = tuple(jnp.swapaxes(x, 0, 1) for x in (u32, d32, b32, c32))
  _, y = lax.scan(step, s0, xs)
  return _skip(jnp.swapaxes(y, 0, 1), u, D).astype(u.dtype)


def states(u, delta, A, B) -> jax.Array:
  """Every state `s_t`, `[batch, L, channels, N]`, by `lax.associative_scan`."""
  u32, d32, a32, b32 = (_acc(x) for x in (u, delta, A, B))
  decay = jnp.exp(d32[..., None] * a32)  # [batch, L, ch, N]
  drive = (d32 * u32)[..., None] * b32[:, :, None, :]

  def combine(left, right):
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2

  return lax.associative_scan(combine, (decay, drive), axis=1)[1]


def associative(u, delta, A, B, C, D=None) -> jax.Array:
  """`y [batch, L, channels]` of the selective scan by `lax.associative_scan` (all states)."""
  s = states(u, delta, A, B)
  y = jnp.einsum("blcn,bln->blc", s, _acc(C), precision=lax.Precision.HIGHEST)
  return _skip(y, u, D).astype(u.dtype)


def random_inputs(batch: int, length: int, channels: int, n: int, seed: int = 0):
  """Random (u, delta, A, B, C, D) for tests and checks: standard normals, delta = softplus(z - 1),
  A = -exp(0.5 z); drawn with numpy (jax's N-d random draws each compile for ~1 CPU-s)."""
  rng = np.random.default_rng(seed)
  normal = lambda *shape: rng.standard_normal(shape, np.float32)
  u = normal(batch, length, channels)
  delta = np.log1p(np.exp(normal(batch, length, channels) - 1.0))  # softplus
  A = -np.exp(0.5 * normal(channels, n))
  B, C = normal(batch, length, n), normal(batch, length, n)
  return tuple(jnp.asarray(x, jnp.float32) for x in (u, delta, A, B, C, normal(channels)))

