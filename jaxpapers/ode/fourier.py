"""Fourier parametrization of vectors on Z_p (He et al., arXiv 2602.16849, section on features).

For v in R^p and frequencies k = 1..K, K = (p-1)/2, omega_k = 2 pi k / p:
  c_k = (2/p) sum_j v[j] cos(omega_k j),  s_k = (2/p) sum_j v[j] sin(omega_k j),
  magnitude A_k = sqrt(c_k^2 + s_k^2), phase = atan2(-s_k, c_k),
so that the frequency-k part of v is A_k cos(omega_k j + phase). The sparsity of a neuron's
spectrum is its inverse participation ratio IPR = sum_k A_k^4 / (sum_k A_k^2)^2 in [1/K, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def fourier_coefficients(v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(c_k, s_k) for k = 1..K of vectors indexed by Z_p on the last axis.

  Args:
    v: [..., p] with p odd.

  Returns:
    c, s: [..., K].
  """
  p = v.shape[-1]
  if p % 2 == 0 or p < 3:
    raise ValueError(f"Fourier features need an odd modulus p >= 3 on the last axis, got p={p}")
  k = jnp.arange(1, (p - 1) // 2 + 1)
  angles = 2 * jnp.pi * jnp.outer(jnp.arange(p), k) / p  # [p, K]
  return (2 / p) * v @ jnp.cos(angles), (2 / p) * v @ jnp.sin(angles)


def magnitudes_and_phases(v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-frequency magnitude A_k and phase (in (-pi, pi]) of vectors on the last axis."""
  c, s = fourier_coefficients(v)
  return jnp.sqrt(c**2 + s**2), jnp.arctan2(-s, c)


def inverse_participation_ratio(magnitudes: jax.Array) -> jax.Array:
  """IPR over the last (frequency) axis: 1 for one frequency, 1/K for a flat spectrum."""
  power = magnitudes**2
  return jnp.sum(power**2, -1) / jnp.maximum(jnp.sum(power, -1) ** 2, 1e-30)
