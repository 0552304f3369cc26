"""StarWM's metrics: smape, supply_block_rate, unit_set_wasserstein against exact values and scipy."""

import itertools

import numpy as np
import pytest
import scipy.stats

from jaxpapers.evals import rts_metrics


def test_smape_edge_cases_and_formula():
  s = lambda a, b, **k: np.asarray(rts_metrics.smape(np.asarray(a, float), np.asarray(b, float), **k))  # noqa: E731
  assert float(s([0.0], [0.0])) == 0.0  # 0/0 := 0
  assert float(s([0.0], [5.0])) == pytest.approx(2.0)
  assert float(s([-1.0], [1.0])) == pytest.approx(2.0)
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
  a[0, 0] = b[0, 0] = 0.0
  ref = np.where((np.abs(a) + np.abs(b)) > 0, np.abs(a - b) / ((np.abs(a) + np.abs(b)) / 2 + 1e-300), 0.0)
  np.testing.assert_allclose(s(a, b), ref.mean(), rtol=1e-5)
  np.testing.assert_allclose(s(a, b, axis=1), ref.mean(1), rtol=1e-5)
  np.testing.assert_allclose(s(a, b), s(b, a), rtol=1e-6)


def test_supply_block_rate():
  used = np.array([[10, 15, 15, 16, 12], [1, 1, 1, 1, 1]])
  cap = np.array([[15, 15, 15, 15, 23], [2, 2, 2, 2, 2]])
  pending = np.array([[False, False, True, True, False], [False] * 5])
  np.testing.assert_allclose(rts_metrics.supply_block_rate(used, cap), [3 / 5, 0.0])
  np.testing.assert_allclose(rts_metrics.supply_block_rate(used, cap, pending), [1 / 5, 0.0])
  np.testing.assert_allclose(rts_metrics.supply_block_rate(used.T, cap.T, axis=0), [3 / 5, 0.0])


def _brute(x, y, c):
  """Min over injective matchings of the smaller set, unmatched units at c, / max(n, m)."""
  small, large = (x, y) if len(x) <= len(y) else (y, x)
  best = np.inf
  for perm in itertools.permutations(range(len(large)), len(small)):
    cost = sum(np.linalg.norm(small[i] - large[j]) for i, j in enumerate(perm))
    best = min(best, cost + c * (len(large) - len(small)))
  return best / len(large)


def test_unit_set_wasserstein_exact_values():
  rng = np.random.default_rng(0)
  x, y = rng.uniform(0, 10, (6, 2)), rng.uniform(0, 10, (6, 2))
  w = rts_metrics.unit_set_wasserstein
  assert w(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)
  assert w(x, x + np.array([3.0, 4.0])) == pytest.approx(5.0)  # W1 of a rigid shift is its length
  assert w(x, y) == pytest.approx(w(y, x))
  assert w(x, y) == pytest.approx(_brute(x, y, 0.0))
  # 1-D equal counts: scipy's W1 between the empirical distributions
  u, v = rng.normal(size=7), rng.normal(size=7) + 1
  assert w(u, v) == pytest.approx(scipy.stats.wasserstein_distance(u, v))
  # unequal counts: the penalty convention, against a brute force; and the normalized one
  z = rng.uniform(0, 10, (4, 2))
  assert w(x, z, unmatched_cost=15.0) == pytest.approx(_brute(x, z, 15.0))
  assert w(z, x, unmatched_cost=15.0) == pytest.approx(_brute(x, z, 15.0))
  assert w([[0.0]], [[1.0], [10.0]], unmatched_cost=20.0) == pytest.approx(10.5)
  assert w(u[:3], v[:6]) == pytest.approx(scipy.stats.wasserstein_distance(u[:3], v[:6]))
  assert w(np.zeros((0, 2)), np.zeros((0, 2))) == 0.0
  assert w(np.zeros((0, 2)), x, unmatched_cost=3.0) == 3.0
  with pytest.raises(ValueError, match="unmatched_cost"):
    w(np.zeros((0, 2)), x)
