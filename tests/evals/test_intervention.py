"""Intervention metrics: accuracy and F1 against scikit-learn; PTS invariants and hand-computed values."""

import numpy as np
import pytest
import sklearn.metrics

from jaxpapers.evals.intervention import f1_per_class, macro_f1, perfect_timing_score, step_accuracy


def test_accuracy_and_f1_match_scikit_learn():
  rng = np.random.default_rng(0)
  y = (rng.random(500) < 0.15).astype(int)
  p = (rng.random(500) < 0.3).astype(int)
  assert step_accuracy(y, p) == pytest.approx(sklearn.metrics.accuracy_score(y, p), abs=1e-15)
  f1 = f1_per_class(y, p)
  ref = sklearn.metrics.f1_score(y, p, average=None, labels=[0, 1])
  assert (f1[0], f1[1]) == pytest.approx(tuple(ref), abs=1e-15)
  assert macro_f1(y, p) == pytest.approx(sklearn.metrics.f1_score(y, p, average="macro"), abs=1e-15)
  # hand-computed: y = 1100, p = 1010: class 1 tp 1 fp 1 fn 1 -> 0.5; class 0 tp 1 fp 1 fn 1 -> 0.5
  assert f1_per_class([1, 1, 0, 0], [1, 0, 1, 0]) == {0: 0.5, 1: 0.5}
  assert step_accuracy([[1, 0], [0, 0, 1]], [[1, 1], [0, 0, 1]]) == 0.8  # lists of trajectories
  assert f1_per_class([0, 0, 1], [0, 0, 0])[1] == 0.0  # never intervening: F1 = 0


LABELS = [np.array([0, 0, 0, 1, 0, 0, 1]), np.array([0, 0, 0, 0]), np.array([0, 1, 0])]


def test_pts_invariants():
  zeros = [np.zeros_like(y) for y in LABELS]
  assert perfect_timing_score(zeros, LABELS, 1.0) == 0.0
  assert perfect_timing_score(LABELS, LABELS, 1.0) == 1.0
  for alpha in (0.1, 0.5, 1.0, 3.0):
    base = perfect_timing_score(LABELS, LABELS, alpha)
    for t in (0, 1, 2):  # an early false positive never raises the score
      p = [y.copy() for y in LABELS]
      p[0][t] = 1
      assert perfect_timing_score(p, LABELS, alpha) <= base
    far, near = [y.copy() for y in LABELS], [y.copy() for y in LABELS]
    far[0][0], near[0][2] = 1, 1
    assert perfect_timing_score(far, LABELS, alpha) <= perfect_timing_score(near, LABELS, alpha)
  # alpha = 0: event-level exact-hit recall (3 events, 2 hit, plus false positives everywhere)
  p = [np.array([1, 1, 1, 1, 0, 0, 0]), np.array([1, 1, 1, 1]), np.array([1, 1, 0])]
  assert perfect_timing_score(p, LABELS, 0.0) == pytest.approx(2 / 3)


def test_pts_hand_computed():
  # trajectory 0: events at 3 (window -1..3, length 4) and 6 (window 3..6, length 3)
  p = [np.array([0, 1, 0, 1, 0, 1, 1]), np.array([0, 0, 1, 0]), np.array([0, 1, 0])]
  # event 3: hit, FP at 1: ((3 - 1) / 4)^2 = 0.25 -> 1 - 0.5 * 0.25; event 6: hit, FP at 5: (1/3)^2
  # event 1 of trajectory 2: hit, no FP; trajectory 1 has no event (its FP is not scored)
  want = ((1 - 0.5 * 0.25) + (1 - 0.5 / 9) + 1) / 3
  assert perfect_timing_score(p, LABELS, 0.5) == pytest.approx(want, abs=1e-15)
  assert perfect_timing_score(p, LABELS, 100.0) == pytest.approx(1 / 3)  # clipped at 0 per event
  with pytest.raises(ValueError, match="provisional"):
    perfect_timing_score(p, LABELS, provisional=False)
