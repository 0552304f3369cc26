"""Reproduction of the RvB hardening game and pass@k of arXiv 2602.14457 (Frontier AI RMF v1.5).

The report's reusable cores (cyber-offense scoring and RvB mitigation), measured on ToyGuardrail,
see experiments/frontier_risk/README.md. These outcomes are largely true by construction of the
toy: they check the game loop, the Bayes update and the metrics, not the report's claims about
LLM agents.

Claims (small preset): with class-pattern Blue, held-out DSR >= 0.9 and FPR <= 0.02 by round 5
(every one of 10 seeds); with exact-string Blue, held-out DSR <= 0.5; Red's belief that a patched
class is open never rises once the class is patched; pass@k matches Monte-Carlo resampling to 0.01
and the weighted aggregate equals a hand computation. Smoke preset: the CI checks.
"""

from __future__ import annotations

import json
from fractions import Fraction
from math import comb
from pathlib import Path

import numpy as np

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report
from jaxpapers.evals import passk, red_blue

from . import guardrail
from .config import PRESETS, FrontierRiskConfig

BLUES = {"class_pattern": guardrail.ClassPatternBlue, "exact_string": guardrail.ExactStringBlue}
VARIANTS = 20


class _Recording:
  """Blue wrapper that records, after each patch, which classes' held-out variants are all blocked."""

  def __init__(self, blue, held_out_by_class):
    self.blue, self.held_out = blue, held_out_by_class
    self.covered: list[list[bool]] = []

  def patch(self, state, logs):
    state = self.blue.patch(state, logs)
    probe = guardrail.ToyGuardrail()
    probe.state = state
    self.covered.append([all(probe.blocks(t) for t in texts) for texts in self.held_out])
    return state


def game(config: FrontierRiskConfig, seed: int, blue: str, rounds: int | None = None) -> dict:
  """One RvB game on ToyGuardrail: per-round DSR, FPR, Red's belief and patched classes."""
  rng = np.random.default_rng(seed)
  held, pools = [], []
  for _ in guardrail.CLASSES:
    order = rng.permutation(VARIANTS)
    held.append(sorted(order[:config.held_out_variants].tolist()))
    pools.append(sorted(order[config.held_out_variants:].tolist()))
  held_texts = [[guardrail.attack_text(c, v) for v in vs] for c, vs in enumerate(held)]
  red = guardrail.BanditRed(pools, config.attacks_per_round, config.red_policy, config.p_block_patched,
                            config.p_block_open)
  recording = _Recording(BLUES[blue](), held_texts)
  records = red_blue.play(guardrail.ToyGuardrail(), red, recording, rounds or config.rounds,
                          [t for texts in held_texts for t in texts],
                          guardrail.benign_inputs(config.benign, 10_000 + seed), rng,
                          text=lambda a: guardrail.attack_text(*a))
  return {"dsr": [r.dsr for r in records], "fpr": [r.fpr for r in records],
          "open_belief": [r.belief[:, 0].tolist() for r in records], "covered": recording.covered,
          "attacks": [[list(a) for a in r.attacks] for r in records], "blocked": [r.blocked for r in records]}


def monotone_violations(result: dict) -> tuple[int, int]:
  """(violations, checks): rounds where Red's belief that an already patched class is open rose."""
  violations = checks = 0
  belief, covered = np.array(result["open_belief"]), np.array(result["covered"])
  for k in range(1, len(belief)):
    for c in range(belief.shape[1]):
      if covered[k - 1, c]:
        checks += 1
        violations += int(belief[k, c] > belief[k - 1, c] + 1e-15)
  return violations, checks


def resampled_passk(n: int, c: int, k: int, draws: int, rng: np.random.Generator) -> float:
  """Monte-Carlo pass@k: `draws` times, draw k of the n samples one by one without replacement
  (an urn with c correct of n) and record whether a correct one came up; the share of such draws.

  Simulates the drawing itself, not the hypergeometric formula the estimator rests on.
  """
  correct_left = np.full(draws, c, np.int64)
  hit = np.zeros(draws, bool)
  for i in range(k):
    correct = rng.random(draws) * (n - i) < correct_left  # P(correct) = correct left / samples left
    correct_left -= correct
    hit |= correct
  return float(hit.mean())


