"""The fast Gamma and Dirichlet draws against scipy's distributions and the analytic moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxpapers.envs import sampling


@pytest.mark.parametrize("shape_param", [0.3, 1.2, 4.0])
def test_gamma_matches_scipy(shape_param):
  x = np.asarray(sampling.gamma(jax.random.key(0), shape_param, (40_000,)))
  assert stats.kstest(x, stats.gamma(shape_param).cdf).pvalue > 1e-3
  assert x.mean() == pytest.approx(shape_param, rel=0.03)  # mean = var = shape
  assert x.var() == pytest.approx(shape_param, rel=0.06)


def test_dirichlet_marginals_are_beta_and_rows_sum_to_one():
  alpha = np.array([1.2, 1.2, 1.2])
  x = np.asarray(sampling.dirichlet(jax.random.key(1), alpha, (40_000,)))
  np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-5)
  a0 = alpha.sum()
  for i in range(3):  # marginal Beta(alpha_i, a0 - alpha_i)
    assert stats.kstest(x[:, i], stats.beta(alpha[i], a0 - alpha[i]).cdf).pvalue > 1e-3
  assert x[:, 0].var() == pytest.approx(1.2 * 2.4 / (a0 ** 2 * (a0 + 1)), rel=0.05)


def test_traced_shape_parameter_uses_the_boost():
  draw = jax.jit(lambda a: sampling.gamma(jax.random.key(2), a, (40_000,)))
  x = np.asarray(draw(jnp.float32(0.5)))
  assert x.mean() == pytest.approx(0.5, rel=0.04)


def test_pandora_prize_follows_the_raw_prior_and_gamma_is_uniform():
  from jaxpapers.envs import pandora
  tasks = jax.jit(lambda k: pandora.sample(k, (40_000,)))(jax.random.key(3))
  raw, truth = np.asarray(tasks.raw), np.asarray(tasks.truth)
  top = raw.argmax(-1)
  # P(prize in the raw top box) = E[max raw]; binomial s.e. ~0.0025
  assert abs(np.mean(truth == top) - raw.max(-1).mean()) < 0.01
  counts = np.bincount(np.round(np.asarray(tasks.gamma) * 10).astype(int), minlength=11)
  assert counts.size == 11 and stats.chisquare(counts).pvalue > 1e-3
