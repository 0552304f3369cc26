"""Image sample-quality metrics: Frechet distance in a PCA space, and PSNR.

The Frechet distance between Gaussian fits of two sets of features is FID's formula (Heusel et
al., arXiv 1706.08500, section 3): ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)). FID's
features are Inception activations; `FrechetPCA` uses the first components of a PCA fitted on real
images instead, the CPU stand-in of the DDiT (arXiv 2602.16968) and Unified Latents
(arXiv 2602.17270) reproductions.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from sklearn.decomposition import PCA


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
  """Frechet (2-Wasserstein) distance squared between N(mu1, cov1) and N(mu2, cov2)."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
    raise ValueError(f"frechet_distance: means {mu1.shape}, {mu2.shape} and covariances "
                     f"{cov1.shape}, {cov2.shape} must be [d] and [d, d] of one d")
  root = scipy.linalg.sqrtm(cov1 @ cov2)
  root = np.real(root)  # the imaginary part is rounding noise for PSD inputs
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * root))


def _flat(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images, np.float64)
  if images.ndim < 2:
    raise ValueError(f"images of shape {images.shape}: expected [n, ...] with n images")
  return images.reshape(images.shape[0], -1)


class FrechetPCA:
  """Frechet distance between Gaussian fits in a PCA space fitted once on real images.

  Args:
    real: [n, ...] real images to fit the PCA on (flattened).
    components: PCA components (12 in both specs).
    seed: the PCA solver's seed (the full SVD is deterministic; kept for randomized solvers).
  """

  def __init__(self, real: np.ndarray, components: int = 12, seed: int = 0):
    flat = _flat(real)
    if flat.shape[0] <= components:
      raise ValueError(f"FrechetPCA: {flat.shape[0]} real images for {components} components; "
                       "pass more images than components")
    self.components = components
    self.pca = PCA(n_components=components, svd_solver="full", random_state=seed).fit(flat)

  def features(self, images: np.ndarray) -> np.ndarray:
    """[n, components] PCA coordinates of `images`."""
    return self.pca.transform(_flat(images))

  def distance(self, images_a: np.ndarray, images_b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of the two sets' PCA features."""
    fa, fb = self.features(images_a), self.features(images_b)
    for name, f in (("images_a", fa), ("images_b", fb)):
      if f.shape[0] < 2:
        raise ValueError(f"FrechetPCA.distance: {name} has {f.shape[0]} images; pass at least 2")
    return frechet_distance(fa.mean(0), np.cov(fa, rowvar=False),
                            fb.mean(0), np.cov(fb, rowvar=False))


def psnr(images: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> np.ndarray:
  """Peak signal-to-noise ratio in dB of each image against its reference, [n].

  `10 log10(data_range^2 / MSE)` per image (MSE over all of an image's values); identical images
  give +inf.
  """
  a, b = _flat(images), _flat(reference)
  if a.shape != b.shape:
    raise ValueError(f"psnr: images {np.shape(images)} and reference {np.shape(reference)} "
                     "must have one shape")
  mse = np.mean((a - b) ** 2, axis=1)
  with np.errstate(divide="ignore"):
    return 10 * np.log10(data_range ** 2 / mse)
