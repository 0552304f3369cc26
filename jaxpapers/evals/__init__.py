"""Evaluation metrics and harnesses shared by the experiments.

* `images`: sample-quality metrics for generated images: the Frechet distance between Gaussian
  fits in a PCA space fitted on real images (a cheap FID stand-in) and PSNR.
"""

from jaxpapers.evals.images import FrechetPCA, frechet_distance, psnr
