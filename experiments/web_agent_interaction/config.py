"""Config and presets of the web-agent intervention experiment (arXiv 2602.17588).

Our CPU-scale protocol (experiments/web_agent_interaction/README.md): synthetic human-agent
trajectories from four user styles (`jaxpapers.evals.web_users`), split by trajectory; style
discovery by k-means on the per-user features of the training trajectories; a GRU (or MLP)
intervention predictor trained with class-weighted BCE through the shared loop, general or
conditioned on the discovered style; never- and always-intervene baselines; step accuracy, F1
and the provisional Perfect Timing Score (`jaxpapers.evals.intervention`).

Presets:
  smoke: the CI version: the spec's PTS / F1 / k-means invariants, plus the pipeline on 8 users x
    6 trajectories, 40 steps, one seed.
  small: the reproduction: 40 users x 20 trajectories x 8-15 steps, 5 seeds, GRU 32, 300 steps.
  paper: the harness on the toy at a larger size (400 users, GRU 128, 5 seeds, 2,000 steps). A
    real evaluation plugs in CowCorpus' step records (screenshot, accessibility tree, human and
    agent action history, proposed action) for the synthetic steps and a fine-tuned multimodal
    LM's "intervene / continue" output for the GRU's; the metrics, baselines, split and style
    clustering stay as they are (README, "Paper preset").
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice

PREDICTORS = ("gru", "mlp")
CONDITIONING = ("general", "style")


@dataclasses.dataclass(frozen=True)
class WebAgentConfig:
  """An intervention-prediction run on synthetic web users.

  Attributes:
    num_users: users of the synthetic corpus (styles assigned in turn; a multiple of 4).
    trajectories_per_user: trajectories per user.
    min_steps: shortest planned trajectory (agent decision steps).
    max_steps: longest planned trajectory (and the padded sequence length).
    error_rate: probability that a proposed agent action is wrong.
    risk_rate: probability that a step is risky.
    error_noise: probability that the predictor's view of the error flag is flipped.
    test_fraction: share of the trajectories held out (split by trajectory, as the paper's).
    styles: k of the k-means style discovery (the paper's 4).
    predictor: "gru" (`nnx.GRUCell` over the steps) or "mlp" (each step alone).
    hidden: hidden width of the predictor.
    style_dim: width of the style embedding of the style-conditioned predictor.
    conditioning: what the `train` stage trains: "general" or "style" (conditioned on the
      discovered style of the user).
    positive_weight: weight of the intervention class in the BCE; 0: balanced (negatives over
      positives of the training steps).
    threshold: predicted probability at or above which the predictor intervenes.
    lr: Adam learning rate.
    alphas: PTS penalty weights reported and gated.
    seed: seed of the corpus, the split, the clustering and (with `train.seed`) the init.
    seeds: seeds of a reproduction (seed, seed + 1, ...).
    checks: run the CI invariants as claims (smoke).
    train: the training loop (full batch).
    mesh: devices.
  """

  num_users: int = 40
  trajectories_per_user: int = 20
  min_steps: int = 8
  max_steps: int = 15
  error_rate: float = 0.25
  risk_rate: float = 0.15
  error_noise: float = 0.1
  test_fraction: float = 0.2
  styles: int = 4
  predictor: str = "gru"
  hidden: int = 32
  style_dim: int = 4
  conditioning: str = "general"
  positive_weight: float = 3.0
  threshold: float = 0.5
  lr: float = 1e-2
  alphas: tuple[float, ...] = (0.1, 0.5, 1.0)
  seed: int = 0
  seeds: int = 5
  checks: bool = False
  train: TrainConfig = TrainConfig(steps=300, eval_every=0, log_every=25, checkpoint_every=0,
                                   steps_per_dispatch=25)
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    for name in ("num_users", "trajectories_per_user", "min_steps", "hidden", "style_dim", "seeds"):
      check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
    check(self.num_users % 4 == 0, "num_users", self.num_users, "a multiple of 4 (equal style groups)")
    check(self.max_steps >= self.min_steps, "max_steps", self.max_steps, f">= min_steps={self.min_steps}")
    for name in ("error_rate", "risk_rate", "error_noise"):
      check(0 <= getattr(self, name) <= 1, name, getattr(self, name), "in [0, 1]")
    check(0 < self.test_fraction < 1, "test_fraction", self.test_fraction, "in (0, 1)")
    check(2 <= self.styles <= self.num_users, "styles", self.styles, f"in [2, num_users={self.num_users}]")
    check_choice("predictor", self.predictor, PREDICTORS)
    check_choice("conditioning", self.conditioning, CONDITIONING)
    check(self.positive_weight >= 0, "positive_weight", self.positive_weight, ">= 0 (0: balanced)")
    check(0 < self.threshold < 1, "threshold", self.threshold, "in (0, 1)")
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(bool(self.alphas) and all(a >= 0 for a in self.alphas), "alphas", self.alphas,
          "a non-empty list of weights >= 0")
    check(self.seed >= 0, "seed", self.seed, ">= 0")


SMOKE = WebAgentConfig(
    num_users=8, trajectories_per_user=6, seeds=1, checks=True,
    train=TrainConfig(steps=40, eval_every=0, log_every=5, checkpoint_every=0))
SMALL = WebAgentConfig()
PAPER = WebAgentConfig(
    num_users=400, hidden=128, style_dim=8, lr=3e-3,
    train=TrainConfig(steps=2000, eval_every=0, log_every=100, checkpoint_every=500,
                      steps_per_dispatch=100))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
