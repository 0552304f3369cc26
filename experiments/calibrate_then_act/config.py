"""Config and presets of the Calibrate-Then-Act experiment (Ding et al., arXiv 2602.16699).

The protocol is our CPU-scale one (experiments/calibrate_then_act/README.md): the paper's
Pandora's-box task and oracles exactly, then small MLP policies trained by REINFORCE with and
without the prior in their observation (they stand in for the LLM), on Pandora and on the
library version of the coding task.

Presets:
  smoke: the CI protocol (spec 4.3): oracle checks, a 20,000-task Monte Carlo, the QA rule, the
    coding DP against its own Monte Carlo, and 40 updates of each Pandora policy.
  small: 200,000 evaluation tasks, both Pandora policies (1,500 updates of 2,048 episodes), the
    miscalibration ablation, both coding-task policies (1,000 updates of 2,048 episodes); an
    entropy bonus of 0.05 (calibrated once: without it both Pandora policies collapsed, see the
    README's calibration record).
  paper: the same protocol with 10 x the updates and 1,000,000 evaluation tasks.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice

ALGORITHMS = ("reinforce", "ppo")


@dataclasses.dataclass(frozen=True)
class CTAConfig:
  """What `jaxpapers reproduce calibrate_then_act` runs.

  Attributes:
    eval_tasks: Pandora tasks of the population statistics and the policies' evaluation.
    n_boxes: boxes per Pandora task.
    alpha: Dirichlet concentration of the Pandora prior (the authors' 1.2).
    round_decimals: decimals of the shown prior (the authors' 2).
    with_prior: observation of the policy `jaxpapers train` trains (the reproduction trains both).
    hidden: hidden width of the policy MLP.
    depth: hidden layers of the policy MLP.
    batch_episodes: episodes per policy-gradient update.
    learning_rate: Adam step size.
    entropy_coef: entropy bonus of the policy-gradient loss.
    algorithm: "reinforce" (mean baseline, one update per batch) or "ppo" (clipped, on the same
      fresh batch, `ppo_epochs` passes).
    ppo_epochs: gradient passes per batch with "ppo".
    temperatures: miscalibration temperatures T of the ablation (prior ** (1 / T)).
    coding: also run the coding task.
    coding_eval_tasks: coding tasks of its statistics and evaluation.
    pandora: training of a Pandora policy.
    coding_train: training of a coding-task policy.
    mesh: devices.
  """

  eval_tasks: int = 200_000
  n_boxes: int = 3
  alpha: float = 1.2
  round_decimals: int = 2
  with_prior: bool = True
  hidden: int = 64
  depth: int = 2
  batch_episodes: int = 2048
  learning_rate: float = 3e-3
  entropy_coef: float = 0.05
  algorithm: str = "reinforce"
  ppo_epochs: int = 4
  temperatures: tuple[float, ...] = (2.0, 0.5)
  coding: bool = True
  coding_eval_tasks: int = 100_000
  pandora: TrainConfig = TrainConfig(steps=1500, eval_every=0, log_every=100, checkpoint_every=500,
                                     steps_per_dispatch=100)
  coding_train: TrainConfig = TrainConfig(steps=1000, eval_every=0, log_every=100,
                                          checkpoint_every=500, steps_per_dispatch=100, seed=1)
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    check(1_000 <= self.eval_tasks <= 10_000_000, "eval_tasks", self.eval_tasks, "in [1000, 10000000]")
    check(2 <= self.n_boxes <= 16, "n_boxes", self.n_boxes, "in [2, 16]")
    check(self.alpha > 0, "alpha", self.alpha, "> 0")
    check(1 <= self.round_decimals <= 6, "round_decimals", self.round_decimals, "in [1, 6]")
    check(1 <= self.hidden <= 4096, "hidden", self.hidden, "in [1, 4096]")
    check(1 <= self.depth <= 8, "depth", self.depth, "in [1, 8]")
    check(16 <= self.batch_episodes <= 1_000_000, "batch_episodes", self.batch_episodes,
          "in [16, 1000000]")
    check(0 < self.learning_rate < 1, "learning_rate", self.learning_rate, "in (0, 1)")
    check(self.entropy_coef >= 0, "entropy_coef", self.entropy_coef, ">= 0")
    check_choice("algorithm", self.algorithm, ALGORITHMS)
    check(1 <= self.ppo_epochs <= 64, "ppo_epochs", self.ppo_epochs, "in [1, 64]")
    check(all(t > 0 for t in self.temperatures), "temperatures", self.temperatures, "all > 0")
    check(1_000 <= self.coding_eval_tasks <= 10_000_000, "coding_eval_tasks",
          self.coding_eval_tasks, "in [1000, 10000000]")


SMALL = CTAConfig()
SMOKE = dataclasses.replace(
    SMALL, eval_tasks=20_000, batch_episodes=512, coding=False, coding_eval_tasks=20_000,
    pandora=dataclasses.replace(SMALL.pandora, steps=40, log_every=20, steps_per_dispatch=20),
    coding_train=dataclasses.replace(SMALL.coding_train, steps=40, log_every=20,
                                     steps_per_dispatch=20))
PAPER = dataclasses.replace(
    SMALL, eval_tasks=1_000_000, coding_eval_tasks=1_000_000,
    pandora=dataclasses.replace(SMALL.pandora, steps=15_000, checkpoint_every=5000),
    coding_train=dataclasses.replace(SMALL.coding_train, steps=10_000, checkpoint_every=5000))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
