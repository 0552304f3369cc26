"""Token-id transport: rho = 1 exactly on transported ids; re-tokenized text moves it, and the
shared tiny LM is a policy every loss works on."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import rl
from jaxpapers.experiments.mrpo.checks import ToyTokenizer


@functools.partial(nnx.jit, static_argnames=("length", "temperature"))
def _sample(policy, prompts, key, length, temperature=1.0):
  return rl.sample(policy, prompts, key, length, temperature)


@functools.partial(nnx.jit, static_argnames=("temperature",))
def _recompute(policy, prompts, tokens, temperature=1.0):
  return rl.recompute_logprobs(policy, prompts, tokens, temperature)


@pytest.fixture(scope="module")
def lm():
  return rl.LMPolicy(3, 4, 5, d_model=8, num_layers=1, num_heads=2, rngs=nnx.Rngs(0))


def test_transported_ids_give_ratio_one_and_retokenized_text_does_not():
  policy = rl.FactorizedPolicy(1, 6, 3, (), rngs=nnx.Rngs(0))
  policy.out.bias[...] = jax.random.normal(jax.random.key(1), policy.out.bias.shape) * 2.0
  n = 128
  roll = _sample(policy, jnp.zeros(n, jnp.int32), jax.random.key(2), 6)
  rho = np.exp(np.asarray(_recompute(policy, roll.prompts, roll.tokens)) - np.asarray(roll.logp))
  np.testing.assert_array_equal(rho, 1.0)
  tok = ToyTokenizer()
  retok, mask = np.zeros((n, 6), np.int32), np.zeros((n, 6), bool)
  for i, ids in enumerate(np.asarray(roll.tokens)):
    again = tok.encode(tok.decode(ids))
    assert tok.decode(again) == tok.decode(ids)  # the same text, maybe another segmentation
    retok[i, :len(again)], mask[i, :len(again)] = again, True
  changed = np.any((retok != np.asarray(roll.tokens)) & mask, 1)
  assert changed.sum() > 10
  new = np.asarray(_recompute(policy, roll.prompts, jnp.asarray(retok)))
  moved = np.abs(np.exp(new - np.asarray(roll.logp)) - 1) > 0.2
  assert np.all(np.any(moved & mask, 1)[changed])  # every re-segmented rollout clips somewhere
  assert not np.any((moved & mask)[~changed])


def test_behaviour_logprobs_are_those_of_the_sampling_distribution(lm):
  roll = _sample(lm, jnp.arange(3), jax.random.key(0), 4, 0.7)
  again = _recompute(lm, roll.prompts, roll.tokens, 0.7)
  np.testing.assert_allclose(again, roll.logp, atol=1e-5)
  probs = jax.nn.softmax(np.asarray(nnx.jit(lambda m, p, y: m(p, y))(lm, roll.prompts, roll.tokens)) / 0.7, -1)
  np.testing.assert_allclose(np.exp(roll.logp), np.take_along_axis(probs, np.asarray(roll.tokens)[..., None], -1)[..., 0],
                             atol=1e-5)
  # position t sees only earlier tokens: changing y_2 leaves the logits of y_0..y_2 alone
  y = roll.tokens
  y2 = y.at[:, 2].set((y[:, 2] + 1) % 5)
  a, b = _recompute(lm, roll.prompts, y), _recompute(lm, roll.prompts, y2)
  np.testing.assert_allclose(a[:, :2], b[:, :2], atol=1e-6)
  assert float(jnp.max(jnp.abs(a[:, 3] - b[:, 3]))) > 0


@nnx.jit
def _losses_and_steps(model_a, opt_a, model_b, opt_b, p, chosen, rejected, ref_c, ref_r, tokens, logp, mask, adv):
  def dpo(m):
    c = rl.sequence_logprob(m(p, chosen), chosen)
    r = rl.sequence_logprob(m(p, rejected), rejected)
    return rl.dpo_loss(c, r, ref_c, ref_r, 0.5)[0].mean()

  def grpo(m):
    return rl.grpo_loss(rl.recompute_logprobs(m, p, tokens), logp, adv, mask)[0]

  before = (dpo(model_a), grpo(model_b))
  opt_a.update(model_a, nnx.grad(dpo)(model_a))
  opt_b.update(model_b, nnx.grad(grpo)(model_b))
  return before, (dpo(model_a), grpo(model_b))


def test_dpo_and_grpo_train_the_tiny_lm(lm):
  """A gradient step on each loss through the shared TinyLM lowers it; at the start DPO is log 2
  (policy = reference) and GRPO is -mean(A) (rho = 1)."""
  p = jnp.arange(3)
  roll = _sample(lm, p, jax.random.key(3), 4)
  other = _sample(lm, p, jax.random.key(4), 4)
  ref_c, ref_r = _recompute(lm, p, roll.tokens).sum(-1), _recompute(lm, p, other.tokens).sum(-1)
  adv = jnp.array([1.0, -1.0, 1.0])
  a, b = nnx.clone(lm), nnx.clone(lm)
  opt_a, opt_b = (nnx.Optimizer(m, optax.sgd(1e-3), wrt=nnx.Param) for m in (a, b))
  (dpo0, grpo0), (dpo1, grpo1) = _losses_and_steps(a, opt_a, b, opt_b, p, roll.tokens, other.tokens, ref_c, ref_r,
                                                   roll.tokens, roll.logp, roll.mask, adv)
  np.testing.assert_allclose(float(dpo0), np.log(2), atol=1e-6)
  np.testing.assert_allclose(float(grpo0), -float(adv.mean()), atol=1e-6)
  assert float(dpo1) < float(dpo0) and float(grpo1) < float(grpo0)
