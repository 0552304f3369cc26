"""The CI checks of the web-agent smoke preset, as claims (the spec's CI list, arXiv 2602.17588).

Invariants that must hold under ANY faithful Perfect Timing Score, checked on our provisional
reconstruction (`jaxpapers.evals.intervention.perfect_timing_score`): 0 for all-zero predictions,
1 for a perfect predictor, an added false positive never raises it, a farther false positive
costs at least as much as a nearer one, alpha = 0 gives event-level exact-hit recall. Besides:
one PTS value computed by hand from the reconstruction, F1 and accuracy against hand-computed
values and scikit-learn, and k-means recovering four separated Gaussian blobs (ARI = 1).
"""

from __future__ import annotations

import numpy as np
import sklearn.metrics

from jaxpapers.core import report
from jaxpapers.evals import intervention as iv
from jaxpapers.evals import web_users

ALPHAS = (0.0, 0.1, 0.5, 1.0, 4.0)


def random_trajectories(rng: np.random.Generator, n: int = 60, p_label: float = 0.2,
                        p_pred: float = 0.2) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """`n` random (labels, preds) trajectories of 3-15 steps."""
  lengths = rng.integers(3, 16, n)
  labels = [(rng.random(t) < p_label).astype(np.int64) for t in lengths]
  preds = [(rng.random(t) < p_pred).astype(np.int64) for t in lengths]
  return labels, preds


def _added_fp_violations(rng: np.random.Generator) -> tuple[int, int]:
  """(cases where setting one more non-event step to 1 raised PTS, cases tried)."""
  labels, preds = random_trajectories(rng)
  bad = tried = 0
  for y, p in zip(labels, preds):
    for t in np.flatnonzero((y == 0) & (p == 0)):
      more = p.copy()
      more[t] = 1  # the corpus mean changes only through this trajectory's events
      for a in ALPHAS:
        tried += 1
        bad += iv.perfect_timing_score([more], [y], a) > iv.perfect_timing_score([p], [y], a) + 1e-12
  return bad, tried


def _farther_fp_violations(rng: np.random.Generator) -> tuple[int, int]:
  """(cases where a farther lone false positive scored above a nearer one, cases tried)."""
  bad = tried = 0
  for _ in range(40):
    length = int(rng.integers(4, 16))
    event = int(rng.integers(2, length))
    y = np.zeros(length, np.int64)
    y[event] = 1
    far, near = sorted(rng.choice(event, 2, replace=False))
    hit = int(rng.integers(0, 2))
    scores = []
    for fp in (far, near):
      p = np.zeros(length, np.int64)
      p[event], p[fp] = hit, 1
      scores.append([iv.perfect_timing_score([p], [y], a) for a in ALPHAS])
    tried += len(ALPHAS)
    bad += int(np.sum(np.asarray(scores[0]) > np.asarray(scores[1]) + 1e-12))
  return bad, tried


def pts_claims() -> list[report.Claim]:
  rng = np.random.default_rng(0)
  labels, preds = random_trajectories(rng)
  zeros = [np.zeros_like(y) for y in labels]
  zero = max(abs(iv.perfect_timing_score(zeros, labels, a)) for a in ALPHAS)
  perfect = max(abs(iv.perfect_timing_score(labels, labels, a) - 1.0) for a in ALPHAS)
  added, n_added = _added_fp_violations(rng)
  farther, n_farther = _farther_fp_violations(rng)
  hits = sum(int(np.sum(p[y == 1])) for y, p in zip(labels, preds))
  events = sum(int(np.sum(y)) for y in labels)
  recall = abs(iv.perfect_timing_score(preds, labels, 0.0) - hits / events)
  # by hand: events at steps 2 and 4; a false positive at step 0 (distance 2 over a window of 3,
  # t_0 = -1) and a hit on the first event: (1 - 0.5 (2/3)^2 + 0) / 2 = 7/18
  hand = abs(iv.perfect_timing_score([np.array([1, 0, 1, 0, 0])], [np.array([0, 0, 1, 0, 1])], 0.5) - 7 / 18)
  return [
      report.at_most("pts_zero_for_no_intervention", f"max |PTS| of all-zero predictions over alpha in "
                     f"{ALPHAS} ({events} events in {len(labels)} random trajectories)", zero, 0.0),
      report.at_most("pts_one_for_perfect", "max |PTS - 1| of the perfect predictor over the same alphas",
                     perfect, 0.0),
      report.at_most("pts_added_fp_never_raises", f"cases (of {n_added}) where one more false positive "
                     "raised PTS", added, 0),
      report.at_most("pts_farther_fp_costs_more", f"cases (of {n_farther}) where a farther lone false "
                     "positive before an event scored above a nearer one", farther, 0),
      report.at_most("pts_alpha0_is_hit_recall", f"|PTS(alpha=0) - event exact-hit recall {hits}/{events}|",
                     recall, 1e-12),
      report.at_most("pts_hand_computed", "|PTS - 7/18| on labels 00101, preds 10100, alpha 0.5 "
                     "(provisional reconstruction)", hand, 1e-12),
  ]


def metric_claims() -> list[report.Claim]:
  y = np.array([1, 0, 1, 1, 0, 0, 0, 0])
  p = np.array([1, 1, 0, 1, 0, 0, 0, 0])
  # intervene: tp 2, fp 1, fn 1 -> 4/6; continue: tp 4, fp 1, fn 1 -> 8/10; accuracy 6/8
  f1 = iv.f1_per_class(y, p)
  hand = (abs(f1[1] - 2 / 3) + abs(f1[0] - 0.8) + abs(iv.step_accuracy(y, p) - 0.75)
          + abs(iv.macro_f1(y, p) - (2 / 3 + 0.8) / 2))
  rng = np.random.default_rng(1)
  labels, preds = random_trajectories(rng, p_label=0.15, p_pred=0.3)
  yy, pp = np.concatenate(labels), np.concatenate(preds)
  sk = sklearn.metrics.f1_score(yy, pp, average=None, labels=[0, 1])
  versus = (abs(iv.f1_per_class(labels, preds)[1] - sk[1]) + abs(iv.f1_per_class(labels, preds)[0] - sk[0])
            + abs(iv.macro_f1(labels, preds) - sklearn.metrics.f1_score(yy, pp, average="macro"))
            + abs(iv.step_accuracy(labels, preds) - sklearn.metrics.accuracy_score(yy, pp)))
  centers = np.array([[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0], [0, 0, 10, 10]], float)
  truth = np.repeat(np.arange(4), 10)
  blobs = centers[truth] + rng.normal(scale=0.5, size=(40, 4))
  ari = web_users.adjusted_rand_index(truth, web_users.discover_styles(blobs, 4, seed=0))
  return [
      report.at_most("f1_accuracy_hand_computed", "|error| of intervene F1 2/3, continue F1 0.8, "
                     "accuracy 0.75 and macro F1 on an 8-step hand case", hand, 1e-12),
      report.at_most("f1_accuracy_match_sklearn", f"|error| against scikit-learn's f1_score and "
                     f"accuracy_score on {yy.size} random steps", versus, 1e-12),
      report.at_least("kmeans_separated_blobs", "ARI of k-means (k 4) on four separated Gaussian blobs "
                      "(40 points, 4 features)", ari, 1.0),
  ]


def all_claims() -> list[report.Claim]:
  return pts_claims() + metric_claims()