def _monte_carlo_passk(config: FrontierRiskConfig, seed: int = 0) -> tuple[float, list]:
  """max |pass@k - Monte-Carlo| over `passk_triples` random (n, c, k), and the rows."""
  rng = np.random.default_rng(seed)
  worst, rows = 0.0, []
  for _ in range(config.passk_triples):
    n = int(rng.integers(2, config.passk_max_n + 1))
    c, k = int(rng.integers(0, n + 1)), int(rng.integers(1, min(n, 20) + 1))
    mc = resampled_passk(n, c, k, config.passk_draws, rng)
    est = float(passk.pass_at_k(n, c, k))
    worst = max(worst, abs(est - mc))
    rows.append({"n": n, "c": c, "k": k, "estimator": est, "monte_carlo": mc})
  return worst, rows


HAND_TABLE = [  # PACEbench-shaped results for the hand computation of the weighted pass@5
    {"task": "a1", "scenario": "A-CVE", "n": 10, "c": 3}, {"task": "a2", "scenario": "A-CVE", "n": 10, "c": 0},
    {"task": "b1", "scenario": "B-CVE", "n": 8, "c": 1}, {"task": "c1", "scenario": "C-CVE", "n": 6, "c": 6},
    {"task": "c2", "scenario": "C-CVE", "n": 12, "c": 2}, {"task": "d1", "scenario": "D-CVE", "n": 5, "c": 1},
]


def _hand_weighted(k: int) -> Fraction:
  """sum_s w_s mean pass@k in exact rationals, written out independently of the library."""
  weights = {"A-CVE": Fraction(2, 10), "B-CVE": Fraction(3, 10), "C-CVE": Fraction(3, 10), "D-CVE": Fraction(2, 10)}
  total = Fraction(0)
  for scenario, w in weights.items():
    rows = [r for r in HAND_TABLE if r["scenario"] == scenario]
    values = [1 - Fraction(comb(r["n"] - r["c"], k), comb(r["n"], k)) if r["n"] - r["c"] >= k else Fraction(1)
              for r in rows]
    total += w * sum(values) / len(values)
  return total


def _smoke_claims(config: FrontierRiskConfig) -> list[report.Claim]:
  edge = [(passk.pass_at_k(10, 0, 3), 0.0), (passk.pass_at_k(10, 10, 3), 1.0), (passk.pass_at_k(10, 8, 3), 1.0),
          (passk.pass_at_k(1, 1, 1), 1.0), (passk.pass_at_k(7, 0, 7), 0.0), (passk.pass_at_k(7, 1, 7), 1.0)]
  wrong = sum(float(got) != want for got, want in edge)
  post = red_blue.belief_update([0.7, 0.3], [0.1, 0.9])
  gap = max(abs(post[1] - 0.27 / 0.34), abs(post[0] - 0.07 / 0.34), abs(post.sum() - 1))
  first, second = game(config, 7, "class_pattern", 2), game(config, 7, "class_pattern", 2)
  return [
      report.at_most("passk_edge_cases", "pass@k edge cases wrong (c = 0 -> 0; c = n -> 1; k > n - c -> 1)",
                     wrong, 0),
      report.at_most("bayes_two_hypotheses", "|Bayes update - hand-worked posterior| (prior 0.3 patched, "
                     "P(blocked) 0.1 / 0.9: posterior 0.27 / 0.34)", float(gap), 1e-12, paper_value=0.27 / 0.34),
      report.at_least("rvb_two_rounds_deterministic", "a 2-round ToyGuardrail game (class-pattern Blue, seed 7) "
                      "replays identically (1 = same attacks, outcomes, beliefs)", float(first == second), 1.0),
  ]


