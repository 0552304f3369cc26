"""Grokking stage detector (He et al., arXiv 2602.16849) against the authors' rule.

The rule is that of `detect_grokking_stages` in precompute/grokking_stage_detector.py of
github.com/Y-Agent/modular-addition-feature-learning (see jaxpapers/ode/stages.py). Each case
is a hand-made curve whose crossings sit at known positions; `STEPS` is deliberately uneven so
that a position-based rule and a step-based one give different answers.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxpapers.ode.stages import Stages, detect_stages, first_step

STEPS = np.array([0, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240])
N = len(STEPS)


def crossing(position: int | None, low: float = 0.5, high: float = 1.0) -> np.ndarray:
  """An accuracy curve at `low` that reaches `high` at `position` (None: never)."""
  curve = np.full(N, low)
  if position is not None:
    curve[position:] = high
  return curve


def dropping(position: int | None, high: float = 2.0, low: float = 0.01) -> np.ndarray:
  """A loss curve at `high` that falls to `low` at `position` (None: never)."""
  curve = np.full(N, high)
  if position is not None:
    curve[position:] = low
  return curve


def test_ordinary_grokking_run():
  found = detect_stages(STEPS, crossing(2), crossing(8))
  assert found == Stages(0, 20, 1280)


@pytest.mark.parametrize("position", [3, 6, 8, 9, 11])
def test_same_position_crossing_moves_stage_two_to_a_third_of_the_positions(position):
  found = detect_stages(STEPS, crossing(position), crossing(position))
  assert found == Stages(0, int(STEPS[position // 3]), int(STEPS[position]))


def test_third_is_taken_in_positions_not_steps():
  found = detect_stages(STEPS, crossing(9), crossing(9))
  assert found.fast_generalization == 40  # STEPS[9 // 3]; 2560 // 3 = 853 would be step-based
  assert found.slow_cleanup == 2560


@pytest.mark.parametrize("train, test", [(9, 6), (11, 1), (4, 2), (10, 7)])
def test_test_before_train_moves_stage_two_and_keeps_stage_three(train, test):
  found = detect_stages(STEPS, crossing(train), crossing(test))
  assert found == Stages(0, int(STEPS[test // 3]), int(STEPS[test]))


@pytest.mark.parametrize("test", [0, 1, 2])
def test_early_test_crossing_leaves_stage_one_empty(test):
  found = detect_stages(STEPS, crossing(test), crossing(test))
  assert found == Stages(0, 0, int(STEPS[test]))


def test_test_never_reaching_threshold_gives_no_stage_three_and_ignores_losses():
  # Both losses are below 0.1 from position 5 on; the authors use losses only without accuracies.
  found = detect_stages(STEPS, crossing(2), crossing(None, high=0.94), dropping(5), dropping(5))
  assert found == Stages(0, 20, None)


def test_train_never_reaching_threshold_gives_no_stage_two_and_no_correction():
  found = detect_stages(STEPS, crossing(None, high=0.9), crossing(4))
  assert found == Stages(0, None, 80)


def test_neither_reaching_threshold():
  assert detect_stages(STEPS, crossing(None), crossing(None)) == Stages(0, None, None)


@pytest.mark.parametrize("curves", [
    dict(train_accuracy=[], test_accuracy=[]),
    dict(),
    dict(train_loss=[], test_loss=[]),
])
def test_empty_curves(curves):
  assert detect_stages([], **curves) == Stages(None, None, None)


def test_threshold_is_inclusive_for_accuracy():
  found = detect_stages(STEPS, crossing(3, high=0.95), crossing(7, high=0.95))
  assert found == Stages(0, 40, 640)
  found = detect_stages(STEPS, crossing(3, high=0.9499), crossing(7, high=0.95))
  assert found == Stages(0, None, 640)


def test_nan_never_crosses():
  train, test = crossing(2), crossing(6)
  train[:2] = np.nan
  test[:6] = np.nan
  assert detect_stages(STEPS, train, test) == Stages(0, 20, 320)


def test_first_evaluated_step_starts_stage_one():
  steps = STEPS + 100
  found = detect_stages(steps, crossing(2), crossing(8))
  assert found == Stages(100, 120, 1380)


# ------------------------------------------------- the loss branch: an accuracy curve is missing


def test_loss_fallback_without_accuracies():
  found = detect_stages(STEPS, train_loss=dropping(3), test_loss=dropping(7))
  assert found == Stages(0, 40, 640)


@pytest.mark.parametrize("missing", ["train_accuracy", "test_accuracy"])
def test_one_accuracy_missing_uses_the_losses(missing):
  curves = dict(train_accuracy=crossing(1), test_accuracy=crossing(2), train_loss=dropping(3),
                test_loss=dropping(7))
  curves[missing] = None
  assert detect_stages(STEPS, **curves) == Stages(0, 40, 640)


def test_loss_threshold_is_strict():
  found = detect_stages(STEPS, train_loss=dropping(3, low=0.1), test_loss=dropping(7, low=0.0999))
  assert found == Stages(0, None, 640)


def test_loss_branch_makes_no_ordering_correction():
  found = detect_stages(STEPS, train_loss=dropping(8), test_loss=dropping(4))
  assert found == Stages(0, 1280, 80)  # stage III before stage II, as the authors' code leaves it


def test_loss_branch_with_a_loss_missing():
  assert detect_stages(STEPS, train_loss=dropping(3)) == Stages(0, 40, None)
  assert detect_stages(STEPS) == Stages(0, None, None)


# ------------------------------------------------------------------------- inputs and helpers


def test_custom_thresholds():
  found = detect_stages(STEPS, crossing(2, high=0.8), crossing(5, high=0.8), threshold=0.8)
  assert found == Stages(0, 20, 160)
  found = detect_stages(STEPS, train_loss=dropping(2, low=0.4), test_loss=dropping(5, low=0.4),
                        loss_threshold=0.5)
  assert found == Stages(0, 20, 160)


def test_curve_of_the_wrong_length_is_refused():
  with pytest.raises(ValueError, match="test_accuracy"):
    detect_stages(STEPS, crossing(2), crossing(5)[:-1])
  with pytest.raises(ValueError, match="steps"):
    detect_stages(STEPS[None], crossing(2), crossing(5))


def test_returns_python_ints():
  found = detect_stages(STEPS, crossing(2), crossing(8))
  assert all(type(value) is int for value in found)  # pylint: disable=unidiomatic-typecheck


def test_first_step_unchanged():
  assert first_step(STEPS, crossing(4), 0.95) == 80
  assert first_step(STEPS, dropping(6), 0.1, below=True) == 320
  assert first_step(STEPS, crossing(None), 0.95) is None
