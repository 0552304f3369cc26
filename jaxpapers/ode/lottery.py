"""Lottery ticket inside a neuron: which frequency wins (He et al., arXiv 2602.16849).

The paper's lottery ticket mechanism: frequencies compete inside each neuron and the winner is set
by its initial spectral magnitude and phase alignment. The ODE-race predictor is our operational
form of that statement.

Each (neuron, frequency) mode grows by the polar ODE (dynamics.py) from its own initial
(alpha, beta, D); growth is super-linear (finite-time blow-up), so the first mode to blow up
takes over its neuron. The predictor integrates the ODE of every mode with Euler steps of
dt = lr (the training time unit) and names, per neuron, the frequency whose beta first exceeds
`growth` times the largest initial beta. The naive baseline is argmax_k alpha0 * beta0.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxpapers.ode.dynamics import NeuronModes, neuron_modes


def _reduced_field(alpha, beta, d, p):
  """(d alpha, d beta, d D)/dt of the polar form reduced to the misalignment D."""
  cos_d, sin_d = jnp.cos(d), jnp.sin(d)
  return ((2 / p) * alpha * beta * cos_d, (1 / p) * alpha**2 * cos_d,
          -(1 / p) * (4 * beta + alpha**2 / beta) * sin_d)


@functools.partial(jax.jit, static_argnames=("p", "max_steps"))
def _race(alpha, beta, d, threshold, dt, p: int, max_steps: int):
  """Euler race; returns the first step each mode crosses `threshold` (max_steps if never)."""
  never = jnp.full(alpha.shape, max_steps, jnp.int32)

  def cond(carry):
    step, _, _, _, crossed = carry
    return (step < max_steps) & ~jnp.all(jnp.any(crossed < max_steps, axis=-1))

  def body(carry):
    step, alpha, beta, d, crossed = carry
    running = crossed == max_steps  # crossed modes are frozen (they would overflow)
    da, db, dd = _reduced_field(alpha, beta, d, p)
    alpha = jnp.where(running, alpha + dt * da, alpha)
    beta = jnp.where(running, beta + dt * db, beta)
    d = jnp.where(running, d + dt * dd, d)
    crossed = jnp.where(running & (beta > threshold), step + 1, crossed)
    return step + 1, alpha, beta, d, crossed

  _, _, beta, _, crossed = jax.lax.while_loop(cond, body, (0, alpha, beta, d, never))
  return crossed, beta


def predict_winners(w_in: jax.Array, w_out: jax.Array, lr: float, max_steps: int = 100_000,
                    growth: float = 20.0) -> jax.Array:
  """Predicted winning frequency index (0-based, k - 1) of every neuron from its init.

  Args:
    w_in: initial input weights [M, p].
    w_out: initial output weights [p, M].
    lr: gradient-descent step size; the ODE is integrated with dt = lr.
    max_steps: cap on Euler steps (neurons with no crossing fall back to their largest beta).
    growth: a mode has won when its beta exceeds growth x the largest initial beta.

  Returns:
    int32 [M].
  """
  modes = neuron_modes(w_in, w_out)
  threshold = growth * jnp.max(modes.beta)
  crossed, beta = _race(modes.alpha, modes.beta, modes.misalignment, threshold, lr,
                        p=w_in.shape[1], max_steps=max_steps)
  # earliest crossing wins; ties (and no crossing) go to the larger beta
  score = crossed.astype(jnp.float32) - beta / (jnp.max(beta, -1, keepdims=True) + 1e-30) * 0.5
  return jnp.argmin(score, axis=-1).astype(jnp.int32)


def baseline_winners(w_in: jax.Array, w_out: jax.Array) -> jax.Array:
  """The naive prediction argmax_k alpha0 * beta0 (0-based frequency index) [M]."""
  modes = neuron_modes(w_in, w_out)
  return jnp.argmax(modes.alpha * modes.beta, axis=-1).astype(jnp.int32)


def actual_winners(w_in: jax.Array, w_out: jax.Array) -> jax.Array:
  """Dominant frequency after training, argmax_k alpha_k beta_k (0-based) [M]."""
  return baseline_winners(w_in, w_out)


def winner_misalignment(modes: NeuronModes, winners: jax.Array) -> jax.Array:
  """|sin D| of every neuron at its winning frequency [M]."""
  d = jnp.take_along_axis(modes.misalignment, winners[:, None], axis=-1)[:, 0]
  return jnp.abs(jnp.sin(d))
