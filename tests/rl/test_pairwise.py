"""aggregate_pairwise against a plain-Python model of the authors' scoring, and its edge cases."""

import numpy as np

from jaxpapers import rl


def _python_scores(probs, pairs, k):
  total, count = [0.0] * k, [0] * k
  for p, (i, j) in zip(probs, pairs):
    total[i] += p
    total[j] += 1 - p
    count[i] += 1
    count[j] += 1
  return [t / c for t, c in zip(total, count)]


def test_ordered_pairs_are_all_k_k_minus_1():
  pairs = rl.ordered_pairs(5)
  assert pairs.shape == (20, 2)
  assert len({tuple(p) for p in pairs}) == 20 and all(i != j for i, j in pairs)


def test_scores_match_python_and_pick_argmax_argmin():
  rng = np.random.default_rng(0)
  pairs = rl.ordered_pairs(5)
  probs = rng.random((7, 20)).astype(np.float32)
  lab = rl.aggregate_pairwise(probs, pairs, 5)
  for row in range(7):
    ref = _python_scores(probs[row], pairs, 5)
    np.testing.assert_allclose(lab.scores[row], ref, atol=1e-6)
    assert int(lab.chosen[row]) == int(np.argmax(ref)) and int(lab.rejected[row]) == int(np.argmin(ref))
  assert bool(np.all(lab.valid))


def test_hand_made_three_candidates_and_swap_symmetry():
  pairs = rl.ordered_pairs(3)
  probs = np.array([[0.7, 0.2, 0.3, 0.1, 0.9, 0.8]], np.float32)
  lab = rl.aggregate_pairwise(probs, pairs, 3)
  assert (int(lab.chosen[0]), int(lab.rejected[0])) == (2, 1)
  swapped = rl.aggregate_pairwise(1 - probs, pairs[:, ::-1], 3)
  np.testing.assert_allclose(swapped.scores, lab.scores, atol=1e-6)


def test_position_bias_cancels_over_both_orders():
  """A judge adding +b to slot A on every comparison shifts no candidate's score."""
  pairs = rl.ordered_pairs(4)
  rng = np.random.default_rng(1)
  quality = rng.random(4)
  logit = quality[pairs[:, 0]] - quality[pairs[:, 1]]
  fair = rl.aggregate_pairwise(1 / (1 + np.exp(-logit)), pairs, 4).scores
  biased = rl.aggregate_pairwise(1 / (1 + np.exp(-(logit + 2.0))), pairs, 4).scores
  assert np.argsort(np.asarray(fair)).tolist() == np.argsort(quality).tolist()
  # each pair adds sigmoid(d + b) + sigmoid(d - b) to i: increasing in d, so the order survives
  assert np.argsort(np.asarray(biased)).tolist() == np.argsort(quality).tolist()


def test_ties_and_masked_candidates_are_invalid():
  pairs = rl.ordered_pairs(3)
  assert not bool(rl.aggregate_pairwise(np.full((1, 6), 0.5), pairs, 3).valid[0])
  probs = np.array([[0.9, 0.9, 0.1, 0.5, 0.1, 0.5]])
  only_one = rl.aggregate_pairwise(probs, pairs, 3, candidate_mask=np.array([[True, False, False]]))
  assert not bool(only_one.valid[0])
  two = rl.aggregate_pairwise(probs, pairs, 3, candidate_mask=np.array([[True, True, False]]))
  assert bool(two.valid[0]) and int(two.chosen[0]) == 0 and int(two.rejected[0]) == 1
  assert np.isnan(np.asarray(two.scores)[0, 2])


def test_slot_probability_fallbacks():
  inf = -np.inf
  got = np.asarray(rl.slot_probability(np.array([np.log(0.3), -1.0, inf, inf]),
                                       np.array([np.log(0.1), inf, -2.0, inf])))
  np.testing.assert_allclose(got, [0.75, 1.0, 0.0, 0.5], atol=1e-6)
