"""Red-vs-Blue: the Bayes update against a hand-derived posterior, utilities, DSR/FPR, the loop."""

import numpy as np
import pytest

from jaxpapers.evals.red_blue import belief_update, dsr, expected_utility, fpr, play


def test_bayes_update_matches_a_hand_worked_two_hypothesis_example():
  # prior P(patched) = 0.3; evidence "blocked": P(blocked | open) = 0.1, P(blocked | patched) = 0.9
  # posterior patched = 0.9 * 0.3 / (0.9 * 0.3 + 0.1 * 0.7) = 0.27 / 0.34
  post = belief_update([0.7, 0.3], [0.1, 0.9])
  np.testing.assert_allclose(post, [0.07 / 0.34, 0.27 / 0.34], rtol=1e-14)
  assert post.sum() == pytest.approx(1.0, abs=1e-15)
  # two independent observations = one update with the product of likelihoods
  twice = belief_update(belief_update([0.7, 0.3], [0.1, 0.9]), [0.1, 0.9])
  np.testing.assert_allclose(twice, belief_update([0.7, 0.3], [0.01, 0.81]), rtol=1e-14)
  batch = belief_update(np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([0.25, 0.75]))
  np.testing.assert_allclose(batch, [[0.25, 0.75], [0.05 / 0.65, 0.6 / 0.65]], rtol=1e-14)
  with pytest.raises(ValueError, match="probability 0"):
    belief_update([1.0, 0.0], [0.0, 1.0])


def test_expected_utility_and_rates():
  utility = np.array([[1.0, 0.0], [0.5, 0.5]])  # attack 0 pays only against an open target
  np.testing.assert_allclose(expected_utility([0.8, 0.2], utility), [0.8, 0.5])
  assert dsr([True, False, True, True]) == 0.75
  assert fpr([False] * 49 + [True]) == 0.02


class _Target:
  def __init__(self):
    self.state = frozenset()

  def blocks(self, text):
    return text in self.state


class _Red:
  def __init__(self):
    self.belief = np.array([0.5, 0.5])

  def propose(self, state, rng):
    return [f"attack{int(rng.integers(3))}"]

  def observe(self, attacks, blocked):
    for b in blocked:
      self.belief = belief_update(self.belief, [0.1, 0.9] if b else [0.9, 0.1])


class _Blue:
  def patch(self, state, logs):
    return state | {log["text"] for log in logs}


def test_play_patches_from_logs_and_is_seeded():
  def game(seed):
    return play(_Target(), _Red(), _Blue(), 6, ["attack0", "attack1", "attack2"], ["hello"],
                np.random.default_rng(seed))

  a, b = game(3), game(3)
  assert [r.attacks for r in a] == [r.attacks for r in b]
  seen = set()
  for r in a:
    assert r.blocked == [x in seen for x in r.attacks]  # blocked only once patched
    seen |= set(r.attacks)
    assert r.dsr == pytest.approx(len(seen) / 3) and r.fpr == 0.0
