"""Config and presets of the reference-guided self-improvement experiment (arXiv 2602.16802).

Our CPU-scale protocol (experiments/ref_guided_dpo/README.md) on the synthetic non-verifiable
alignment task (`jaxpapers.envs.alignment`): SFT on the references, then rounds of "sample K = 5
candidates per prompt, judge all ordered pairs, aggregate (`jaxpapers.rl.aggregate_pairwise`),
DPO", the DPO reference model refreshed every round, with labels from the reference-guided judge,
the reference-free judge or the oracle.

Presets:
  smoke: the CI version: P = 16 prompts, one round of 10 DPO steps, one seed, the unit checks.
  small: the reproduction: P = 64, L = 8, V = 6, SFT 20 steps, 5 rounds of 20 DPO steps, 3 seeds.
  paper: the same recipe with the shared tiny transformer LM as the policy (GPU size).
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice

LABELS = ("reference", "reference_free", "oracle")
POLICIES = ("mlp", "lm")


@dataclasses.dataclass(frozen=True)
class JudgeConfig:
  """The toy judges (`jaxpapers.envs.alignment.JudgeParams`; calibration in the README).

  Attributes:
    scale: logit per unit score difference.
    position_bias: logit towards slot A (cancelled by judging both orders).
    ref_noise: logit noise of the reference-guided judge.
    free_noise: logit noise of the reference-free judge.
    free_quality_weight: the reference-free judge's weight on true quality.
    free_spurious_weight: its weight on the spurious token's share (the built-in bias).
  """

  scale: float = 8.0
  position_bias: float = 0.5
  ref_noise: float = 0.25
  free_noise: float = 3.0
  free_quality_weight: float = 0.5
  free_spurious_weight: float = 1.0

  def __post_init__(self):
    check(self.scale > 0, "judge.scale", self.scale, "> 0")
    for name in ("ref_noise", "free_noise", "free_quality_weight", "free_spurious_weight"):
      check(getattr(self, name) >= 0, f"judge.{name}", getattr(self, name), ">= 0")


@dataclasses.dataclass(frozen=True)
class RefDPOConfig:
  """A reference-guided self-improvement run.

  Attributes:
    prompts: P, prompts of the task.
    length: L, response length.
    vocab: V, response vocabulary.
    corruption: share of each reference's positions changed from the ideal.
    spurious_token: the token the reference-free judge prefers.
    judge: the toy judges.
    policy: "mlp" (one-hot prompt -> per-position logits) or "lm" (the shared tiny LM).
    hidden: hidden widths of the MLP policy.
    lm_width: width of the LM policy.
    lm_layers: blocks of the LM policy.
    lm_heads: attention heads of the LM policy.
    k: candidates sampled per prompt and round (paper: 5, all K (K - 1) ordered pairs judged).
    rounds: DPO rounds (reference model refreshed each round).
    beta: DPO beta.
    temperature: sampling temperature of the candidates.
    reference_free_loss: DPO's reference-free variant (drops pi_ref; authors' option).
    sft_lr: Adam learning rate of the SFT stage.
    dpo_lr: Adam learning rate of each DPO round.
    labels: which judge labels the `dpo` stage trains on: reference, reference_free or oracle.
    round: the round the `dpo` stage trains (it seeds the round's sampling and judging).
    seed: seed of the task (ideals, references), of the sampling and of the judges' noise.
    seeds: seeds of a reproduction (seed, seed + 1, ...).
    quality_samples: samples per prompt for the LM policy's true quality (the MLP's is exact).
    checks: run the CI unit checks as claims (smoke).
    sft: training loop of the SFT stage.
    dpo: training loop of one DPO round.
    mesh: devices.
  """

  prompts: int = 64
  length: int = 8
  vocab: int = 6
  corruption: float = 0.25
  spurious_token: int = 0
  judge: JudgeConfig = JudgeConfig()
  policy: str = "mlp"
  hidden: tuple[int, ...] = (32,)
  lm_width: int = 64
  lm_layers: int = 2
  lm_heads: int = 4
  k: int = 5
  rounds: int = 5
  beta: float = 0.5
  temperature: float = 1.0
  reference_free_loss: bool = False
  sft_lr: float = 1.5e-2
  dpo_lr: float = 1e-2
  labels: str = "reference"
  round: int = 1
  seed: int = 0
  seeds: int = 3
  quality_samples: int = 64
  checks: bool = False
  sft: TrainConfig = TrainConfig(steps=20, eval_every=0, log_every=20, checkpoint_every=0,
                                 steps_per_dispatch=20)
  dpo: TrainConfig = TrainConfig(steps=20, eval_every=0, log_every=20, checkpoint_every=0,
                                 steps_per_dispatch=20)
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    for name in ("prompts", "length", "rounds", "round", "seeds", "quality_samples", "lm_width",
                 "lm_layers", "lm_heads"):
      check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
    check(self.vocab >= 2, "vocab", self.vocab, ">= 2")
    check(0 <= self.spurious_token < self.vocab, "spurious_token", self.spurious_token,
          f"a token id in [0, {self.vocab})")
    check(0 <= self.corruption <= 1, "corruption", self.corruption, "in [0, 1]")
    check(self.k >= 2, "k", self.k, ">= 2 (a pair needs two candidates)")
    check(self.beta > 0, "beta", self.beta, "> 0")
    check(self.temperature > 0, "temperature", self.temperature, "> 0")
    check(0 < self.sft_lr <= 1, "sft_lr", self.sft_lr, "in (0, 1]")
    check(0 < self.dpo_lr <= 1, "dpo_lr", self.dpo_lr, "in (0, 1]")
    check(all(h >= 1 for h in self.hidden), "hidden", self.hidden, "positive widths")
    check(self.lm_width % self.lm_heads == 0, "lm_width", self.lm_width,
          f"a multiple of lm_heads={self.lm_heads}")
    check_choice("policy", self.policy, POLICIES)
    check_choice("labels", self.labels, LABELS)
    check(self.seed >= 0, "seed", self.seed, ">= 0")


SMOKE = RefDPOConfig(
    prompts=16, rounds=1, seeds=1, checks=True,
    dpo=TrainConfig(steps=10, eval_every=0, log_every=1, checkpoint_every=0))
SMALL = RefDPOConfig()
PAPER = RefDPOConfig(
    prompts=1024, length=16, vocab=32, policy="lm", lm_width=256, lm_layers=4, lm_heads=4,
    rounds=5, quality_samples=256, sft_lr=1e-3, dpo_lr=1e-4, beta=0.1,
    sft=TrainConfig(steps=500, eval_every=0, log_every=50, checkpoint_every=250),
    dpo=TrainConfig(steps=200, eval_every=0, log_every=20, checkpoint_every=100))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
