"""jaxpapers.diffusion.unified_latents and .ddim (Unified Latents, arXiv 2602.17270).

Checked against analytic results: the Gaussian bitrate identity L_z = I(z_clean; z_0) =
1/2 d log(1 + s^2 e^5) with the exact MMSE denoiser, the epsilon/x-form identity, the weight's
limits, sigma_0, the Gaussian KL by numerical integration (scipy), and the probability-flow ODE
of Gaussian data (exact denoiser: the samples' variance is s^2).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from jaxpapers.diffusion import ddim
from jaxpapers.diffusion import unified_latents as ul

PRIOR = ul.LinearLogSNR(5.0, -10.0)  # lambda_z(t) = 5 - 15 t


@pytest.mark.parametrize("scale,target", [(1.0, 20.03), (0.5, 14.56)])
def test_prior_loss_of_the_exact_denoiser_is_the_mutual_information(scale, target):
  """Spec 4.6-1: z_clean ~ N(0, s^2 I_8), exact MMSE denoiser: L_z (KL included, 200k draws)
  equals 1/2 8 log(1 + s^2 e^5) within 2%."""
  n, d = 200_000, 8

  @jax.jit
  def draw():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    z = scale * jax.random.normal(k1, (n, d))
    t = ul.stratified_times(k2, n)
    noise = jax.random.normal(k3, (n, d))
    return z, ul.prior_loss(ul.gaussian_mmse_x(scale), z, t, noise, PRIOR, parameterization="x")

  z, loss = draw()
  assert ul.gaussian_information(d, scale) == pytest.approx(target, abs=0.005)
  assert float(jnp.mean(loss)) == pytest.approx(target, rel=0.02)
  # The terminal KL is tiny at lambda_z(1) = -10 (about 2e-4 nats here), but part of the bound.
  assert 0 < float(jnp.mean(ul.terminal_kl(z, -10.0))) < 1e-3


def test_eps_form_equals_x_form_for_random_predictions():
  """Spec 4.6-2: e^lambda ||x - x_hat||^2 = ||eps - eps_hat||^2 when z_t = alpha x_hat + sigma eps_hat."""
  keys = jax.random.split(jax.random.key(1), 4)
  x = jax.random.normal(keys[0], (16, 4, 3))
  noise = jax.random.normal(keys[1], x.shape)
  lam = jax.random.uniform(keys[2], (16,), minval=-10.0, maxval=10.0)
  prediction = jax.random.normal(keys[3], x.shape)
  z_t = ul.diffuse(x, noise, lam)
  x_hat, eps_hat = ul.to_x_eps(z_t, prediction, lam, "v")
  rate = jnp.full((16,), 20.0)
  eps_loss = ul.eps_form_loss(noise, eps_hat, rate)
  x_loss = ul.x_form_loss(x, x_hat, lam, rate)
  np.testing.assert_allclose(np.asarray(x_loss), np.asarray(eps_loss), rtol=1e-5)
  # The same with an x prediction taken as given.
  x_hat2, eps_hat2 = ul.to_x_eps(z_t, prediction, lam, "x")
  np.testing.assert_allclose(np.asarray(ul.x_form_loss(x, x_hat2, lam, rate)),
                             np.asarray(ul.eps_form_loss(noise, eps_hat2, rate)), rtol=1e-5)


def test_v_prediction_helpers_recover_x_and_eps():
  keys = jax.random.split(jax.random.key(2), 3)
  x = jax.random.normal(keys[0], (6, 5))
  noise = jax.random.normal(keys[1], (6, 5))
  lam = jnp.linspace(-12.0, 12.0, 6)
  z_t = ul.diffuse(x, noise, lam)
  a, s = np.sqrt(1 / (1 + np.exp(-np.asarray(lam))))[:, None], np.sqrt(1 / (1 + np.exp(np.asarray(lam))))[:, None]
  np.testing.assert_allclose(np.asarray(z_t), a * np.asarray(x) + s * np.asarray(noise), rtol=1e-5)
  v = ul.v_target(x, noise, lam)
  np.testing.assert_allclose(np.asarray(v), a * np.asarray(noise) - s * np.asarray(x), rtol=1e-5)
  for parameterization, prediction in (("v", v), ("eps", noise), ("x", x)):
    x_hat, eps_hat = ul.to_x_eps(z_t, prediction, lam, parameterization)
    np.testing.assert_allclose(np.asarray(x_hat), np.asarray(x), atol=2e-4)
    np.testing.assert_allclose(np.asarray(eps_hat), np.asarray(noise), atol=2e-4)
  with pytest.raises(ValueError, match="parameterization"):
    ul.to_x_eps(z_t, v, lam, "score")


def test_weight_limits_and_sign_convention():
  """Spec 4.6-3: sigmoid(b - lambda) -> 1 at lambda = -30 and -> 0 at +30; the other convention
  is the mirror image; b = +inf gives w = 1."""
  lam = jnp.array([-30.0, 0.0, 30.0])
  w = ul.sigmoid_weight(lam, 0.0)
  np.testing.assert_allclose(np.asarray(w), [1.0, 0.5, 0.0], atol=1e-12)
  w_other = ul.sigmoid_weight(lam, 0.0, "discount_high_noise")
  np.testing.assert_allclose(np.asarray(w_other), [0.0, 0.5, 1.0], atol=1e-12)
  np.testing.assert_allclose(np.asarray(ul.sigmoid_weight(lam, 2.0)),
                             1 / (1 + np.exp(np.asarray(lam) - 2.0)), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(ul.sigmoid_weight(lam, math.inf)), 1.0)
  with pytest.raises(ValueError, match="convention"):
    ul.sigmoid_weight(lam, 0.0, "upside_down")


def test_decoder_loss_with_unit_weight_is_the_plain_elbo_term():
  """Spec 4.6-3: L_x with c_lf = 1, b = +inf equals 1/2 (-dlambda/dt) ||eps - eps_hat||^2
  (written out by hand here); c_lf scales it; b = 0 discounts it."""
  decoder = ul.LinearLogSNR(10.0, -10.0)
  keys = jax.random.split(jax.random.key(3), 3)
  x = jax.random.normal(keys[0], (32, 7))
  noise = jax.random.normal(keys[1], x.shape)
  t = jax.random.uniform(keys[2], (32,))

  def predict(z, lam):
    return 0.3 * z + 0.01 * lam[:, None]

  elbo = ul.decoder_loss(predict, x, t, noise, decoder, loss_factor=1.0, bias=math.inf)
  lam = 10.0 - 20.0 * np.asarray(t)
  a, s = np.sqrt(1 / (1 + np.exp(-lam)))[:, None], np.sqrt(1 / (1 + np.exp(lam)))[:, None]
  z = a * np.asarray(x) + s * np.asarray(noise)
  v = 0.3 * z + 0.01 * lam[:, None]
  eps_hat = s * z + a * v
  expected = 0.5 * 20.0 * np.sum((np.asarray(noise) - eps_hat) ** 2, 1)
  np.testing.assert_allclose(np.asarray(elbo), expected, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(ul.prior_loss(predict, x, t, noise, decoder, include_kl=False)),
                             expected, rtol=1e-5)
  np.testing.assert_allclose(
      np.asarray(ul.decoder_loss(predict, x, t, noise, decoder, loss_factor=1.5, bias=0.0)),
      1.5 * expected / (1 + np.exp(lam)), rtol=1e-5)


def test_encoder_noise_is_fixed_at_lambda_5():
  """Spec 4.6-4: sigma_0 = sqrt(sigmoid(-5)), alpha_0^2 + sigma_0^2 = 1.

  sqrt(1 / (1 + e^5)) = 0.081810; the spec's "0.08198 to 1e-4" is an arithmetic slip (its 0.082
  elsewhere, and the paper's sigma ~ 0.08, agree with 0.0818).
  """
  a0, s0 = ul.encoder_noise()
  assert s0 == pytest.approx(0.081810, abs=1e-5)
  assert s0 == pytest.approx(0.082, abs=1e-3)
  assert a0 == pytest.approx(0.99663, abs=1e-4)
  assert a0 ** 2 + s0 ** 2 == pytest.approx(1.0, abs=1e-12)
  z = jnp.ones((2, 3))
  np.testing.assert_allclose(np.asarray(ul.noisy_latent(z, jnp.zeros_like(z))), a0, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(ul.noisy_latent(z, z) - ul.noisy_latent(z, 0 * z)), s0,
                             rtol=1e-5)


def test_terminal_kl_matches_numerical_integration():
  """KL(N(alpha_1 z, sigma_1^2) || N(0, 1)) against scipy's quadrature of q log(q / p)."""
  lam, z = -1.5, np.array([[0.7, -1.2]])
  a, s = math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))
  total = 0.0
  for mu in a * z[0]:
    q = scipy.stats.norm(mu, s)
    total += scipy.integrate.quad(lambda u, q=q: q.pdf(u) * (q.logpdf(u) - scipy.stats.norm.logpdf(u)),
                                  -20, 20)[0]
  assert float(ul.terminal_kl(jnp.asarray(z), lam)[0]) == pytest.approx(total, rel=1e-5)


