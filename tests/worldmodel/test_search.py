"""action_search: argmax of the score over imagined states, ties, coverage, vmap; Gumbel-top-k."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.worldmodel import action_search, gumbel_top_k


def _propose(obs, key, k):  # candidates depend on obs: obs + [0, 1, ..., k - 1] mod 7
  return (obs + jnp.arange(k)) % 7


def test_picks_the_argmax_of_the_score_over_imagined_states():
  wm = lambda obs, a: jnp.array([a * a % 5, a])  # noqa: E731  # a pytree-ish imagined state
  score = lambda s: s[0].astype(jnp.float32)  # noqa: E731
  r = action_search(_propose, wm, score, 4, jnp.int32(2), jax.random.key(0), logged=jnp.int32(5))
  # candidates 2, 3, 4, 5 -> imagined a^2 mod 5 = 4, 4, 1, 0: the first of the tied 4s
  np.testing.assert_array_equal(r.candidates, [2, 3, 4, 5])
  np.testing.assert_array_equal(r.scores, [4, 4, 1, 0])
  assert int(r.action) == 2 and int(r.index) == 0 and bool(r.covered)
  np.testing.assert_array_equal(r.imagined[:, 1], r.candidates)
  r = action_search(_propose, wm, lambda s: -s[0].astype(jnp.float32), 4, jnp.int32(2), jax.random.key(0))
  assert int(r.action) == 5 and not bool(r.covered)  # no logged action: not covered


def test_vmaps_and_jits_over_a_batch_with_per_sample_goals():
  obs, goals, logged = jnp.array([0, 3, 6]), jnp.array([2, 6, 6]), jnp.array([2, 0, 4])

  def one(o, g, lg, key):
    return action_search(_propose, lambda o, a: a, lambda s: -jnp.abs(s - g), 3, o, key, lg)

  r = jax.jit(jax.vmap(one))(obs, goals, logged, jax.random.split(jax.random.key(0), 3))
  # candidates [0 1 2], [3 4 5], [6 0 1]: nearest the goals 2, 5 (|5-6| = 1 ties none), 6
  np.testing.assert_array_equal(r.action, [2, 5, 6])
  np.testing.assert_array_equal(r.covered, [True, False, False])


def test_refuses_a_proposer_of_the_wrong_shape():
  with pytest.raises(ValueError, match="needs"):
    action_search(lambda o, key, k: jnp.arange(k + 1), lambda o, a: a, lambda s: s, 3, 0, jax.random.key(0))


def test_gumbel_top_k_draws_distinct_actions_with_softmax_first_draws():
  logits = jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05]))
  draws = np.asarray(jax.vmap(lambda k: gumbel_top_k(logits, k, 3))(jax.random.split(jax.random.key(0), 20000)))
  assert all(len(set(d)) == 3 for d in draws[:200])
  freq = np.bincount(draws[:, 0], minlength=4) / len(draws)
  np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.015)
  # second draw given first = 0: renormalized over the rest, 0.3 / 0.5
  second = draws[draws[:, 0] == 0, 1]
  assert abs(np.mean(second == 1) - 0.6) < 0.03
