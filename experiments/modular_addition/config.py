"""Config and presets of the modular-addition experiment (He et al., arXiv 2602.16849).

Task, model and optimizer follow the paper's two-layer setup as the authors' code configures it
(`precompute/prime_config.py`); the small and smoke sizes are our CPU-scale protocol, see
experiments/modular_addition/README.md.

Presets:
  smoke: the CI protocol's "grokking tiny" (p = 23, M = 256, AdamW lr 1e-3, wd 1.0, 4,000
    steps) and "lottery tiny" (p = 17, M = 128, GD lr 1.0, 2,000 steps).
  small: grokking run A (p = 31, M = 931 by the authors' width rule, lr 1e-4, wd 2.0, 12,000 steps),
    lottery run B (p = 23, M = 512, 3,000 GD steps) and mechanism check C (p = 23, N = 8).
  paper: the authors' p = 97 grokking run (M = 9,107, 50,000 steps), for a GPU.
"""

from __future__ import annotations

import dataclasses
import math

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice


def width_rule(p: int) -> int:
  """The authors' width for modulus p: max(512, ceil(512/529 * p^2))."""
  return max(512, math.ceil(512 / 529 * p * p))


@dataclasses.dataclass(frozen=True)
class LotteryConfig:
  """The lottery-ticket run (protocol B): quadratic network, all pairs, plain gradient descent.

  Attributes:
    p: modulus.
    width: neurons.
    steps: gradient-descent steps.
    lr: step size; the ODE predictor integrates with dt = lr.
    init_scale: kappa of the random initialization.
    growth: a mode wins when its beta exceeds growth x the largest initial beta.
  """

  p: int = 23
  width: int = 512
  steps: int = 3_000
  lr: float = 1.0
  init_scale: float = 0.1
  growth: float = 20.0

  def __post_init__(self):
    check(self.p >= 3 and self.p % 2 == 1, "lottery.p", self.p, "an odd integer >= 3")
    check(self.width >= 1, "lottery.width", self.width, ">= 1")
    check(self.steps >= 1, "lottery.steps", self.steps, ">= 1")
    check(0 < self.lr <= 100, "lottery.lr", self.lr, "in (0, 100]")
    check(0 < self.init_scale <= 10, "lottery.init_scale", self.init_scale, "in (0, 10]")
    check(self.growth > 1, "lottery.growth", self.growth, "> 1")


@dataclasses.dataclass(frozen=True)
class MechanismConfig:
  """The analytic phase-symmetric quadratic network (protocol C)."""

  p: int = 23
  neurons_per_frequency: int = 8

  def __post_init__(self):
    check(self.p >= 3 and self.p % 2 == 1, "mechanism.p", self.p, "an odd integer >= 3")
    check(self.neurons_per_frequency >= 5, "mechanism.neurons_per_frequency",
          self.neurons_per_frequency, ">= 5 (phase sums of harmonics up to 4 must cancel)")


@dataclasses.dataclass(frozen=True)
class ModularAdditionConfig:
  """Two-layer network on (x + y) mod p with tied operand weights.

  Attributes:
    p: odd modulus.
    width: hidden neurons M.
    activation: "relu" or "quad" (u^2).
    init_scale: kappa in W = kappa * N(0, 1) / sqrt(p).
    optimizer: "adamw" (betas b1, b2, eps, decoupled weight decay) or "sgd" (L2 weight decay).
    lr: peak learning rate, reached after a linear warm-up min(step / warmup_steps, 1).
    weight_decay: AdamW decoupled decay (times lr), or SGD L2 coefficient.
    frac_train: fraction of the p^2 pairs used for training (1.0: test = train).
    split_seed: seed of the train/test permutation.
    lottery: the lottery-ticket run of `jaxpapers reproduce`.
    mechanism: the analytic network of `jaxpapers reproduce`.
  """

  p: int = 31
  width: int = 931
  activation: str = "relu"
  init_scale: float = 0.1
  optimizer: str = "adamw"
  lr: float = 1e-4
  weight_decay: float = 2.0
  b1: float = 0.9
  b2: float = 0.98
  eps: float = 1e-8
  warmup_steps: int = 10
  frac_train: float = 0.75
  split_seed: int = 0
  # 100 steps per jitted call: the best K of `jaxpapers bench trainer` (README, "Benchmarks").
  train: TrainConfig = TrainConfig(steps=12_000, eval_every=100, log_every=100, checkpoint_every=2_000,
                                   steps_per_dispatch=100)
  mesh: MeshConfig = MeshConfig()
  lottery: LotteryConfig = LotteryConfig()
  mechanism: MechanismConfig = MechanismConfig()

  def __post_init__(self):
    check(self.p >= 3 and self.p % 2 == 1, "p", self.p, "an odd integer >= 3")
    check(1 <= self.width <= 1_000_000, "width", self.width, "in [1, 1000000]")
    check_choice("activation", self.activation, ("relu", "quad"))
    check(0 < self.init_scale <= 10, "init_scale", self.init_scale, "in (0, 10]")
    check_choice("optimizer", self.optimizer, ("adamw", "sgd"))
    check(0 < self.lr <= 10, "lr", self.lr, "in (0, 10]")
    check(0 <= self.weight_decay <= 100, "weight_decay", self.weight_decay, "in [0, 100]")
    check(0 <= self.b1 < 1, "b1", self.b1, "in [0, 1)")
    check(0 <= self.b2 < 1, "b2", self.b2, "in [0, 1)")
    check(0 < self.eps <= 1, "eps", self.eps, "in (0, 1]")
    check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
    check(0 < self.frac_train <= 1, "frac_train", self.frac_train, "in (0, 1]")
    check(int(self.frac_train * self.p**2) >= 1, "frac_train", self.frac_train,
          f"large enough for at least one of the {self.p**2} pairs")
    check(self.split_seed >= 0, "split_seed", self.split_seed, ">= 0")


SMOKE = ModularAdditionConfig(
    p=23, width=256, lr=1e-3, weight_decay=1.0,
    train=TrainConfig(steps=4_000, eval_every=100, log_every=100, checkpoint_every=1_000,
                      steps_per_dispatch=100),
    lottery=LotteryConfig(p=17, width=128, steps=2_000))
SMALL = ModularAdditionConfig()
PAPER = ModularAdditionConfig(
    p=97, width=width_rule(97),
    train=TrainConfig(steps=50_000, eval_every=200, log_every=200, checkpoint_every=5_000,
                      steps_per_dispatch=100))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
