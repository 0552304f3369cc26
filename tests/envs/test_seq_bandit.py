"""SeqBandit: exact-match reward, prompt ids, device-conditioned targets."""

import jax.numpy as jnp
import numpy as np

from jaxpapers.envs import make_seq_bandit


def test_reward_is_one_only_on_the_exact_target_of_each_device():
  env = make_seq_bandit(5, 4, 3, num_devices=2, seed=0)
  assert env.targets.shape == (5, 2, 4) and env.num_prompts == 10
  tasks, devices = jnp.array([0, 3, 4]), jnp.array([1, 0, 1])
  prompts = env.prompt_ids(tasks, devices)
  np.testing.assert_array_equal(env.split_prompts(prompts)[0], tasks)
  targets = np.asarray(env.targets)[np.asarray(tasks), np.asarray(devices)]
  np.testing.assert_array_equal(env.reward(prompts, jnp.asarray(targets)), 1.0)
  wrong = targets.copy()
  wrong[:, 2] = (wrong[:, 2] + 1) % 3
  np.testing.assert_array_equal(env.reward(prompts, jnp.asarray(wrong)), 0.0)


def test_uniform_success_rate_is_v_to_the_minus_l():
  env = make_seq_bandit(1, 2, 3, seed=1)
  grid = np.array([[a, b] for a in range(3) for b in range(3)])
  assert float(env.reward(jnp.zeros(9, jnp.int32), jnp.asarray(grid)).sum()) == 1.0
  assert not np.array_equal(make_seq_bandit(8, 4, 4, seed=1).targets, make_seq_bandit(8, 4, 4, seed=2).targets)
