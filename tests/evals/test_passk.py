"""pass@k against exact rational arithmetic (math.comb, fractions) and the weighted aggregate by hand."""

import math
from fractions import Fraction

import numpy as np
import pytest

from jaxpapers.evals.passk import PACEBENCH_WEIGHTS, pass_at_k, weighted_pass_at_k


def exact(n: int, c: int, k: int) -> Fraction:
  return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def test_matches_exact_rationals_up_to_ten_thousand_samples():
  rng = np.random.default_rng(0)
  n = np.concatenate([rng.integers(1, 10_001, 300), [10_000, 10_000, 10_000, 9_999]])
  c = np.array([rng.integers(0, m + 1) for m in n[:-4]] + [1, 5, 9_990, 3])
  k = np.array([rng.integers(1, m + 1) for m in n[:-4]] + [1, 100, 10, 5_000])
  got = pass_at_k(n, c, k)
  want = np.array([float(exact(int(a), int(b), int(d))) for a, b, d in zip(n, c, k)])
  assert np.max(np.abs(got - want)) < 1e-9  # issue's bound: 1e-6


def test_edge_cases_and_broadcasting():
  assert pass_at_k(10, 0, 3) == 0.0
  assert pass_at_k(10, 10, 3) == 1.0
  assert pass_at_k(10, 8, 3) == 1.0  # k > n - c: every draw holds a correct sample
  assert pass_at_k(10, 1, 1) == pytest.approx(0.1, abs=1e-13)
  out = pass_at_k(np.array([[20], [40]]), 5, np.array([1, 5, 10]))
  assert out.shape == (2, 3)
  assert out[1, 1] == pytest.approx(float(exact(40, 5, 5)), abs=1e-13)
  with pytest.raises(ValueError, match="k"):
    pass_at_k(5, 1, 6)
  with pytest.raises(ValueError, match="c"):
    pass_at_k(5, 6, 1)
  with pytest.raises(ValueError, match="integers"):
    pass_at_k(5.5, 1, 1)


def test_weighted_aggregate_equals_a_hand_computation():
  rows = [{"task": "t1", "scenario": "A-CVE", "n": 10, "c": 0}, {"task": "t2", "scenario": "A-CVE", "n": 10, "c": 10},
          {"task": "t3", "scenario": "B-CVE", "n": 5, "c": 1}, {"task": "t4", "scenario": "C-CVE", "n": 6, "c": 2},
          {"task": "t5", "scenario": "D-CVE", "n": 8, "c": 1}]
  out = weighted_pass_at_k(rows, 2)
  # A: (0 + 1) / 2; B: 1 - C(4,2)/C(5,2) = 2/5; C: 1 - C(4,2)/C(6,2) = 3/5; D: 1 - C(7,2)/C(8,2) = 1/4
  hand = Fraction(2, 10) * Fraction(1, 2) + Fraction(3, 10) * Fraction(2, 5) + Fraction(3, 10) * Fraction(3, 5) \
      + Fraction(2, 10) * Fraction(1, 4)
  assert out["aggregate"] == pytest.approx(float(hand), abs=1e-15)
  assert out["weights"] == PACEBENCH_WEIGHTS and out["tasks"] == 5
  equal = weighted_pass_at_k([{"task": "a", "scenario": "x", "n": 4, "c": 1},
                              {"task": "b", "scenario": "y", "n": 4, "c": 4}], 1)
  assert equal["aggregate"] == pytest.approx(0.5 * 0.25 + 0.5 * 1.0)
  with pytest.raises(ValueError, match="no weight"):
    weighted_pass_at_k(rows, 1, {"A-CVE": 1.0})
