"""Gradient-flow ODEs (He et al., arXiv 2602.16849): the authors' two cases, conservation,
polar == vector form, Euler == gradient descent on the real network, and diffrax agreement."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers.ode import dynamics as dy

P, K_STAR, AMPLITUDE = 23, 2, 0.02
K = (P - 1) // 2


def single_frequency(phi0, psi0, amplitude=AMPLITUDE):
  mag = jnp.zeros(K).at[K_STAR - 1].set(amplitude)
  theta = dy.synthesize(mag, jnp.zeros(K).at[K_STAR - 1].set(phi0), P)
  xi = dy.synthesize(mag, jnp.zeros(K).at[K_STAR - 1].set(psi0), P)
  return theta, xi


def vector_trajectory(phi0, psi0, steps, dt=1.0):
  _, (theta, xi) = dy.euler(lambda y: dy.vector_field(*y), single_frequency(phi0, psi0), dt, steps)
  return dy.neuron_modes(theta, xi.T)  # theta, xi: [T, p]


@pytest.fixture(scope="module", autouse=True)
def x64():
  """Our tolerances (1e-12) are float64 ones."""
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def test_case_one_misaligned_start_dips_then_aligns_and_grows():
  modes = vector_trajectory(1.5, 0.18, 1400)  # D0 = 2.82 > pi/2
  k = K_STAR - 1
  alpha, beta, d = modes.alpha[:, k], modes.beta[:, k], modes.misalignment[:, k]
  assert float(d[0]) == pytest.approx(2.82)
  assert abs(float(d[-1])) < 0.05  # our calibration measured 0.030
  assert float(beta.min()) < 0.02 and int(jnp.argmin(beta)) > 0  # measured min 0.0166
  assert float(beta[-1]) > 0.02
  invariant = alpha**2 - 2 * beta**2
  assert abs(float(invariant[-1] / invariant[0]) - 1) < 0.01  # measured 0.2% at dt = 1
  others = np.delete(np.concatenate([modes.alpha, modes.beta], 1), [k, K + k], axis=1)
  assert float(np.max(others)) < 1e-12


def test_case_two_aligned_start_grows_monotonically():
  modes = vector_trajectory(-0.72, -2.91, 700)  # D0 = 1.47 < pi/2
  beta, d = modes.beta[:, K_STAR - 1], modes.misalignment[:, K_STAR - 1]
  assert bool(jnp.all(jnp.diff(beta) > 0))
  assert abs(float(d[-1])) < 0.05  # measured 0.008


def test_polar_field_is_the_vector_field_in_polar_coordinates():
  rng = np.random.default_rng(0)
  theta, xi = rng.normal(size=(2, 5, P)) * 0.05
  d_theta, d_xi = dy.vector_field(theta, xi)
  eps = 1e-4  # central differences along the flow: error O(eps^2)
  before = dy.neuron_modes(theta - eps * d_theta, (xi - eps * d_xi).T)
  after = dy.neuron_modes(theta + eps * d_theta, (xi + eps * d_xi).T)
  expected = dy.polar_field(dy.neuron_modes(theta, xi.T), P)
  for name in ("alpha", "beta", "phi", "psi"):
    rate = dy.wrap(getattr(after, name) - getattr(before, name)) / (2 * eps)
    np.testing.assert_allclose(rate, getattr(expected, name), rtol=1e-6, atol=1e-12, err_msg=name)


def test_polar_and_vector_trajectories_agree():
  """Two discretizations of one flow: they agree to O(dt) (t = 1,400 as in case one)."""
  theta0, xi0 = single_frequency(1.5, 0.18)
  dt, steps, every = 0.05, 28_000, 1_000
  _, (theta, xi) = dy.euler(lambda y: dy.vector_field(*y), (theta0, xi0), dt, steps, every)
  vector = dy.neuron_modes(theta, xi.T)
  _, polar = dy.euler(lambda m: dy.polar_field(m, P), dy.neuron_modes(theta0[None], xi0[:, None]),
                      dt, steps, every)
  k = K_STAR - 1
  np.testing.assert_allclose(polar.alpha[:, 0, k], vector.alpha[:, k], rtol=2e-3)
  np.testing.assert_allclose(polar.beta[:, 0, k], vector.beta[:, k], rtol=2e-3)
  np.testing.assert_allclose(dy.wrap(2 * polar.phi[:, 0, k] - polar.psi[:, 0, k]),
                             vector.misalignment[:, k], atol=2e-3)


def test_euler_with_dt_lr_tracks_gradient_descent_on_the_network():
  """GD (lr 1) on a one-neuron quadratic network, mean CE over all p^2 pairs, vs the ODE."""
  theta0, xi0 = single_frequency(1.5, 0.18)
  x, y = np.divmod(np.arange(P * P), P)

  def loss(w):
    theta, xi = w
    hidden = theta[x] + theta[y]
    return optax.softmax_cross_entropy_with_integer_labels(hidden[:, None] ** 2 * xi, (x + y) % P).mean()

  @jax.jit
  def gd(w, _):
    w = jax.tree.map(lambda a, g: a - g, w, jax.grad(loss)(w))
    return w, w

  _, (theta_gd, xi_gd) = jax.lax.scan(gd, (theta0, xi0), None, length=600)
  _, (theta_ode, xi_ode) = dy.euler(lambda w: dy.vector_field(*w), (theta0, xi0), 1.0, 600)
  np.testing.assert_allclose(theta_gd, theta_ode[1:], atol=1e-6)  # softmax ~ uniform: same flow
  np.testing.assert_allclose(xi_gd, xi_ode[1:], atol=1e-6)


def test_adaptive_solve_agrees_with_fine_euler():
  y0 = single_frequency(1.5, 0.18)
  field = lambda y: dy.vector_field(*y)
  theta_adaptive, _ = dy.solve_adaptive(field, y0, 700.0, jnp.array([0.0, 350.0, 700.0]))
  _, (theta_euler, _) = dy.euler(field, y0, 0.01, 70_000, save_every=35_000)
  np.testing.assert_allclose(theta_adaptive, theta_euler, atol=2e-5)


def test_balanced_aligned_modes_blow_up_at_p_over_two_beta0():
  beta0 = 0.05
  modes = dy.NeuronModes(jnp.array([np.sqrt(2) * beta0]), jnp.zeros(1), jnp.array([beta0]), jnp.zeros(1))
  t = 0.5 * P / (2 * beta0)  # halfway to blow-up: beta = beta0 / (1 - 2 beta0 t / p) = 2 beta0
  final, _ = dy.euler(lambda m: dy.polar_field(m, P), modes, t / 20_000, 20_000)
  assert float(final.beta[0]) == pytest.approx(2 * beta0, rel=1e-3)
