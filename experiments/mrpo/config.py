"""Config and presets of the MRPO experiment (GUI-Owl-1.5 / Mobile-Agent-v3.5, arXiv 2602.16855).

Our CPU-scale protocol (experiments/mrpo/README.md): GRPO on SeqBandit (`jaxpapers.envs.seq_bandit`)
three ways: plain (G rollouts per task, every group used), filter only (DAPO-style dynamic
sampling: groups of G, collapsed ones dropped) and the MRPO-style buffer (N rollouts per task,
collapsed tasks dropped, a balanced pick of G, FIFO; `jaxpapers.rl.RolloutBuffer`).

Presets:
  smoke: the CI version: P = 4 tasks, 10 updates, one seed, the unit and transport checks.
  small: the reproduction: P = 16, L = 4, V = 4, G = 8, B = 16, 2 inner steps, clip 0.2,
    Adam 3e-3, 60 updates, 3 seeds; plain GRPO run on to the 40,000-rollout budget.
  paper: the same recipe with the shared tiny transformer LM as the policy (GPU size).
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import check, check_choice

POLICIES = ("mlp", "lm")
VARIANTS = ("plain", "filter", "mrpo")


@dataclasses.dataclass(frozen=True)
class MRPOConfig:
  """A GRPO / MRPO comparison on SeqBandit.

  Attributes:
    tasks: P, tasks of the bandit.
    length: L, response length.
    vocab: V, response vocabulary (a uniform policy succeeds with probability V^-L).
    devices: device ids per task (each changes the target); 1: none.
    policy: "mlp" (one-hot prompt -> hidden layer -> per-position logits) or "lm" (the tiny LM).
    hidden: hidden widths of the MLP policy.
    lm_width: width of the LM policy.
    lm_layers: blocks of the LM policy.
    lm_heads: attention heads of the LM policy.
    group: G, rollouts per group in a training batch.
    groups_per_update: B, groups per update batch.
    inner_steps: optimizer steps on each batch (the ratio moves away from 1 after the first).
    clip_eps: GRPO clip range.
    kl_coef: weight of the k3 KL to the initial policy (0: none).
    lr: Adam learning rate.
    updates: updates of every variant (the equal-updates comparison).
    oversample: N, rollouts drawn per task by the MRPO buffer.
    sample_tasks: tasks drawn per sampling call of the filtering variants.
    budget_rollouts: the equal-rollout-budget comparison point (plain GRPO runs on to it).
    max_rollouts_per_update: a filtering variant that needs more rollouts than this for one
      batch stops (its policy left no mixed groups to find).
    temperature: sampling temperature.
    alternation_updates: updates of the device-alternation check (2 devices, MRPO buffer).
    seed: first seed (targets, initialization, sampling).
    seeds: seeds of the reproduction.
    checks: run the CI unit and transport checks as claims (smoke).
  """

  tasks: int = 16
  length: int = 4
  vocab: int = 4
  devices: int = 1
  policy: str = "mlp"
  hidden: tuple[int, ...] = (64,)
  lm_width: int = 64
  lm_layers: int = 2
  lm_heads: int = 4
  group: int = 8
  groups_per_update: int = 16
  inner_steps: int = 2
  clip_eps: float = 0.2
  kl_coef: float = 0.0
  lr: float = 3e-3
  updates: int = 60
  oversample: int = 32
  sample_tasks: int = 16
  budget_rollouts: int = 40_000
  max_rollouts_per_update: int = 200_000
  temperature: float = 1.0
  alternation_updates: int = 8
  seed: int = 0
  seeds: int = 3
  checks: bool = False

  def __post_init__(self):
    for name in ("tasks", "length", "devices", "group", "groups_per_update", "inner_steps", "updates",
                 "sample_tasks", "budget_rollouts", "max_rollouts_per_update", "seeds", "lm_width",
                 "lm_layers", "lm_heads"):
      check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
    check(self.vocab >= 2, "vocab", self.vocab, ">= 2")
    check(self.group >= 2, "group", self.group, ">= 2 (an advantage needs two rollouts)")
    check(self.oversample >= self.group, "oversample", self.oversample, f">= group={self.group}")
    check(0 < self.clip_eps < 1, "clip_eps", self.clip_eps, "in (0, 1)")
    check(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(self.temperature > 0, "temperature", self.temperature, "> 0")
    check(self.alternation_updates >= 0, "alternation_updates", self.alternation_updates, ">= 0")
    check(all(h >= 1 for h in self.hidden), "hidden", self.hidden, "positive widths")
    check(self.lm_width % self.lm_heads == 0, "lm_width", self.lm_width,
          f"a multiple of lm_heads={self.lm_heads}")
    check_choice("policy", self.policy, POLICIES)
    check(self.seed >= 0, "seed", self.seed, ">= 0")


SMOKE = MRPOConfig(tasks=4, length=3, vocab=3, groups_per_update=4, updates=10, oversample=16,
                   sample_tasks=4, budget_rollouts=2_000, alternation_updates=4, seeds=1, checks=True)
SMALL = MRPOConfig()
PAPER = MRPOConfig(tasks=256, length=6, vocab=4, devices=3, policy="lm", lm_width=256, lm_layers=4,
                   group=16, groups_per_update=64, lr=3e-4, updates=500, oversample=64,
                   sample_tasks=64, budget_rollouts=2_000_000, max_rollouts_per_update=2_000_000,
                   kl_coef=0.0)

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
