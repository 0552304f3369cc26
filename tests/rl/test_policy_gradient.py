"""policy_gradient: REINFORCE and PPO losses against hand-written numpy formulas and gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import rl


def _logsoftmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _data():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(4, 3, 5)).astype(np.float32)
  actions = rng.integers(0, 5, size=(4, 3))
  mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], np.float32)
  returns = np.array([1.0, 0.0, 0.5, 0.2], np.float32)
  return logits, actions, mask, returns


def test_reinforce_value_and_gradient():
  logits, actions, mask, returns = _data()
  adv = returns - returns.mean()
  np.testing.assert_allclose(np.asarray(rl.mean_baseline(returns)), adv, atol=1e-7)
  lp = np.take_along_axis(_logsoftmax(logits), actions[..., None], -1)[..., 0]
  expected = -(adv[:, None] * lp * mask).sum() / 4
  loss, _ = rl.reinforce_loss(jnp.asarray(logits), jnp.asarray(actions), jnp.asarray(adv),
                              jnp.asarray(mask))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
  # gradient wrt logits: -adv * (onehot - softmax) / sequences on the masked decisions
  grad = jax.grad(lambda z: rl.reinforce_loss(z, jnp.asarray(actions), jnp.asarray(adv),
                                              jnp.asarray(mask))[0])(jnp.asarray(logits))
  soft = np.exp(_logsoftmax(logits))
  onehot = np.eye(5)[actions]
  np.testing.assert_allclose(np.asarray(grad), -(adv[:, None, None] * (onehot - soft)
                                                 * mask[..., None]) / 4, atol=1e-6)
  token, _ = rl.reinforce_loss(jnp.asarray(logits), jnp.asarray(actions), jnp.asarray(adv),
                               jnp.asarray(mask), reduction="token")
  np.testing.assert_allclose(float(token), -(adv[:, None] * lp * mask).sum() / mask.sum(), rtol=1e-6)


def test_entropy_bonus_and_masked_actions():
  logits, actions, mask, _ = _data()
  actions = np.where(mask > 0, actions, -1)  # padding ids are ignored
  ent = -(np.exp(_logsoftmax(logits)) * _logsoftmax(logits)).sum(-1)
  loss, metrics = rl.reinforce_loss(jnp.asarray(logits), jnp.asarray(actions), jnp.zeros(4),
                                    jnp.asarray(mask), entropy_coef=0.1)
  np.testing.assert_allclose(float(loss), -0.1 * (ent * mask).sum() / 4, rtol=1e-6)
  np.testing.assert_allclose(float(metrics["entropy"]), (ent * mask).sum() / mask.sum(), rtol=1e-6)


def test_ppo_matches_formula_and_reinforce_at_ratio_one():
  logits, actions, mask, returns = _data()
  adv = returns - returns.mean()
  lp = np.take_along_axis(_logsoftmax(logits), actions[..., None], -1)[..., 0]
  old = lp + np.random.default_rng(1).normal(scale=0.3, size=lp.shape).astype(np.float32)
  ratio = np.exp(lp - old)
  a = adv[:, None]
  surrogate = np.minimum(ratio * a, np.clip(ratio, 0.8, 1.2) * a)
  loss, metrics = rl.ppo_loss(jnp.asarray(logits), jnp.asarray(actions), jnp.asarray(old),
                              jnp.asarray(adv), jnp.asarray(mask))
  np.testing.assert_allclose(float(loss), -(surrogate * mask).sum() / mask.sum(), rtol=1e-5)
  clipped = ((ratio > 1.2) & (a > 0)) | ((ratio < 0.8) & (a < 0))
  np.testing.assert_allclose(float(metrics["clip_fraction"]), (clipped * mask).sum() / mask.sum(),
                             rtol=1e-6)
  # at ratio 1 the PPO gradient is the token-reduced REINFORCE gradient
  f = lambda z: rl.ppo_loss(z, jnp.asarray(actions), jnp.asarray(lp), jnp.asarray(adv),  # noqa: E731
                            jnp.asarray(mask))[0]
  g = lambda z: rl.reinforce_loss(z, jnp.asarray(actions), jnp.asarray(adv), jnp.asarray(mask),  # noqa: E731
                                  reduction="token")[0]
  np.testing.assert_allclose(np.asarray(jax.grad(f)(jnp.asarray(logits))),
                             np.asarray(jax.grad(g)(jnp.asarray(logits))), atol=1e-6)
