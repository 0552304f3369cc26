"""Samplers: integrate a learned velocity field from noise (t = 1) to data (t = 0).

The convention is rectified flow's (`jaxpapers.diffusion.flow_matching`): x_t = (1 - t) x_0 +
t eps, so dx/dt = u = eps - x_0 and sampling runs t from 1 down to 0.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxpapers.diffusion.flow_matching import Velocity


def euler_sample(model: Velocity, noise: jax.Array, labels: jax.Array, steps: int,
                 attention: Any = None) -> jax.Array:
  """Integrates dx/dt = u(x, t, c) from t = 1 (noise) to t = 0 in `steps` Euler steps."""
  times = jnp.linspace(1.0, 0.0, steps + 1)

  def step(x, i):
    t, t_next = times[i], times[i + 1]
    u = model(x, jnp.full((x.shape[0],), t), labels, attention)
    return x + (t_next - t) * u, None

  x, _ = jax.lax.scan(step, noise, jnp.arange(steps))
  return x
