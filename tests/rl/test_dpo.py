"""dpo_loss against the closed form in NumPy, log 2 at the reference, gradient direction."""

import jax
import numpy as np
import pytest

from jaxpapers import rl


def numpy_dpo(pc, pr, rc, rr, beta):
  """-log sigmoid(beta ((pc - rc) - (pr - rr))) in float64 (Rafailov et al., Eq. 7)."""
  z = beta * ((np.float64(pc) - rc) - (np.float64(pr) - rr))
  return np.log1p(np.exp(-z))


def _inputs(seed=0, n=16):
  rng = np.random.default_rng(seed)
  return tuple(rng.normal(-10, 4, n).astype(np.float32) for _ in range(4))


@pytest.mark.parametrize("beta", [0.01, 0.1, 0.5, 2.0])
def test_loss_and_rewards_match_the_closed_form(beta):
  pc, pr, rc, rr = _inputs()
  loss, rw, rj = rl.dpo_loss(pc, pr, rc, rr, beta)
  np.testing.assert_allclose(loss, numpy_dpo(pc, pr, rc, rr, beta), atol=1e-6, rtol=0)
  np.testing.assert_allclose(rw, beta * (pc.astype(np.float64) - rc), atol=1e-5)
  np.testing.assert_allclose(rj, beta * (pr.astype(np.float64) - rr), atol=1e-5)


def test_log2_at_the_reference_and_gradient_raises_chosen():
  pc, pr, _, _ = _inputs(1)
  np.testing.assert_allclose(rl.dpo_loss(pc, pr, pc, pr, 0.3)[0], np.log(2), atol=1e-6)
  g_c, g_r = jax.grad(lambda a, b: rl.dpo_loss(a, b, pc, pr, 0.3)[0].sum(), argnums=(0, 1))(pc, pr)
  np.testing.assert_allclose(g_c, -0.15, atol=1e-6)  # -beta * sigmoid(0) at the reference
  np.testing.assert_allclose(g_r, 0.15, atol=1e-6)


def test_reference_free_ignores_the_reference_and_rewards_carry_no_gradient():
  pc, pr, rc, rr = _inputs(2)
  a = rl.dpo_loss(pc, pr, rc, rr, 0.5, reference_free=True)
  b = rl.dpo_loss(pc, pr, rc * 0 + 123.0, rr - 7.0, 0.5, reference_free=True)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_allclose(a[0], numpy_dpo(pc, pr, 0.0, 0.0, 0.5), atol=1e-6)
  g = jax.grad(lambda x: rl.dpo_loss(x, pr, rc, rr, 0.5)[1].sum())(pc)
  np.testing.assert_array_equal(g, 0.0)
