"""Gamma and Dirichlet draws that compile fast on CPU (for environments sampled inside jit).

Each `jax.random` draw inlines its own threefry program, which XLA's CPU backend compiles in
~0.5 s, and `jax.random.gamma` adds a rejection loop per element: `jax.random.dirichlet`
took ~2 s to compile, most of the Calibrate-Then-Act smoke run. Here one uniform draw feeds
Marsaglia and Tsang's method ("A simple method for generating gamma variables", ACM TOMS
26(3), 2000, Sec. 4): a fixed number of candidates per element (normals by the inverse error
function, as `jax.random.normal` does) and the first accepted one is kept. For shape >= 1 a
candidate is accepted with probability >= 0.95, so with 16 candidates none is accepted with
probability below 1e-20 (the last one is then kept). Shapes below 1 use the paper's boost,
Gamma(a) = Gamma(a + 1) U^(1 / a) (Sec. 6). A Dirichlet draw normalizes independent Gammas.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

CANDIDATES = 16
_TINY = 1e-38


def gamma(key: jax.Array, shape_param, shape: tuple[int, ...],
          candidates: int = CANDIDATES) -> jax.Array:
  """Gamma(`shape_param`, 1) draws of `shape` (`shape_param` broadcast against `shape`)."""
  shape = tuple(shape)
  concrete = isinstance(shape_param, (int, float, np.ndarray, np.number))  # else traced
  boost_needed = not concrete or bool(np.min(shape_param) < 1)
  a = jnp.broadcast_to(jnp.asarray(shape_param, jnp.float32), shape)
  rows = 2 * candidates + (1 if boost_needed else 0)
  u = jax.random.uniform(key, (rows,) + shape, minval=_TINY)
  x = jnp.sqrt(2.0) * jax.lax.erf_inv(2 * u[:candidates] - 1)  # standard normals
  boost = a < 1
  a1 = jnp.where(boost, a + 1, a)
  d = a1 - 1 / 3
  c = 1 / jnp.sqrt(9 * d)
  v = (1 + c * x) ** 3
  log_v = jnp.log(jnp.maximum(v, _TINY))
  ok = (v > 0) & (jnp.log(u[candidates:2 * candidates]) < 0.5 * x ** 2 + d - d * v + d * log_v)
  ok = ok.at[-1].set(True)  # keep the last candidate if none was accepted (p < 1e-20)
  first = jnp.argmax(ok, axis=0)
  draw = d * jnp.take_along_axis(v, first[None], 0)[0]
  if boost_needed:
    draw = jnp.where(boost, draw * u[-1] ** (1 / a), draw)
  return draw


def dirichlet(key: jax.Array, alpha, shape: tuple[int, ...] = ()) -> jax.Array:
  """Dirichlet(`alpha`) draws `[*shape, len(alpha)]` (`jax.random.dirichlet`'s signature)."""
  n = np.shape(alpha)[-1]
  g = gamma(key, alpha, tuple(shape) + (n,))
  return g / g.sum(-1, keepdims=True)
