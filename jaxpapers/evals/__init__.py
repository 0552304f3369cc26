"""Evaluation metrics and harnesses shared by the experiments.

* `images`: sample-quality metrics for generated images: the Frechet distance between Gaussian
  fits in a PCA space fitted on real images (a cheap FID stand-in) and PSNR.
* `assignment`: exact assignment (earth mover's) distance between uniform point sets.
"""

from jaxpapers.evals.images import FrechetPCA, frechet_distance, psnr

# isort: split
# Exact assignment (EMD) distance: TactAlign (arXiv 2602.13579); reused for unit-set distances.
from jaxpapers.evals.assignment import assignment_distance, optimal_assignment
