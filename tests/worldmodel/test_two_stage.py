"""TwoStageWM: stages, identity renderer at init, the judge reward and band, Bernoulli log-probs,
GRPO on the delta head (NumPy references and hand-computed values)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.envs.toy_ui import ToyUI
from jaxpapers.worldmodel import (
    DELTA_PARAMS,
    RENDERER_PARAMS,
    DirectWM,
    GRPOSettings,
    TwoStageWM,
    change_f1,
    delta_logprobs,
    delta_loss,
    grpo_finetune,
    in_length_band,
    judge_reward,
    render_loss,
    sampled_reward,
)

UI = ToyUI.default(2)


def _data(n=64, seed=0):
  k1, k2 = jax.random.split(jax.random.key(seed))
  flags = jax.vmap(UI.sample_state)(jax.random.split(k1, n))
  action = jax.random.randint(k2, (n,), 0, UI.num_actions)
  nxt = jax.vmap(UI.step)(flags, action)
  return UI.render(flags), action, UI.delta(flags, nxt), UI.render(nxt)


def test_change_f1_and_the_length_band_by_hand():
  pred = jnp.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]], jnp.float32)
  true = jnp.array([[1, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1]], jnp.float32)
  np.testing.assert_allclose(change_f1(pred, true), [0.5, 1.0, 1.0, 0.0, 6 / 7], rtol=1e-6)
  # band 0.75-1.25 x true length: 2 of 2, 1 of 1, 0 of 0 in; 0 of 1 out; 3 of 4 in (>= 3)
  np.testing.assert_array_equal(in_length_band(pred, true), [True, True, True, False, True])
  np.testing.assert_allclose(judge_reward(pred, true, penalty=0.5), [0.5, 1.0, 1.0, -0.5, 6 / 7], rtol=1e-6)
  sub = lambda p, t: jnp.sum(p * t, -1)  # noqa: E731  # a pluggable judge: true positives
  np.testing.assert_allclose(judge_reward(pred, true, judge=sub, penalty=1.0), [1, 1, 0, -1, 3])


def test_delta_logprobs_are_bernoulli_logprobs():
  logits = jnp.array([[2.0, -1.0, 0.3]])
  delta = jnp.array([[1.0, 1.0, 0.0]])
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  want = np.where(np.asarray(delta) > 0.5, np.log(p), np.log1p(-p))
  np.testing.assert_allclose(delta_logprobs(logits, delta), want, rtol=1e-5)


def test_untrained_renderer_is_the_identity_edit_and_stages_touch_only_their_params():
  obs, action, delta, nxt = _data()
  wm = TwoStageWM(UI.image_shape, UI.num_actions, UI.num_changes, (16,), rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(wm.imagine(obs, action), obs)  # zero-init edit, skip logits +-4
  std = TwoStageWM(UI.image_shape, UI.num_actions, UI.num_changes, (16,), zero_init_renderer=False,
                   rngs=nnx.Rngs(0))
  edit = np.asarray(std.renderer(obs, delta)) - 4.0 * (2 * np.asarray(obs) - 1)
  assert np.abs(edit).max() > 1e-3  # a random edit, but below the skip logit: the screen stays
  np.testing.assert_array_equal(std.imagine(obs, action), obs)
  # the stage filters split the parameters: delta head / renderer, disjoint, together all of them
  paths = lambda f: {jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(nnx.state(wm, f))[0]}  # noqa: E731
  d, r, every = paths(DELTA_PARAMS), paths(RENDERER_PARAMS), paths(nnx.Param)
  assert d and r and all("delta_head" in k for k in d) and all("renderer" in k for k in r)
  assert not d & r and d | r == every
  # render_loss against optax's BCE of the identity logits
  want = optax.sigmoid_binary_cross_entropy(4.0 * (2 * obs - 1), nxt).mean()
  np.testing.assert_allclose(render_loss(wm, obs, delta, nxt), want, rtol=1e-5)


@pytest.mark.slow
def test_stagewise_training_learns_the_two_widget_ui():
  obs, action, delta, nxt = _data(256)
  wm = TwoStageWM(UI.image_shape, UI.num_actions, UI.num_changes, (32,), rngs=nnx.Rngs(1))
  direct = DirectWM(UI.image_shape, UI.num_actions, (32,), rngs=nnx.Rngs(1))

  def fit(model, loss, wrt, steps=300):
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=wrt)

    @nnx.jit
    def run(model, opt):
      for _ in range(10):
        g = nnx.grad(loss, argnums=nnx.DiffState(0, wrt))(model)
        opt.update(model, g)

    for _ in range(steps // 10):
      run(model, opt)

  fit(wm, lambda m: delta_loss(m, obs, action, delta), DELTA_PARAMS)
  fit(wm, lambda m: render_loss(m, obs, delta, nxt), RENDERER_PARAMS)
  np.testing.assert_array_equal(wm.describe(obs, action), delta)
  np.testing.assert_array_equal(wm.imagine(obs, action), nxt)
  fit(direct, lambda m: optax.sigmoid_binary_cross_entropy(m(obs, action), nxt).mean(), nnx.Param)
  assert float(np.mean(np.asarray(direct.imagine(obs, action)) != np.asarray(nxt))) < 0.01


def test_grpo_raises_the_judge_reward_of_a_noisy_head_and_leaves_the_renderer():
  obs, action, delta, _ = _data(64, seed=2)
  wm = TwoStageWM(UI.image_shape, UI.num_actions, UI.num_changes, (16,), rngs=nnx.Rngs(2))
  renderer_before = jax.tree.map(np.asarray, nnx.state(wm.renderer))
  before = float(sampled_reward(wm, obs, action, delta, jax.random.key(5), 8)[0])
  tuned, curve = grpo_finetune(wm, obs, action, delta, jax.random.key(4),
                               GRPOSettings(updates=40, batch=32, lr=3e-2))
  after = float(sampled_reward(tuned, obs, action, delta, jax.random.key(5), 8)[0])
  assert after > before + 0.2, (before, after)
  assert curve["reward"].shape == (40,) and np.all(np.isfinite(curve["loss"]))
  np.testing.assert_allclose(curve["ratio"], 1.0, rtol=1e-5)  # one step per batch: on-policy
  assert float(curve["kl"][0]) == pytest.approx(0.0, abs=1e-6)  # starts at the reference
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, nnx.state(tuned.renderer)), renderer_before)
