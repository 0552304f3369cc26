"""The three stages of grokking from a run's curves (He et al., arXiv 2602.16849).

The paper characterizes grokking as three stages driven by loss minimization and weight decay
(its grokking section, the three-stage analysis of the ReLU run with weight decay; the paper's
text was not reachable here, so the section is named by its content and not by number).

Stage I, memorization: the loss gradient dominates; train accuracy reaches 1 while test
accuracy sits on a plateau. Stage II, fast generalization: weight decay prunes non-feature
frequencies and test accuracy climbs steeply. Stage III, slow cleanup: weight decay dominates,
the norm shrinks and test accuracy creeps to its final value.

The boundaries follow the authors' detector, `detect_grokking_stages` in
`precompute/grokking_stage_detector.py` of github.com/Y-Agent/modular-addition-feature-learning
(commit c6509f7c), in every case. Their `stage1_end` is our `fast_generalization` and their
`stage2_end` our `slow_cleanup`; they return positions in the curves, we return
`steps[position]`. Their rule:

- Accuracy curves given (both of them): stage II begins at the first position with train
  accuracy >= 0.95, stage III at the first position with test accuracy >= 0.95; a curve that
  never gets there gives None. Losses are then ignored, even when test accuracy never reaches
  0.95 (no loss fallback for a run that did not generalize).
- When both exist and stage II would not come strictly before stage III (train and test cross
  at the same position, or test crosses first), stage II is moved to a third of the way to
  stage III: position `i3 // 3`, where `i3` is stage III's position. This is a third in
  positions, not in steps: with evaluations every d steps from step 0 it is step
  `d * (i3 // 3)`; with uneven spacing it is the evaluated step at that position. When
  `i3 < 3` it is the first position, so stage I has no length. Stage III never moves.
- Either accuracy curve missing: stage II begins at the first position with train loss < 0.1,
  stage III at the first with test loss < 0.1 (None when that loss curve is missing or never
  gets there). No ordering correction is made in this branch, as in the authors' code, so stage
  III can come before stage II here.
- Stage I starts at the first evaluated step (the authors' plots start at epoch 0). Empty
  curves give None for all three stages (the authors return (None, None)).

The thresholds (0.95 on accuracy, inclusive; 0.1 on loss, strict) are theirs and are our
defaults; NaN never crosses. Where the detector finds no boundary, the authors' plotting script
(`precompute/generate_plots.py`) draws one at a fifth (stage II) or three fifths (stage III) of
the curve; that placeholder is a plotting choice, not the detector's result, and we do not make
it: the detector returns None and our plot leaves that band out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class Stages(NamedTuple):
  """First step of each stage (None: the run never reached it, or the curves are empty)."""

  memorization: int | None
  fast_generalization: int | None
  slow_cleanup: int | None


def first_step(steps, values, threshold: float, below: bool = False) -> int | None:
  """First step whose value is >= threshold (or < threshold with `below`), or None."""
  values = np.asarray(values)
  hits = np.nonzero(values < threshold if below else values >= threshold)[0]
  return int(np.asarray(steps)[hits[0]]) if hits.size else None


def _first_position(values: np.ndarray | None, threshold: float, below: bool) -> int | None:
  """Position of the first value >= threshold (< threshold with `below`); None if none."""
  if values is None:
    return None
  hits = np.nonzero(values < threshold if below else values >= threshold)[0]
  return int(hits[0]) if hits.size else None


def _curve(name: str, values: ArrayLike | None, length: int) -> np.ndarray | None:
  """`values` as a 1-D float array of `length` entries (None stays None)."""
  if values is None:
    return None
  values = np.asarray(values, dtype=float)
  if values.shape != (length,):
    raise ValueError(f"{name} has shape {values.shape}; expected ({length},), one value per step")
  return values


def detect_stages(steps: ArrayLike, train_accuracy: ArrayLike | None = None,
                  test_accuracy: ArrayLike | None = None, train_loss: ArrayLike | None = None,
                  test_loss: ArrayLike | None = None, threshold: float = 0.95,
                  loss_threshold: float = 0.1) -> Stages:
  """The step at which each grokking stage begins, by the authors' rule (module docstring).

  Args:
    steps: the evaluated steps, increasing, one per curve entry.
    train_accuracy: train accuracy at each step, or None.
    test_accuracy: test accuracy at each step, or None.
    train_loss: train loss at each step; used only when an accuracy curve is missing.
    test_loss: test loss at each step; used only when an accuracy curve is missing.
    threshold: accuracy a curve must reach (inclusive); the authors' 0.95.
    loss_threshold: loss a curve must go below (strict); the authors' 0.1.

  Returns:
    The first step of stages I, II and III; None for a boundary the curves never reach.

  Raises:
    ValueError: a given curve is not 1-D with one value per step.
  """
  steps = np.asarray(steps)
  if steps.ndim != 1:
    raise ValueError(f"steps has shape {steps.shape}; expected a 1-D array")
  n = steps.shape[0]
  curves = {name: _curve(name, values, n) for name, values in (
      ("train_accuracy", train_accuracy), ("test_accuracy", test_accuracy),
      ("train_loss", train_loss), ("test_loss", test_loss))}
  if curves["train_accuracy"] is not None and curves["test_accuracy"] is not None:
    two = _first_position(curves["train_accuracy"], threshold, below=False)
    three = _first_position(curves["test_accuracy"], threshold, below=False)
    if two is not None and three is not None and two >= three:
      two = three // 3  # the authors' correction: stage II a third of the way to stage III
  else:
    two = _first_position(curves["train_loss"], loss_threshold, below=True)
    three = _first_position(curves["test_loss"], loss_threshold, below=True)

  def step(position: int | None) -> int | None:
    return None if position is None else int(steps[position])

  return Stages(step(0) if n else None, step(two), step(three))
