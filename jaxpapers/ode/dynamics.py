"""Gradient-flow ODEs of a neuron's Fourier modes (He et al., arXiv 2602.16849).

The decoupled per-(neuron, frequency) ODE system of the paper's training-dynamics analysis (Sec. 5.3,
as the authors' code cites it) in the Fourier parametrization of `fourier.py`.

Regime: small initialization, quadratic activation, all p^2 pairs, mean cross-entropy. The
softmax is then nearly uniform, neurons do not interact, and inside a neuron the frequencies
k = 1..K evolve independently. With (alpha_k, phi_k) the magnitude and phase of the input
weights theta and (beta_k, psi_k) those of the output weights xi, time t = lr * steps:

Vector form (the authors' code, precompute/generate_analytical.py):
  d theta[j]/dt = sum_k (2/p) alpha_k beta_k cos(omega_k j + psi_k - phi_k)
  d xi[j]/dt    = sum_k (1/p) alpha_k^2      cos(omega_k j + 2 phi_k)
Polar form per (neuron, frequency), D = 2 phi - psi:
  d alpha/dt = (2/p) alpha beta cos D        d phi/dt = -(2/p) beta sin D
  d beta/dt  = (1/p) alpha^2 cos D           d psi/dt = +(1/p) (alpha^2 / beta) sin D
  d D/dt     = -(1/p) (4 beta + alpha^2 / beta) sin D
(The authors' app prints the phase equations with the opposite sign, which would make D = 0
unstable; we follow their code, where D = 0 is the stable point of the paper's phase alignment
theorem.) alpha^2 - 2 beta^2 is conserved.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxpapers.ode import fourier


class NeuronModes(NamedTuple):
  """Fourier modes of neurons: every field is [..., K] (neurons on leading axes)."""

  alpha: jax.Array  # input-weight magnitudes
  phi: jax.Array  # input-weight phases
  beta: jax.Array  # output-weight magnitudes
  psi: jax.Array  # output-weight phases

  @property
  def misalignment(self) -> jax.Array:
    """D = 2 phi - psi wrapped to (-pi, pi]."""
    return wrap(2 * self.phi - self.psi)


def wrap(angle: jax.Array) -> jax.Array:
  """Angle wrapped to (-pi, pi]."""
  return jnp.pi - jnp.mod(jnp.pi - angle, 2 * jnp.pi)


def neuron_modes(w_in: jax.Array, w_out: jax.Array) -> NeuronModes:
  """Modes of every neuron of W_in [M, p] (rows theta_m) and W_out [p, M] (columns xi_m)."""
  alpha, phi = fourier.magnitudes_and_phases(w_in)
  beta, psi = fourier.magnitudes_and_phases(w_out.T)
  return NeuronModes(alpha, phi, beta, psi)


def synthesize(magnitude: jax.Array, phase: jax.Array, p: int) -> jax.Array:
  """Vectors sum_k A_k cos(omega_k j + phase_k) on Z_p: [..., K] -> [..., p]."""
  k = jnp.arange(1, magnitude.shape[-1] + 1)
  angles = 2 * jnp.pi * jnp.outer(k, jnp.arange(p)) / p  # [K, p]
  return jnp.einsum("...k,...kj->...j", magnitude, jnp.cos(angles + phase[..., None]))


def vector_field(theta: jax.Array, xi: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(d theta/dt, d xi/dt) of the vector form, for neurons [..., p]."""
  p = theta.shape[-1]
  alpha, phi = fourier.magnitudes_and_phases(theta)
  beta, psi = fourier.magnitudes_and_phases(xi)
  d_theta = synthesize((2 / p) * alpha * beta, psi - phi, p)
  d_xi = synthesize((1 / p) * alpha**2, 2 * phi, p)
  return d_theta, d_xi


def polar_field(modes: NeuronModes, p: int) -> NeuronModes:
  """Time derivative of (alpha, phi, beta, psi) in the polar form."""
  alpha, phi, beta, psi = modes
  d = 2 * phi - psi
  cos_d, sin_d = jnp.cos(d), jnp.sin(d)
  return NeuronModes(
      alpha=(2 / p) * alpha * beta * cos_d,
      phi=-(2 / p) * beta * sin_d,
      beta=(1 / p) * alpha**2 * cos_d,
      psi=(1 / p) * (alpha**2 / beta) * sin_d,
  )


def euler(field: Callable, y0, dt: float, steps: int, save_every: int = 1):
  """Fixed-step Euler integration, y_{n+1} = y_n + dt * field(y_n), jitted with lax.scan.

  With dt = lr this is exactly gradient descent on the ODE's flow, step for step.

  Returns:
    (y at `steps`, trajectory saved every `save_every` steps starting with y0), both pytrees;
    trajectory leaves have a leading axis of length steps // save_every + 1.
  """
  if steps % save_every:
    raise ValueError(f"steps={steps} must be a multiple of save_every={save_every}")

  def one(y, _):
    return jax.tree.map(lambda a, b: a + dt * b, y, field(y)), None

  def chunk(y, _):
    y, _ = jax.lax.scan(one, y, None, length=save_every)
    return y, y

  @jax.jit
  def run(y0):
    y, saved = jax.lax.scan(chunk, y0, None, length=steps // save_every)
    return y, jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), y0, saved)

  return run(y0)


def solve_adaptive(field: Callable, y0, t1: float, ts, rtol: float = 1e-7, atol: float = 1e-10):
  """Adaptive solve (diffrax Tsit5 with a PID step controller) saved at times `ts`.

  For notebooks: accurate reference trajectories independent of the training step size.
  """
  import diffrax  # pylint: disable=g-import-not-at-top

  term = diffrax.ODETerm(lambda t, y, args: field(y))
  solution = diffrax.diffeqsolve(
      term, diffrax.Tsit5(), t0=0.0, t1=t1, dt0=None, y0=y0,
      saveat=diffrax.SaveAt(ts=jnp.asarray(ts)),
      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=1_000_000)
  return solution.ys
