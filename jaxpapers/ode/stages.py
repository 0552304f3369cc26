"""The three stages of grokking from a run's curves (He et al., arXiv 2602.16849).

The paper characterizes grokking as three stages driven by loss minimization and weight decay.

Stage I, memorization: the loss gradient dominates; train accuracy reaches 1 while test
accuracy sits on a plateau. Stage II, fast generalization: weight decay prunes non-feature
frequencies and test accuracy climbs steeply. Stage III, slow cleanup: weight decay dominates,
the norm shrinks and test accuracy creeps to its final value. Boundaries as the authors' stage
detector computes them: stage II begins at the first step with train accuracy >= 0.95, stage III
at the first step with test accuracy >= 0.95 (fallback: both losses below 0.1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Stages(NamedTuple):
  """First step of each stage (None: the run never reached it)."""

  memorization: int
  fast_generalization: int | None
  slow_cleanup: int | None


def first_step(steps, values, threshold: float, below: bool = False) -> int | None:
  """First step whose value is >= threshold (or < threshold with `below`), or None."""
  values = np.asarray(values)
  hits = np.nonzero(values < threshold if below else values >= threshold)[0]
  return int(np.asarray(steps)[hits[0]]) if hits.size else None


def detect_stages(steps, train_accuracy, test_accuracy, train_loss=None, test_loss=None,
                  threshold: float = 0.95) -> Stages:
  """The step at which each grokking stage begins, from evaluation curves on the same steps."""
  steps = np.asarray(steps)
  stage_two = first_step(steps, train_accuracy, threshold)
  stage_three = first_step(steps, test_accuracy, threshold)
  if stage_three is None and train_loss is not None and test_loss is not None:
    stage_three = first_step(steps, np.maximum(train_loss, test_loss), 0.1, below=True)
  if stage_two is not None and stage_three is not None and stage_three < stage_two:
    stage_three = stage_two  # generalization cannot finish before memorization does
  return Stages(int(steps[0]) if steps.size else 0, stage_two, stage_three)