def test_stratified_times_cover_each_stratum_once():
  t = np.asarray(ul.stratified_times(jax.random.key(4), 16, antithetic=False))
  np.testing.assert_array_equal(np.sort(np.floor(t * 16)), np.arange(16))
  t = np.asarray(ul.stratified_times(jax.random.key(5), 10))
  np.testing.assert_allclose(t[:5] + t[5:], 1.0, atol=1e-6)  # antithetic pairs
  np.testing.assert_array_equal(np.sort(np.floor(t[:5] * 5)), np.arange(5))
  assert ul.stratified_times(jax.random.key(6), 7).shape == (7,)
  assert np.all((t >= 0) & (t <= 1))


@pytest.mark.parametrize("method", ddim.METHODS)
def test_sampler_of_gaussian_data_with_the_exact_denoiser(method):
  """Probability-flow ODE of N(0, s^2): from N(0, 1) at lambda = -10 to lambda = 10, samples have
  standard deviation s; stopped at lambda = 5 without denoising, sqrt(alpha^2 s^2 + sigma^2)."""
  scale, n = 0.5, 20_000
  z = jax.random.normal(jax.random.key(7), (n, 4))
  x = ddim.vp_sample(ul.gaussian_mmse_x(scale), z, ddim.lambda_grid(-10.0, 10.0, 200), method,
                     parameterization="x")
  assert float(jnp.std(x)) == pytest.approx(scale, rel=0.02)
  z5 = ddim.vp_sample(ul.gaussian_mmse_x(scale), z, ddim.lambda_grid(-10.0, 5.0, 200), method,
                      parameterization="x", denoise=False)
  a, s = ul.encoder_noise()
  assert float(jnp.std(z5)) == pytest.approx(math.sqrt(a ** 2 * scale ** 2 + s ** 2), rel=0.02)
  # Deterministic: the same noise gives the same samples; and DDIM maps one sample's noise to
  # its own output (no mixing across the batch).
  x2 = ddim.vp_sample(ul.gaussian_mmse_x(scale), z[:3], ddim.lambda_grid(-10.0, 10.0, 200), method,
                      parameterization="x")
  np.testing.assert_allclose(np.asarray(x2), np.asarray(x[:3]), rtol=1e-5, atol=1e-6)
