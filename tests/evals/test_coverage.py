"""Coverage-conditioned accuracy: hand-counted cases and the gap-recovered ratio."""

import math

import numpy as np
import pytest

from jaxpapers.evals.coverage import coverage_accuracy, gap_recovered


def test_hand_counted_case():
  # logged in the candidates of samples 0, 1, 3, 4; chosen right in 0, 3 (and 2, uncovered, never)
  r = coverage_accuracy([0, 2, 1, 3, 6], [0, 1, 2, 3, 4], [[0, 5], [1, 2], [4, 1], [7, 3], [4, 6]])
  assert r == {"accuracy": 2 / 5, "coverage": 4 / 5, "covered_accuracy": 2 / 4, "samples": 5}


def test_against_a_loop_on_random_data():
  rng = np.random.default_rng(0)
  cand = np.stack([rng.choice(10, 3, replace=False) for _ in range(200)])
  logged, chosen = rng.integers(0, 10, 200), cand[np.arange(200), rng.integers(0, 3, 200)]
  r = coverage_accuracy(chosen, logged, cand)
  cov = [lg in c for lg, c in zip(logged, cand)]
  hits = [ch == lg for ch, lg in zip(chosen, logged)]
  assert r["coverage"] == sum(cov) / 200 and r["accuracy"] == sum(hits) / 200
  assert r["covered_accuracy"] == sum(h for h, c in zip(hits, cov) if c) / sum(cov)
  assert r["accuracy"] <= r["coverage"]  # a chosen candidate can only be right when covered


def test_no_coverage_and_gap_edge_cases():
  r = coverage_accuracy([1], [0], [[1, 2]])
  assert r["coverage"] == 0.0 and math.isnan(r["covered_accuracy"])
  assert gap_recovered(0.2, 0.5, 0.8) == pytest.approx(0.5)
  assert gap_recovered(0.2, 0.8, 0.8) == pytest.approx(1.0)
  assert math.isnan(gap_recovered(0.5, 0.5, 0.5))
  with pytest.raises(ValueError, match="must be"):
    coverage_accuracy([0, 1], [0], [[0, 1]])
