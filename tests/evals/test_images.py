"""Image metrics against closed forms."""

import numpy as np
import pytest

from jaxpapers.evals import FrechetPCA, frechet_distance, psnr


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  a, b = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_is_invariant_under_a_common_rotation():
  rng = np.random.default_rng(1)
  m = rng.normal(size=(4, 4))
  cov1, cov2 = m @ m.T + np.eye(4), np.diag([1.0, 2.0, 3.0, 4.0])
  q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
  mu1, mu2 = rng.normal(size=4), np.zeros(4)
  plain = frechet_distance(mu1, cov1, mu2, cov2)
  rotated = frechet_distance(q @ mu1, q @ cov1 @ q.T, q @ mu2, q @ cov2 @ q.T)
  assert rotated == pytest.approx(plain, rel=1e-9)


def test_frechet_pca_separates_shifted_sets_and_is_near_zero_for_one_distribution():
  rng = np.random.default_rng(2)
  real = rng.normal(size=(2000, 4, 4))
  metric = FrechetPCA(real, components=3)
  same = metric.distance(rng.normal(size=(2000, 4, 4)), rng.normal(size=(2000, 4, 4)))
  shifted = metric.distance(rng.normal(size=(2000, 4, 4)), rng.normal(size=(2000, 4, 4)) + 1.0)
  # A shift of 1 in all 16 pixels projects to |P^T 1|^2 <= 16 in the 3-component space.
  assert same < 0.05
  projected = np.sum((metric.pca.components_ @ np.ones(16)) ** 2)
  assert shifted == pytest.approx(projected, abs=0.1)


def test_psnr_is_ten_log10_of_range_squared_over_mse():
  ref = np.zeros((2, 3, 3))
  images = ref + np.array([0.1, 0.01])[:, None, None]
  np.testing.assert_allclose(psnr(images, ref), [20.0, 40.0], rtol=1e-12)
  assert psnr(ref, ref)[0] == np.inf
  with pytest.raises(ValueError, match="one shape"):
    psnr(images, ref[:1])
