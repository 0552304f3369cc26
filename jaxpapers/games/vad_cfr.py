"""VAD-CFR (Volatility-Adaptive Discounted CFR), Listing 5 of arXiv 2602.16928.

The source of Li et al.'s App. 7.1; its mechanisms are described in their Sec. 4.2.1.

Three components per information set of the updating player, called in the order regret
accumulation -> average-policy accumulation -> current-policy derivation. The volatility EWMA
is either one scalar shared by every call in depth-first information-set order (the listing's
object state; a linear recurrence, evaluated with `jax.lax.associative_scan`) or one value
per information set (our vectorizable variant, not in the paper).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BASE_ALPHA = 1.5
BASE_BETA = -0.1
VOLATILITY_SENSITIVITY = 0.5
MAX_EXPECTED_REGRET = 2.0
POSITIVE_BOOST = 1.1
EWMA_NEW = 0.1
REGRET_FLOOR = -20.0
OPTIMISM_DECAY = 100.0
POLICY_EXPONENT = 1.5
BASE_GAMMA = 2.0
GAMMA_MAX = 4.0
GAMMA_SENSITIVITY = 1.5
WARMUP = 500
STABILITY_EXPONENT = 1.5
MAGNITUDE_EXPONENT = 0.5


def magnitude(r: jax.Array) -> jax.Array:
  """[I] L-infinity norm of each information set's instantaneous regret."""
  return jnp.max(jnp.abs(r), axis=-1)


def ewma_global(t: jax.Array, m: jax.Array, active: jax.Array, e_prev: jax.Array):
  """The listing's single EWMA, updated at each active information set in row order.

  Args:
    t: iteration (0-indexed).
    m: [I] magnitudes.
    active: [I] True on the information sets called this pass.
    e_prev: scalar EWMA before the first call.

  Returns:
    ([I] EWMA right after each information set's call, scalar EWMA after the last call).
  """
  a = jnp.where(active, jnp.where(t == 0, 0.0, 1.0 - EWMA_NEW), 1.0)
  b = jnp.where(active, jnp.where(t == 0, m, EWMA_NEW * m), 0.0)

  def compose(left, right):
    return left[0] * right[0], right[0] * left[1] + right[1]

  a_cum, b_cum = jax.lax.associative_scan(compose, (a, b))
  e = a_cum * e_prev + b_cum
  return e, e[-1]


def ewma_per_infoset(t: jax.Array, m: jax.Array, e_prev: jax.Array) -> jax.Array:
  """[I] one EWMA per information set."""
  return jnp.where(t == 0, m, EWMA_NEW * m + (1.0 - EWMA_NEW) * e_prev)


def discounts(t: jax.Array, e: jax.Array):
  """ADAPT's outputs after the EWMA: (v, d_plus, d_minus), each [I] (Listing 5's
  `_calculate_adaptive_params`)."""
  v = jnp.minimum(1.0, e / MAX_EXPECTED_REGRET)
  alpha = jnp.maximum(0.1, BASE_ALPHA - VOLATILITY_SENSITIVITY * v)
  beta = jnp.minimum(alpha, BASE_BETA - VOLATILITY_SENSITIVITY * v)
  big_t = t + 1.0
  d_plus = big_t**alpha / (big_t**alpha + 1.0)
  d_minus = big_t**beta / (big_t**beta + 1.0)
  return v, d_plus, d_minus


def boosted(r: jax.Array) -> jax.Array:
  return jnp.where(r > 0, POSITIVE_BOOST * r, r)


def accumulate_regret(cum: jax.Array, r: jax.Array, d_plus: jax.Array, d_minus: jax.Array) -> jax.Array:
  """Component 1: R <- max(-20, d(R) R + boosted r), d chosen by the sign of the old R."""
  d = jnp.where(cum >= 0, d_plus[:, None], d_minus[:, None])
  return jnp.maximum(REGRET_FLOOR, d * cum + boosted(r))


def average_weight(t: jax.Array, r: jax.Array) -> jax.Array:
  """Component 2's weight [I]: zero before the warm-up ends, else (t+1)^gamma x stability x size."""
  m = magnitude(r)
  v = jnp.minimum(1.0, m / MAX_EXPECTED_REGRET)
  gamma = jnp.minimum(GAMMA_MAX, BASE_GAMMA + GAMMA_SENSITIVITY * v)
  w = ((t + 1.0)**gamma / (1.0 + m**STABILITY_EXPONENT)
       * jnp.maximum(0.1, (1.0 + m / MAX_EXPECTED_REGRET)**MAGNITUDE_EXPONENT))
  return jnp.where(t < WARMUP, 0.0, w)


def next_policy(t: jax.Array, cum: jax.Array, r: jax.Array, v: jax.Array, d_plus: jax.Array,
                d_minus: jax.Array, legal: jax.Array) -> jax.Array:
  """Component 3: sigma_{t+1} proportional to max(0, d(R) R + optimism * boosted r)^1.5."""
  optimism = (1.0 / (1.0 + t / OPTIMISM_DECAY)) * jnp.maximum(0.0, 1.0 - 0.5 * v)
  d = jnp.where(cum >= 0, d_plus[:, None], d_minus[:, None])
  proj = d * cum + optimism[:, None] * boosted(r)
  x = jnp.where(legal, jnp.maximum(0.0, proj)**POLICY_EXPONENT, 0.0)
  total = x.sum(axis=1, keepdims=True)
  uniform = legal / legal.sum(axis=1, keepdims=True)
  return jnp.where(total > 0, x / jnp.where(total > 0, total, 1.0), uniform)
