"""Config and presets of the Computer-Using World Model experiment (CUWM, arXiv 2602.17365).

Our CPU-scale protocol (experiments/cuwm/README.md) on ToyUI (`jaxpapers.envs.toy_ui`): a frozen
noisy proposer samples k = 5 clicks from a softmax over corrupted expert scores; the search
(`jaxpapers.worldmodel.action_search`) imagines each outcome with the true simulator, the
trained `TwoStageWM`, an untrained one (and, reported, a direct pixel model) and keeps the one
whose imagined screen is nearest the goal. The delta head and the renderer train as separate
stages through the shared loop; GRPO fine-tunes a 50-step SFT delta head.

Presets:
  smoke: the CI version: the spec's CI checks as claims, then one seed on a 2-widget ToyUI with
    short stages, 256 episodes and 5 GRPO updates (the spec's CI GRPO check), no direct model.
  small: the reproduction: 6 widgets (16 x 16 screens, 16 clicks), 3 seeds, 2,000 episodes per
    seed, stages of 400 full-batch Adam steps, GRPO 100 updates of 64 inputs x 5 samples.
  paper: the same protocol with wider models, more transitions and episodes (GPU size).
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check


def _stage(steps: int) -> TrainConfig:
  return TrainConfig(steps=steps, eval_every=0, log_every=steps, checkpoint_every=0,
                     steps_per_dispatch=steps)


@dataclasses.dataclass(frozen=True)
class CUWMConfig:
  """A CUWM action-search and delta-head GRPO run.

  Attributes:
    widgets: ToyUI widgets (1..6 of the default layout; 16 clicks on a 16 x 16 screen).
    hidden: hidden widths of the delta head, the renderer and the direct pixel model.
    train_transitions: random (state, click) transitions the world models train on.
    caveat_transitions: training-set sizes of the two-stage vs direct pixel model fidelity
      comparison (the spec's pre-check: 100 and 400); empty: no direct pixel model at all.
    episodes: (state, goal) search episodes per seed.
    k: candidates proposed per episode (paper: 5).
    proposer_noise: std of the Gaussian corruption of the expert scores (frozen per episode).
    proposer_temperature: temperature of the proposer's softmax.
    lr: Adam learning rate of the supervised stages.
    grpo_updates: GRPO updates of the delta head.
    grpo_batch: training inputs per GRPO update.
    grpo_group: K, sampled descriptions per input (paper: 5).
    grpo_lr: Adam learning rate of GRPO.
    kl_coef: k3 KL weight to the SFT head (paper: 0.01).
    clip_eps: GRPO ratio clip.
    band_low: lower end of the length band (x the true description's length; paper 0.75).
    band_high: upper end (paper 1.25).
    length_penalty: reward subtracted outside the band.
    reward_samples: sampled descriptions per transition when the judge reward is measured.
    seed: first seed (data, episodes, proposer, initializations).
    seeds: seeds of the reproduction.
    checks: run the spec's CI checks as claims (smoke).
    delta: training loop of stage 1 (the delta head, on the true change sets).
    renderer: training loop of stage 2 (the renderer, on the true change sets).
    direct: training loop of the direct pixel model (the caveat's baseline).
    grpo_sft: training loop of the short SFT that starts GRPO (spec: 50 steps).
    mesh: devices.
  """

  widgets: int = 6
  hidden: tuple[int, ...] = (128,)
  train_transitions: int = 400
  caveat_transitions: tuple[int, ...] = (100, 400)
  episodes: int = 2000
  k: int = 5
  proposer_noise: float = 1.0
  proposer_temperature: float = 1.0
  lr: float = 1e-2
  grpo_updates: int = 100
  grpo_batch: int = 64
  grpo_group: int = 5
  grpo_lr: float = 3e-3
  kl_coef: float = 0.01
  clip_eps: float = 0.2
  band_low: float = 0.75
  band_high: float = 1.25
  length_penalty: float = 0.5
  reward_samples: int = 8
  seed: int = 0
  seeds: int = 3
  checks: bool = False
  delta: TrainConfig = _stage(400)
  renderer: TrainConfig = _stage(400)
  direct: TrainConfig = _stage(400)
  grpo_sft: TrainConfig = _stage(50)
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    check(1 <= self.widgets <= 6, "widgets", self.widgets, "in 1..6 (the default ToyUI layout)")
    for name in ("train_transitions", "episodes", "grpo_updates", "grpo_batch", "reward_samples", "seeds"):
      check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
    check(all(n >= 1 for n in self.caveat_transitions), "caveat_transitions", self.caveat_transitions,
          "positive sizes (empty: no direct pixel model)")
    check(all(h >= 1 for h in self.hidden), "hidden", self.hidden, "positive widths")
    check(2 <= self.k <= 16, "k", self.k, "in 2..16 (at most the 16 clicks)")
    check(self.proposer_noise >= 0, "proposer_noise", self.proposer_noise, ">= 0")
    check(self.proposer_temperature > 0, "proposer_temperature", self.proposer_temperature, "> 0")
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(0 < self.grpo_lr <= 1, "grpo_lr", self.grpo_lr, "in (0, 1]")
    check(self.grpo_group >= 2, "grpo_group", self.grpo_group, ">= 2 (an advantage needs two samples)")
    check(self.kl_coef >= 0, "kl_coef", self.kl_coef, ">= 0")
    check(0 < self.clip_eps < 1, "clip_eps", self.clip_eps, "in (0, 1)")
    check(0 <= self.band_low <= 1 <= self.band_high, "band_low", (self.band_low, self.band_high),
          "band_low <= 1 <= band_high, both >= 0")
    check(self.length_penalty >= 0, "length_penalty", self.length_penalty, ">= 0")
    check(self.seed >= 0, "seed", self.seed, ">= 0")


SMOKE = CUWMConfig(widgets=2, train_transitions=128, caveat_transitions=(), episodes=256, seeds=1,
                   checks=True, hidden=(32,), grpo_updates=5, grpo_batch=16, delta=_stage(100),
                   renderer=_stage(100), direct=_stage(100), grpo_sft=_stage(20))
SMALL = CUWMConfig()
PAPER = CUWMConfig(hidden=(512, 512), train_transitions=4000, caveat_transitions=(100, 400, 4000),
                   episodes=20_000, seeds=5, grpo_updates=1000, grpo_batch=256, delta=_stage(5000),
                   renderer=_stage(5000), direct=_stage(5000))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
