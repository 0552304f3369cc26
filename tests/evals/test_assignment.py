"""Exact assignment distance: analytic cases and a brute-force check over all permutations."""

import itertools

import numpy as np
import pytest

from jaxpapers.evals.assignment import assignment_distance, optimal_assignment


def test_permuted_copy_is_at_distance_zero():
  x = np.random.default_rng(0).normal(size=(40, 5))
  perm = np.random.default_rng(1).permutation(40)
  assert assignment_distance(x, x[perm]) == pytest.approx(0.0, abs=1e-12)
  rows, cols, _ = optimal_assignment(x, x[perm])
  np.testing.assert_array_equal(perm[cols], rows)


def test_constant_shift_costs_its_norm():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(30, 3)) * 0.1  # spread << shift: the identity matching is optimal
  delta = np.array([1.0, -2.0, 0.5])
  assert assignment_distance(x, x + delta) == pytest.approx(np.linalg.norm(delta), rel=1e-12)
  # W2^2 of a shift is |delta|^2 for any spread (the cross term averages to zero)
  y = rng.normal(size=(30, 3))
  assert assignment_distance(y, y + delta, "euclidean", power=2) == pytest.approx(
      np.sum(delta ** 2), rel=1e-10)


def test_matches_brute_force_over_permutations():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
  brute = min(np.mean(np.linalg.norm(x - y[list(p)], axis=1)) for p in itertools.permutations(range(6)))
  assert assignment_distance(x, y) == pytest.approx(brute, rel=1e-12)
  l1 = min(np.mean(np.abs(x - y[list(p)]).sum(1)) for p in itertools.permutations(range(6)))
  assert assignment_distance(x, y, "cityblock") == pytest.approx(l1, rel=1e-12)


def test_unequal_sizes_in_one_dimension_equal_the_quantile_formula():
  """W1 in 1-D is the integral of |F^-1 - G^-1|; with 4 and 6 uniform points, on a 12-grid."""
  rng = np.random.default_rng(4)
  x, y = np.sort(rng.normal(size=4)), np.sort(rng.normal(size=6))
  q = (np.arange(12) + 0.5) / 12
  expected = np.mean(np.abs(x[(q * 4).astype(int)] - y[(q * 6).astype(int)]))
  assert assignment_distance(x, y) == pytest.approx(expected, rel=1e-12)


def test_bad_input_names_the_problem():
  with pytest.raises(ValueError, match="one space"):
    assignment_distance(np.zeros((3, 2)), np.zeros((3, 3)))
  with pytest.raises(ValueError, match="max_points"):
    assignment_distance(np.zeros((97, 1)), np.zeros((89, 1)))
