"""Cosine DDPM and DDIM: schedule against its closed form, exact recovery, Gaussian data."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.diffusion import ddpm


def test_cosine_schedule_matches_the_closed_form():
  s = ddpm.CosineSchedule(steps=50)
  t = np.arange(1, 51) / 50
  f = lambda t: np.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
  closed = f(t) / f(0.0)
  # Only the last step's beta is clipped at 0.999 (abar_K = 0 unclipped).
  np.testing.assert_allclose(s.alphas_bar[:-1], closed[:-1], rtol=1e-10)
  np.testing.assert_allclose(s.alphas_bar[-1], closed[-2] * 0.001, rtol=1e-10)
  assert np.all(np.diff(s.log_snrs) < 0)
  np.testing.assert_allclose(s.step_of(jnp.asarray(s.log_snrs[7], jnp.float32)), 7.0, atol=1e-3)
  x0, noise = jnp.ones((2, 3)), jnp.full((2, 3), 2.0)
  xk = ddpm.q_sample(s, x0, noise, jnp.array([0, 49]))
  ab = s.alphas_bar
  np.testing.assert_allclose(xk[:, 0], np.sqrt(ab[[0, 49]]) + 2 * np.sqrt(1 - ab[[0, 49]]), rtol=1e-6)
  np.testing.assert_array_equal(ddpm.ddim_steps(s, 5), [49, 37, 24, 12, 0])


def test_ddim_with_the_true_x0_recovers_it_and_counts_calls():
  s = ddpm.CosineSchedule(steps=50)
  x0 = jax.random.normal(jax.random.key(0), (4, 8, 2))
  calls = []

  def oracle(z, k):
    calls.append(k)
    return x0
  out = ddpm.ddim_sample(oracle, jax.random.normal(jax.random.key(1), x0.shape), s, 5)
  np.testing.assert_allclose(out, x0, atol=1e-6)
  assert len(calls) == 1 + 1  # one traced scan body + the final call: 4 steps + 1 = 5 calls


def test_ddim_maps_noise_to_a_gaussian_data_distribution():
  # Data N(mu, sd^2): the exact posterior mean E[x0 | x_k] drives DDIM to N(mu, sd^2) as the step
  # count grows (the probability-flow ODE transports one Gaussian onto the other).
  mu, sd = 1.5, 0.3
  s = ddpm.CosineSchedule(steps=50)
  ab = jnp.asarray(s.alphas_bar, jnp.float32)

  def posterior_mean(z, k):
    a2 = jnp.interp(k, jnp.arange(50.0), ab)[:, None]
    a, var = jnp.sqrt(a2), 1 - a2
    return mu + a * sd**2 / (a2 * sd**2 + var) * (z - a * mu)
  z = jax.random.normal(jax.random.key(2), (20_000, 1))
  out = np.asarray(jax.jit(lambda z: ddpm.ddim_sample(posterior_mean, z, s, 50))(z))
  assert abs(out.mean() - mu) < 0.02 and abs(out.std() - sd) < 0.02
  loss = ddpm.x0_loss(jnp.zeros((2, 3)), jnp.array([[1.0] * 3, [2.0] * 3]), jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(loss, 1.0)
