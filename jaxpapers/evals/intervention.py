"""Intervention-prediction metrics for web agents (arXiv 2602.17588, "Evaluation metrics").

The task (Modeling Distinct Human Interaction in Web Agents, arXiv 2602.17588) is step-wise
binary classification: at every agent step, predict whether the human intervenes (1) or lets
the agent continue (0). The paper reports step accuracy, F1 of both classes and its Perfect
Timing Score (PTS).

`perfect_timing_score` is PROVISIONAL: the exact formula was not transcribed from the PDF (its
"Evaluation metrics" section). What is known from a full-text review: PTS credits an exact hit on
a ground-truth intervention event and penalises earlier false positives by the square of their
distance to the event, weighted by alpha. Our reconstruction (to be replaced once the paper's
formula is checked), with 0-based steps t and events t_1 < t_2 < ... of a trajectory, t_0 = -1:

  PTS_e = max(0, hit_e - alpha * sum_{t in FP_e} ((t_e - t) / (t_e - t_{e-1}))^2),
  hit_e = p_{t_e},  FP_e = {t : t_{e-1} < t < t_e, p_t = 1},

and PTS is the mean of PTS_e over every event of the test set (the distance normalised by the
window length is our choice). Any faithful PTS satisfies the invariants our tests check: 0 for
all-zero predictions, 1 for a perfect predictor, an added early false positive never raises it,
a farther false positive costs at least as much as a nearer one, and alpha = 0 gives the
event-level exact-hit recall.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PTS_PROVISIONAL = True  # the formula above is our reconstruction, not the paper's transcription


def _flat(name: str, x) -> np.ndarray:
  if isinstance(x, (list, tuple)) and x and np.ndim(x[0]) >= 1:
    x = np.concatenate([np.asarray(t).reshape(-1) for t in x])
  x = np.asarray(x).reshape(-1)
  if x.size and not np.isin(x, (0, 1)).all():
    raise ValueError(f"{name} must be 0/1 labels")
  return x.astype(np.int64)


def step_accuracy(labels, preds) -> float:
  """Share of steps where the prediction equals the label (arrays, or lists of trajectories)."""
  y, p = _flat("labels", labels), _flat("preds", preds)
  if y.shape != p.shape:
    raise ValueError(f"labels ({y.size} steps) and preds ({p.size} steps) differ in length")
  return float(np.mean(y == p)) if y.size else float("nan")


def f1_per_class(labels, preds) -> dict[int, float]:
  """F1 of class 0 (continue) and class 1 (intervene); 0 where a class is never predicted nor true."""
  y, p = _flat("labels", labels), _flat("preds", preds)
  if y.shape != p.shape:
    raise ValueError(f"labels ({y.size} steps) and preds ({p.size} steps) differ in length")
  out = {}
  for cls in (0, 1):
    tp = np.sum((p == cls) & (y == cls))
    fp = np.sum((p == cls) & (y != cls))
    fn = np.sum((p != cls) & (y == cls))
    denom = 2 * tp + fp + fn
    out[cls] = float(2 * tp / denom) if denom else 0.0
  return out


def macro_f1(labels, preds) -> float:
  """Mean of the two per-class F1 scores."""
  f1 = f1_per_class(labels, preds)
  return 0.5 * (f1[0] + f1[1])


def perfect_timing_score(preds: Sequence, labels: Sequence, alpha: float = 1.0, *,
                         provisional: bool = True) -> float:
  """PROVISIONAL Perfect Timing Score (arXiv 2602.17588, "Evaluation metrics"; module docstring).

  Args:
    preds: one 0/1 array of predictions per trajectory.
    labels: one 0/1 array of ground-truth interventions per trajectory (the events).
    alpha: weight of the squared-distance penalty of early false positives (>= 0).
    provisional: must be True: it marks that this is our reconstruction of the formula.

  Returns:
    The mean per-event score over every event of every trajectory (0.0 if there are no events).

  Raises:
    ValueError: `provisional=False` (the paper's formula is not transcribed), alpha < 0, or
      mismatched lengths.
  """
  if not provisional:
    raise ValueError("perfect_timing_score: only the provisional reconstruction exists (the paper's "
                     "formula is not transcribed); call it with provisional=True")
  if alpha < 0:
    raise ValueError(f"perfect_timing_score: alpha={alpha} must be >= 0")
  if len(preds) != len(labels):
    raise ValueError(f"{len(preds)} prediction trajectories for {len(labels)} label trajectories")
  scores = []
  for p, y in zip(preds, labels):
    p, y = _flat("preds", p), _flat("labels", y)
    if p.shape != y.shape:
      raise ValueError(f"a trajectory has {p.size} predictions for {y.size} steps")
    previous = -1
    for t_e in np.flatnonzero(y):
      window = np.arange(previous + 1, t_e)
      false_positives = window[p[window] == 1]
      penalty = np.sum(((t_e - false_positives) / (t_e - previous)) ** 2)
      scores.append(max(0.0, float(p[t_e]) - alpha * float(penalty)))
      previous = t_e
  return float(np.mean(scores)) if scores else 0.0


def intervention_scores(labels: Sequence, preds: Sequence, alphas: Sequence[float] = (0.1, 0.5, 1.0)
                        ) -> dict[str, float]:
  """Every metric of the paper's table for one predictor (arXiv 2602.17588, "Evaluation metrics").

  The harness a real evaluation calls with its model's per-step decisions: the same numbers for a
  fine-tuned LM's "intervene / continue" outputs as for a toy predictor's.

  Args:
    labels: one 0/1 array of ground-truth interventions per trajectory.
    preds: one 0/1 array of predictions per trajectory (same lengths).
    alphas: PTS penalty weights.

  Returns:
    {"accuracy", "f1_continue", "f1_intervene", "macro_f1", "pts@ALPHA" for each alpha (`f"pts@{a:g}"`)};
    the PTS entries are the PROVISIONAL reconstruction (`perfect_timing_score`).
  """
  f1 = f1_per_class(labels, preds)
  out = {"accuracy": step_accuracy(labels, preds), "f1_continue": f1[0], "f1_intervene": f1[1],
         "macro_f1": 0.5 * (f1[0] + f1[1])}
  for a in alphas:
    out[f"pts@{a:g}"] = perfect_timing_score(preds, labels, a)
  return out
