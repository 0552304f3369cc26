"""Coverage-conditioned action accuracy beside raw accuracy (offline single-step matching).

Computer-Using World Model (CUWM, arXiv 2602.17365, test-time action search): the chosen action
counts only when it equals the logged one, and no selection among k candidates can be right
when the logged action is not among them (in about 35% of the paper's samples none of the 5
candidates is; agents_and_evals spec, sec. 4). So raw accuracy is always reported beside the
coverage and the accuracy on the covered samples, and a selector's gain is measured as the share
of the top-1 -> coverage gap it recovers.
"""

from __future__ import annotations

import numpy as np


def coverage_accuracy(chosen, logged, candidates) -> dict[str, float]:
  """Raw and coverage-conditioned accuracy of chosen actions.

  Args:
    chosen: `[N]` the chosen actions.
    logged: `[N]` the logged (expert) actions.
    candidates: `[N, k]` the proposed candidates of each sample.

  Returns:
    {"accuracy": share of samples with chosen == logged, "coverage": share whose candidates hold
    the logged action, "covered_accuracy": accuracy on the covered samples (nan when none is),
    "samples": N}.
  """
  chosen, logged, candidates = np.asarray(chosen), np.asarray(logged), np.asarray(candidates)
  if chosen.shape != logged.shape or candidates.shape[:-1] != chosen.shape:
    raise ValueError(f"coverage_accuracy: chosen {chosen.shape}, logged {logged.shape} and "
                     f"candidates {candidates.shape} must be [N], [N] and [N, k]")
  hit = chosen == logged
  covered = np.any(candidates == logged[..., None], axis=-1)
  n_cov = int(covered.sum())
  return {"accuracy": float(hit.mean()) if hit.size else float("nan"),
          "coverage": float(covered.mean()) if hit.size else float("nan"),
          "covered_accuracy": float(hit[covered].mean()) if n_cov else float("nan"),
          "samples": int(hit.size)}


def gap_recovered(top1: float, search: float, coverage: float) -> float:
  """`(search - top1) / (coverage - top1)`: the share of the top-1 -> coverage gap a search
  recovers (1: it always picks the logged action when it can; nan when there is no gap)."""
  gap = coverage - top1
  return float((search - top1) / gap) if gap > 0 else float("nan")
