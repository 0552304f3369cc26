"""Majority vote by phase symmetry (He et al., arXiv 2602.16849).

The paper's diversification condition (phase symmetry and frequency diversification) makes the
neurons' noisy votes approximate a "flawed indicator" of the right sum. The analytic network below
is our test of that mechanism (protocol in experiments/modular_addition/README.md).

The analytic quadratic network uses, for every frequency k = 1..K, N neurons with phases
phi_n = 2 pi n / N, input weights theta[j] = cos(omega_k j + phi_n) and output weights
xi[j] = cos(omega_k j + 2 phi_n). Averaging a group over its symmetric phases cancels every term
carrying exp(2 i phi) or exp(4 i phi), and summing over k gives
  logit(z) = const + c [ (p/4) 1[z = x + y] + (p/8) (1[z = 2x] + 1[z = 2y]) ],
so the right answer's peak is exactly twice each "ghost" peak at 2x and 2y and argmax is exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def phase_symmetric_network(p: int, neurons_per_frequency: int = 8,
                            symmetric: bool = True) -> tuple[jax.Array, jax.Array]:
  """W_in [K N, p] and W_out [p, K N] of the analytic network; phases all 0 if not symmetric."""
  n = neurons_per_frequency
  k = jnp.repeat(jnp.arange(1, (p - 1) // 2 + 1), n)  # [K N]
  phases = 2 * jnp.pi * jnp.tile(jnp.arange(n), (p - 1) // 2) / n
  phases = phases if symmetric else jnp.zeros_like(phases)
  angles = 2 * jnp.pi * jnp.outer(k, jnp.arange(p)) / p  # [K N, p]
  return jnp.cos(angles + phases[:, None]), jnp.cos(angles + 2 * phases[:, None]).T


def quad_logits(w_in: jax.Array, w_out: jax.Array) -> jax.Array:
  """Logits [p, p, p] of every pair (x, y): sum_m xi_m (theta_m[x] + theta_m[y])^2."""
  hidden = w_in.T[:, None, :] + w_in.T[None, :, :]  # [p, p, M]
  return hidden**2 @ w_out.T


def accuracy(logits: jax.Array) -> jax.Array:
  """Fraction of the p^2 pairs whose argmax is (x + y) mod p."""
  p = logits.shape[0]
  x, y = jnp.meshgrid(jnp.arange(p), jnp.arange(p), indexing="ij")
  return jnp.mean(jnp.argmax(logits, -1) == (x + y) % p)


def peak_ratios(logits: jax.Array) -> jax.Array:
  """(true peak - median) / (ghost peak - median) at 2x and at 2y, for all x != y: [P, 2]."""
  p = logits.shape[0]
  x, y = jnp.meshgrid(jnp.arange(p), jnp.arange(p), indexing="ij")
  x, y = x[x != y], y[x != y]
  rows = logits[x, y]  # [P, p]
  base = jnp.median(rows, axis=-1)
  true = rows[jnp.arange(len(x)), (x + y) % p] - base
  ghosts = jnp.stack([rows[jnp.arange(len(x)), (2 * x) % p], rows[jnp.arange(len(x)), (2 * y) % p]], -1)
  return true[:, None] / (ghosts - base[:, None])
