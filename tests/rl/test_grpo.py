"""group_advantages and grpo_loss against NumPy written from DeepSeekMath's Eqs. 3-4."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import rl


def numpy_grpo(new, old, adv, mask, eps, beta, ref):
  """-(1 / sum mask) sum_t mask [min(rho A, clip(rho) A) - beta k3] in float64."""
  new, old, ref = (np.asarray(x, np.float64) for x in (new, old, ref))
  rho = np.exp(new - old)
  a = np.asarray(adv, np.float64)[:, None]
  surrogate = np.minimum(rho * a, np.clip(rho, 1 - eps, 1 + eps) * a)
  k3 = np.exp(ref - new) - (ref - new) - 1
  return -((surrogate - beta * k3) * mask).sum() / mask.sum()


def test_advantages_standardize_mixed_groups_and_zero_constant_ones():
  rng = np.random.default_rng(0)
  r = rng.normal(size=(5, 8)).astype(np.float32)
  r[1] = 1.0
  r[3] = 0.0
  adv, collapsed = rl.group_advantages(r)
  assert np.asarray(collapsed).tolist() == [False, True, False, True, False]
  np.testing.assert_array_equal(np.asarray(adv)[[1, 3]], 0.0)
  mixed = np.asarray(r)[[0, 2, 4]].astype(np.float64)
  expect = (mixed - mixed.mean(1, keepdims=True)) / (mixed.std(1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(np.asarray(adv)[[0, 2, 4]], expect, atol=1e-5)


def test_binary_group_advantages():
  adv, _ = rl.group_advantages(jnp.array([[1.0, 0.0, 0.0, 0.0]]))
  np.testing.assert_allclose(adv[0], [np.sqrt(3), -1 / np.sqrt(3), -1 / np.sqrt(3), -1 / np.sqrt(3)], atol=1e-5)


def test_k3_against_its_definition_and_the_true_kl():
  new = jnp.log(jnp.array([0.2, 0.5, 0.9]))
  ref = jnp.log(jnp.array([0.4, 0.5, 0.3]))
  r = np.exp(np.asarray(ref, np.float64) - np.asarray(new, np.float64))
  np.testing.assert_allclose(rl.kl_k3(new, ref), r - np.log(r) - 1, atol=1e-6)
  assert float(rl.kl_k3(new, ref)[1]) == 0.0 and float(jnp.min(rl.kl_k3(new, ref))) >= 0
  # unbiased: E_{x ~ p}[k3] = KL(p || q) on a 3-way distribution
  p, q = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
  k3 = np.asarray(rl.kl_k3(jnp.log(p), jnp.log(q)))
  np.testing.assert_allclose((p * k3).sum(), (p * np.log(p / q)).sum(), atol=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_matches_numpy(beta):
  rng = np.random.default_rng(1)
  new, old, ref = (rng.normal(-1.2, 0.4, (6, 5)).astype(np.float32) for _ in range(3))
  adv = rng.normal(size=6).astype(np.float32)
  mask = (rng.random((6, 5)) < 0.8).astype(np.float32)
  loss, m = rl.grpo_loss(new, old, adv, mask, 0.2, beta, ref)
  np.testing.assert_allclose(float(loss), numpy_grpo(new, old, adv, mask, 0.2, beta, ref), atol=1e-6)
  rho = np.exp(new.astype(np.float64) - old)
  a = adv[:, None]
  clipped = ((rho > 1.2) & (a > 0)) | ((rho < 0.8) & (a < 0))
  np.testing.assert_allclose(float(m["clip_fraction"]), (clipped * mask).sum() / mask.sum(), atol=1e-6)


def test_ratio_one_gradient_sign_and_clipping():
  rng = np.random.default_rng(2)
  lp = jnp.asarray(rng.normal(-1, 0.3, (4, 3)), jnp.float32)
  adv = jnp.array([1.0, -2.0, 0.5, -0.5])
  mask = jnp.ones((4, 3))
  np.testing.assert_allclose(float(rl.grpo_loss(lp, lp, adv, mask)[0]), -float(adv.mean()), atol=1e-6)
  g = jax.grad(lambda x: rl.grpo_loss(x, lp, adv, mask)[0])(lp)
  np.testing.assert_array_equal(np.sign(g), -np.sign(adv)[:, None] * np.ones((4, 3)))
  np.testing.assert_allclose(g, -adv[:, None] / 12 * np.ones((4, 3)), atol=1e-7)
  out = lp + jnp.where(adv[:, None] > 0, 0.3, -0.3)  # beyond 1 +- eps on the clipped side
  np.testing.assert_array_equal(jax.grad(lambda x: rl.grpo_loss(x, lp, adv, mask)[0])(out), 0.0)
  inside = lp + jnp.where(adv[:, None] > 0, -0.3, 0.3)  # the other side stays unclipped
  assert np.all(np.abs(jax.grad(lambda x: rl.grpo_loss(x, lp, adv, mask)[0])(inside)) > 0)


def test_kl_needs_a_reference():
  with pytest.raises(ValueError, match="logp_ref"):
    rl.grpo_loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.ones(1), jnp.ones((1, 2)), kl_coef=0.1)
