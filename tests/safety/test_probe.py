"""Logistic probe against the exact optimum (scipy), z-score selection on planted weights."""

import numpy as np
import pytest
from scipy.optimize import minimize

from jaxpapers import safety


def test_zscore_selection_finds_the_planted_neurons():
  w = np.random.default_rng(0).normal(0, 0.1, 200)
  w[[7, 42, 99]] = [3.0, 2.5, 4.0]   # strongly harmful-positive
  w[120] = -4.0                      # large |z| but negative: not a safety neuron
  np.testing.assert_array_equal(safety.select_neurons(w, 3.0), [7, 42, 99])
  np.testing.assert_array_equal(safety.select_neurons(w, 3.0, positive_only=False), [7, 42, 99, 120])
  z = safety.zscores(w)
  np.testing.assert_allclose(z, (w - w.mean()) / w.std())
  assert not safety.select_neurons(np.ones(5), 0.5).size  # zero spread: nothing stands out


def _data():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(300, 6)).astype(np.float32)
  logits = x @ np.array([2.0, -1.0, 0.0, 0.5, 0.0, 0.0]) + 0.3
  y = (rng.random(300) < 1 / (1 + np.exp(-logits))).astype(np.float32)
  return x, y


def test_probe_reaches_the_l2_regularized_optimum():
  """Coupled weight decay wd = an L2 term wd/2 (|w|^2 + b^2) on the mean BCE (torch Adam's)."""
  x, y = _data()
  wd = 1e-2
  probe = safety.fit_probe(x, y, steps=3000, learning_rate=1e-2, weight_decay=wd)

  def objective(p):
    z = x @ p[:-1] + p[-1]
    return np.mean(np.logaddexp(0, z) - y * z) + wd / 2 * np.sum(p**2)

  ref = minimize(objective, np.zeros(7), method="L-BFGS-B", options={"gtol": 1e-10}).x
  np.testing.assert_allclose(probe.weights, ref[:-1], atol=2e-3)
  assert probe.bias == pytest.approx(ref[-1], abs=2e-3)
  assert probe.accuracy(x, y) > 0.75


def test_standardized_probe_scores_features_in_z_units():
  x, y = _data()
  x = x * np.array([1, 1, 1, 1, 1, 100], np.float32)  # a large-scale irrelevant feature
  p = safety.fit_probe(x, y, steps=2000, learning_rate=1e-2, standardize=True)
  np.testing.assert_allclose(p.mean, x.mean(0), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(p.scale, x.std(0), rtol=1e-5)
  assert abs(p.weights[5]) < 0.2 * abs(p.weights[0])
  np.testing.assert_allclose(p.logits(x), ((x - p.mean) / p.scale) @ p.weights + p.bias, rtol=1e-5)
