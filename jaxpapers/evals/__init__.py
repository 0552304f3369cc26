"""Evaluation metrics and harnesses shared by the experiments.

* `images`: sample-quality metrics for generated images: the Frechet distance between Gaussian
  fits in a PCA space fitted on real images (a cheap FID stand-in) and PSNR.
* `assignment`: exact assignment (earth mover's) distance between uniform point sets.
"""

from jaxpapers.evals.images import FrechetPCA, frechet_distance, psnr

# isort: split
# Exact assignment (EMD) distance: TactAlign (arXiv 2602.13579); reused for unit-set distances.
from jaxpapers.evals.assignment import assignment_distance, optimal_assignment

# isort: split
# Evaluation harnesses: NESSiE (arXiv 2602.16756), web-agent intervention metrics with the
# provisional Perfect Timing Score (arXiv 2602.17588), pass@k and the Red-vs-Blue game (Frontier
# AI Risk Management Framework v1.5, arXiv 2602.14457).
from jaxpapers.evals.intervention import f1_per_class, macro_f1, perfect_timing_score, step_accuracy
from jaxpapers.evals.nessie import keyword_pass, load_cases, nessie_scores, pair_cases, with_distraction
from jaxpapers.evals.passk import pass_at_k, weighted_pass_at_k
from jaxpapers.evals.red_blue import belief_update

# isort: split
# StarWM (arXiv 2602.14857): SMAPE, supply-block rate, unit-set W1 (not AWD: its definition is unconfirmed).
from jaxpapers.evals.rts_metrics import smape, supply_block_rate, unit_set_wasserstein

# isort: split
# Computer-Using World Model (arXiv 2602.17365): coverage-conditioned accuracy beside raw accuracy.
from jaxpapers.evals.coverage import coverage_accuracy, gap_recovered
