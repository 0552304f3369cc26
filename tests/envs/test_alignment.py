"""The synthetic alignment task: quality, corrupted references, the toy judges' logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.envs import JudgeParams, make_alignment_task


@pytest.fixture(scope="module")
def task():
  return make_alignment_task(16, 8, 6, corruption=0.25, spurious_token=0, seed=0)


def test_references_differ_from_the_ideal_in_a_quarter_of_positions(task):
  ideal, ref = np.asarray(task.ideal), np.asarray(task.reference)
  np.testing.assert_array_equal((ideal != ref).sum(1), 2)
  np.testing.assert_allclose(task.quality(jnp.arange(16), task.reference), 0.75)
  np.testing.assert_allclose(task.quality(jnp.arange(16), task.ideal), 1.0)


def test_judge_logits_follow_their_formulas(task):
  p = JudgeParams(scale=8.0, position_bias=0.5, ref_noise=0.0, free_noise=0.0, free_quality_weight=0.5,
                  free_spurious_weight=1.0)
  rng = np.random.default_rng(0)
  prompts = jnp.asarray(rng.integers(0, 16, 32))
  a, b = (jnp.asarray(rng.integers(0, 6, (32, 8))) for _ in range(2))
  key = jax.random.key(0)
  la, lb = task.judge_logprobs("reference", p, key, prompts, a, b)
  ref = np.asarray(task.reference)[np.asarray(prompts)]
  logit = 8 * ((np.asarray(a) == ref).mean(1) - (np.asarray(b) == ref).mean(1)) + 0.5
  np.testing.assert_allclose(la - lb, logit, atol=1e-5)
  np.testing.assert_allclose(np.exp(la) + np.exp(lb), 1.0, atol=1e-6)
  la, lb = task.judge_logprobs("reference_free", p, key, prompts, a, b)
  ideal = np.asarray(task.ideal)[np.asarray(prompts)]
  q = lambda x: (np.asarray(x) == ideal).mean(1)  # noqa: E731
  s = lambda x: (np.asarray(x) == 0).mean(1)  # noqa: E731
  np.testing.assert_allclose(la - lb, 8 * (0.5 * (q(a) - q(b)) + (s(a) - s(b))) + 0.5, atol=1e-5)
  la, lb = task.judge_logprobs("oracle", p, key, prompts, a, b)
  better = q(a) > q(b)
  assert np.all(np.isneginf(np.asarray(lb))[better]) and np.all(np.asarray(la)[better] == 0)
