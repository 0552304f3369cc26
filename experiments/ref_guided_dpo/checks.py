"""The CI checks of the reference-guided DPO smoke preset, as claims (the spec's CI list).

`dpo_loss` against log 2, its gradient's direction, an independent NumPy formula and the
reference-free variant; `aggregate_pairwise` on a hand-made 3-candidate case, under a swap of
every comparison's slots, on an all-tie prompt and with the option-token fallbacks.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxpapers import rl
from jaxpapers.core import report


def numpy_dpo(pc, pr, rc, rr, beta):
  """-log sigmoid(beta ((pc - rc) - (pr - rr))), written with log1p (float64)."""
  z = beta * ((np.float64(pc) - rc) - (np.float64(pr) - rr))
  return np.log1p(np.exp(-z))


def dpo_claims() -> list[report.Claim]:
  rng = np.random.default_rng(0)
  pc, pr, rc, rr = (rng.normal(-8, 3, 32).astype(np.float32) for _ in range(4))
  loss, rw, rl_ = rl.dpo_loss(pc, pr, rc, rr, 0.5)
  formula = float(np.max(np.abs(np.asarray(loss) - numpy_dpo(pc, pr, rc, rr, 0.5))))
  equal = float(np.max(np.abs(np.asarray(rl.dpo_loss(pc, pr, pc, pr, 0.5)[0]) - np.log(2))))
  g = jax.grad(lambda a, b: rl.dpo_loss(a, b, rc, rr, 0.5)[0].sum(), argnums=(0, 1))(pc, pr)
  wrong_sign = int(np.sum(np.asarray(g[0]) >= 0) + np.sum(np.asarray(g[1]) <= 0))
  free_a = rl.dpo_loss(pc, pr, rc, rr, 0.5, reference_free=True)[0]
  free_b = rl.dpo_loss(pc, pr, rc + 5.0, rr - 3.0, 0.5, reference_free=True)[0]
  free = float(np.max(np.abs(np.asarray(free_a) - numpy_dpo(pc, pr, 0.0, 0.0, 0.5)))
               + np.max(np.abs(np.asarray(free_a - free_b))))
  reward = float(np.max(np.abs(np.asarray(rw) - 0.5 * (pc - rc))) + np.max(np.abs(np.asarray(rl_) - 0.5 * (pr - rr))))
  return [
      report.at_most("dpo_matches_numpy", "max |dpo_loss - NumPy -log sigmoid(beta margin)| over 32 "
                     "random examples (float32 vs float64)", formula, 1e-6),
      report.at_most("dpo_log2_at_reference", "max |dpo_loss - log 2| when policy = reference", equal, 1e-6),
      report.at_most("dpo_gradient_direction", "examples whose gradient does not raise log pi(y_w) "
                     "and lower log pi(y_l)", wrong_sign, 0),
      report.at_most("dpo_reference_free", "reference-free loss vs NumPy without pi_ref, plus its "
                     "change when the ref_* arguments change", free, 1e-6),
      report.at_most("dpo_implicit_rewards", "max |reward - beta (log pi - log pi_ref)|", reward, 1e-6),
  ]


def pairwise_claims() -> list[report.Claim]:
  pairs = rl.ordered_pairs(3)  # (0,1) (0,2) (1,0) (1,2) (2,0) (2,1)
  # candidate 2 beats everyone, candidate 1 loses to everyone, in both slot orders
  probs = np.array([[0.7, 0.2, 0.3, 0.1, 0.9, 0.8]], np.float32)
  lab = rl.aggregate_pairwise(probs, pairs, 3)
  expect = np.array([(0.7 + 0.2 + 0.7 + 0.1) / 4, (0.3 + 0.1 + 0.3 + 0.2) / 4, (0.8 + 0.9 + 0.9 + 0.8) / 4])
  hand = float(np.max(np.abs(np.asarray(lab.scores[0]) - expect))) + abs(int(lab.chosen[0]) - 2) + abs(int(lab.rejected[0]) - 1)
  hand += 0.0 if bool(lab.valid[0]) else 1.0
  swapped = rl.aggregate_pairwise(1.0 - probs, pairs[:, ::-1], 3)
  swap = float(np.max(np.abs(np.asarray(swapped.scores) - np.asarray(lab.scores))))
  tie = rl.aggregate_pairwise(np.full((1, 6), 0.5, np.float32), pairs, 3)
  inf = -np.inf
  fb = np.asarray(rl.slot_probability(np.array([-0.1, -0.3, inf, inf]), np.array([-2.0, inf, -0.2, inf])))
  fallback = float(np.abs(fb[0] - 1 / (1 + np.exp(-1.9))) + np.abs(fb[1] - 1) + np.abs(fb[2]) + np.abs(fb[3] - 0.5))
  return [
      report.at_most("pairwise_hand_made", "hand-made 3-candidate case: score error + wrong argmax/argmin "
                     "+ invalid flag", hand, 1e-6),
      report.at_most("pairwise_swap_symmetric", "max score change when every comparison's slots are "
                     "swapped (pairs (j, i), probs 1 - p)", swap, 1e-6),
      report.at_most("pairwise_all_tie_invalid", "an all-tie prompt is marked valid (1) or invalid (0)",
                     int(bool(tie.valid[0])), 0),
      report.at_most("pairwise_fallbacks", "slot probability errors: both tokens (softmax), only A (1), "
                     "only B (0), neither (0.5)", fallback, 1e-6),
  ]


def pipeline_claims(history: list[dict]) -> list[report.Claim]:
  """The one-round mini pipeline: the DPO loss falls and the implicit-reward margin rises."""
  train = [r for r in history if r.get("kind") == "train"]
  first, last = train[0], train[-1]
  return [
      report.less_than("pipeline_loss_decreases", f"DPO loss at the last / first of {len(train)} "
                       f"logged steps ({first['loss']:.4f} -> {last['loss']:.4f})",
                       last["loss"] / first["loss"], 1.0),
      report.greater_than("pipeline_margin_increases", f"mean implicit-reward margin r_w - r_l, last "
                          f"minus first logged step ({first['margin']:.4f} -> {last['margin']:.4f})",
                          last["margin"] - first["margin"], 0.0),
  ]


def all_claims() -> list[report.Claim]:
  return dpo_claims() + pairwise_claims()