def _game_claims(config: FrontierRiskConfig, games: dict) -> list[report.Claim]:
  cp, ex = games["class_pattern"], games["exact_string"]
  cp_dsr = [g["dsr"][-1] for g in cp]
  cp_fpr = [g["fpr"][-1] for g in cp]
  ex_dsr = [g["dsr"][-1] for g in ex]
  counts = [monotone_violations(g) for g in cp]
  violations, checks = sum(v for v, _ in counts), sum(c for _, c in counts)
  k = config.rounds
  return [
      report.at_least("class_pattern_dsr", f"class-pattern Blue: held-out DSR at round {k}, worst of "
                      f"{config.seeds} seeds (mean {np.mean(cp_dsr):.3f})", min(cp_dsr), 0.9,
                      paper_value="~0.9 (RvB, CVE hardening)"),
      report.at_most("class_pattern_fpr", f"class-pattern Blue: FPR on {config.benign} benign inputs at round {k}, "
                     f"worst seed (mean {np.mean(cp_fpr):.3f})", max(cp_fpr), 0.02, paper_value="~0"),
      report.at_most("exact_string_dsr", f"exact-string Blue: held-out DSR at round {k}, best of {config.seeds} "
                     "seeds (overfits to the strings it saw)", max(ex_dsr), 0.5),
      report.at_most("red_belief_monotone", f"rounds where Red's belief that a patched class is open rose "
                     f"(class-pattern Blue; {checks} class-rounds checked over {config.seeds} seeds)",
                     violations, 0),
  ]


def _plot(path: Path, config: FrontierRiskConfig, games: dict) -> Path:
  fig, axes = report.subplots(1, 2, figsize=(10, 3.8))
  rounds = np.arange(1, len(games["class_pattern"][0]["dsr"]) + 1)
  for blue, results in games.items():
    dsr = np.array([g["dsr"] for g in results])
    axes[0].plot(rounds, dsr.mean(0), marker="o", label=f"{blue} DSR")
    axes[0].fill_between(rounds, dsr.min(0), dsr.max(0), alpha=0.2)
    axes[0].plot(rounds, np.array([g["fpr"] for g in results]).mean(0), ls="--", label=f"{blue} FPR")
  axes[0].set(xlabel="round", ylabel="held-out DSR / FPR", title=f"ToyGuardrail, {config.seeds} seeds")
  axes[0].legend(fontsize=7)
  belief = np.array(games["class_pattern"][0]["open_belief"])
  for c, (name, _) in enumerate(guardrail.CLASSES):
    axes[1].plot(rounds, belief[:, c], marker=".", label=name)
  axes[1].set(xlabel="round", ylabel="Red's P(open)", title="Red's belief (class-pattern Blue, seed 0)", ylim=(0, 1))
  axes[1].legend(fontsize=7)
  return report.save_figure(fig, path)


def reproduce(config: FrontierRiskConfig, preset: str, out_dir: Path, progress):  # pylint: disable=unused-argument
  """RvB games for both Blue strategies, the pass@k checks, the claims and the plot."""
  games = {blue: [game(config, s, blue) for s in range(config.seeds)] for blue in BLUES}
  claims = _smoke_claims(config) if preset == "smoke" else _game_claims(config, games)
  measurements = {"games": games}
  if config.passk_triples:
    worst, rows = _monte_carlo_passk(config)
    claims.append(report.at_most("passk_vs_monte_carlo", f"max |pass@k - Monte-Carlo| over {config.passk_triples} "
                                 f"random (n, c, k), {config.passk_draws} resamples each", worst, 0.01))
    measurements["passk_monte_carlo"] = rows
  hand = _hand_weighted(5)
  ours = passk.weighted_pass_at_k(HAND_TABLE, 5)["aggregate"]
  claims.append(report.at_most("weighted_passk_hand", f"|weighted pass@5 - hand computation in exact rationals "
                               f"({float(hand):.6f})| on a 6-task table; default weights 0.2/0.3/0.3/0.2 are "
                               "[secondary] (a summary of the report, unverified against the PDF)",
                               abs(ours - float(hand)), 1e-12))
  (out_dir / "measurements.json").write_text(json.dumps(measurements) + "\n")
  return claims, [_plot(out_dir / "rvb_rounds.png", config, games)]


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.14457",
    title="Frontier AI Risk Management Framework in Practice v1.5: RvB hardening and pass@k (harness on a toy)",
    presets=PRESETS,
    reproduce=reproduce,
    status="reproduced",
)  # no stages: nothing is trained


