"""Config and presets of the frontier-risk experiment (arXiv 2602.14457: RvB hardening and pass@k).

The small and smoke presets are our CPU-scale protocol on ToyGuardrail, see
experiments/frontier_risk/README.md.

Presets:
  smoke: the CI checks: pass@k edge cases, the hand-worked 2-hypothesis Bayes update, and a
    2-round ToyGuardrail game that replays identically with a fixed seed.
  small: 5 RvB rounds on ToyGuardrail, 10 seeds, both Blue strategies; pass@k against
    Monte-Carlo resampling on 50 random (n, c, k); the weighted aggregate against a hand computation.
  paper: the same harness at a larger size (10 rounds, 100 seeds, 200k resamples). A real
    evaluation plugs in, through `jaxpapers.evals.red_blue`'s Red/Blue/Target protocols, the
    report's LLM Red (planner, executor, reporter) and Blue (Mini-SWE-Agent) agents and a real
    target (CVE code, a jailbreak guardrail); and, for pass@k, PACEbench's per-task results through
    `jaxpapers eval passk`. None of those is available here.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, check, check_choice

RED_POLICIES = ("thompson", "greedy")


@dataclasses.dataclass(frozen=True)
class FrontierRiskConfig:
  """What `jaxpapers reproduce frontier_risk` runs.

  Attributes:
    rounds: RvB rounds per game (the report runs 5).
    seeds: games per Blue strategy (seed i fixes Red's draws and the seen/held-out variant split).
    attacks_per_round: attacks Red launches per round.
    held_out_variants: of the 20 surface variants per class, how many Red never sees (DSR set).
    benign: benign inputs for the FPR.
    red_policy: thompson (Bayesian bandit) or greedy (argmax expected utility).
    p_block_patched: P(blocked | patched) in Red's likelihood.
    p_block_open: P(blocked | open) in Red's likelihood.
    passk_triples: random (n, c, k) checked against Monte-Carlo resampling.
    passk_draws: resamples per triple.
    passk_max_n: largest n of the random triples.
    mesh: devices, as every experiment config has (nothing here runs on them; no TrainConfig:
      the experiment declares no training stage).
  """

  rounds: int = 5
  seeds: int = 10
  attacks_per_round: int = 8
  held_out_variants: int = 10
  benign: int = 200
  red_policy: str = "thompson"
  p_block_patched: float = 0.9
  p_block_open: float = 0.1
  passk_triples: int = 50
  passk_draws: int = 100_000
  passk_max_n: int = 200
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    check(1 <= self.rounds <= 1000, "rounds", self.rounds, "in [1, 1000]")
    check(1 <= self.seeds <= 10_000, "seeds", self.seeds, "in [1, 10000]")
    check(1 <= self.attacks_per_round <= 1000, "attacks_per_round", self.attacks_per_round, "in [1, 1000]")
    check(1 <= self.held_out_variants <= 18, "held_out_variants", self.held_out_variants,
          "in [1, 18] (Red keeps at least 2 of the 20 variants)")
    check(1 <= self.benign <= 100_000, "benign", self.benign, "in [1, 100000]")
    check_choice("red_policy", self.red_policy, RED_POLICIES)
    check(0 < self.p_block_open < self.p_block_patched < 1, "p_block_patched", self.p_block_patched,
          "in (p_block_open, 1) with p_block_open in (0, 1)")
    check(0 <= self.passk_triples <= 10_000, "passk_triples", self.passk_triples, "in [0, 10000]")
    check(100 <= self.passk_draws <= 10_000_000, "passk_draws", self.passk_draws, "in [100, 10000000]")
    check(2 <= self.passk_max_n <= 10_000, "passk_max_n", self.passk_max_n, "in [2, 10000]")


SMOKE = FrontierRiskConfig(rounds=2, seeds=1, passk_triples=0)
SMALL = FrontierRiskConfig()
PAPER = FrontierRiskConfig(rounds=10, seeds=100, passk_triples=500, passk_draws=200_000, passk_max_n=10_000)

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
