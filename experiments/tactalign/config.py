"""Config and presets of the TactAlign experiment (arXiv 2602.13579).

Our CPU-scale protocol (experiments/tactalign/README.md) on `synth-touch`
(`jaxpapers.data.synth_touch`): a glove and a Xela-like encoder trained by masked reconstruction,
pose-matched pseudo-pairs, a rectified flow on them, against identity (B0), random-pair
rectified flow (B1), pseudo-pair regression (B2) and oracle-pair rectified flow (B3).

Presets:
  smoke: the CI version (spec 4.5): 20 human and 10 robot demos, 100 flow steps, the unit checks.
  small: the reproduction: the paper's 200 human and 100 robot demos, 5,000 play states per
    domain, encoders 1,000 steps at batch 256, flows 4,000 steps at batch 512.
  paper: the same structure at a larger width and longer training (the paper's own encoders
    are JEPA transformers on real glove and Xela data, which we do not have).
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice

COUPLINGS = ("pseudo", "random", "oracle")
POSE_NORMS = ("standardize", "none")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """synth-touch datasets (all unpaired; held-out sets have known hidden states).

  Attributes:
    human_demos: human demos the alignment is trained on (paper: 200).
    robot_demos: robot demos the alignment is trained on (paper: 100).
    play: random "play" states per domain for encoder pre-training.
    eval_demos: held-out demos per domain.
    seed: fixes every draw.
  """

  human_demos: int = 200
  robot_demos: int = 100
  play: int = 5000
  eval_demos: int = 50
  seed: int = 0

  def __post_init__(self):
    for name in ("human_demos", "robot_demos", "eval_demos"):
      check(getattr(self, name) >= 2, f"data.{name}", getattr(self, name), ">= 2")
    check(self.play >= 0, "data.play", self.play, ">= 0")
    check(self.seed >= 0, "data.seed", self.seed, ">= 0")


@dataclasses.dataclass(frozen=True)
class PairConfig:
  """Pseudo-pair rule (paper Sec. III-B; the distance and neighbour rule are our choices).

  Attributes:
    pose_norm: "standardize" (each domain's fingertip poses standardised per finger and axis,
      which removes the embodiments' scale and offset) or "none" (raw object-frame poses).
    phase_weight: weight of the normalised task phase t / T appended to the pose (0: off;
      the spec's option: 0.5).
    k: nearest neighbours kept per sample (1: nearest).
    both_directions: add robot -> nearest human pairs.
    contact_percentile: the per-domain magnitude percentile that normalises to 1.
    contact_threshold: normalised magnitude above which a sample is in contact.
  """

  pose_norm: str = "standardize"
  phase_weight: float = 0.0
  k: int = 1
  both_directions: bool = True
  contact_percentile: float = 99.0
  contact_threshold: float = 0.1

  def __post_init__(self):
    check_choice("pairs.pose_norm", self.pose_norm, POSE_NORMS)
    check(self.phase_weight >= 0, "pairs.phase_weight", self.phase_weight, ">= 0")
    check(self.k >= 1, "pairs.k", self.k, ">= 1")
    check(0 < self.contact_percentile <= 100, "pairs.contact_percentile", self.contact_percentile,
          "in (0, 100]")
    check(0 <= self.contact_threshold < 1, "pairs.contact_threshold", self.contact_threshold, "in [0, 1)")


@dataclasses.dataclass(frozen=True)
class TactAlignConfig:
  """A TactAlign run: encoders, alignment and baselines, evaluation.

  Attributes:
    data: the synth-touch datasets.
    pairs: the pseudo-pair rule.
    width: encoder token width.
    depth: encoder transformer blocks.
    heads: attention heads.
    latent_dim: d_z of both embodiments.
    mask_ratio: fraction of tokens masked in the encoders' reconstruction loss.
    encoder_lr: Adam learning rate of the encoders.
    encoder_batch: encoder batch size.
    flow_hidden: hidden sizes of the velocity MLP (and of the regression baseline).
    time_dim: sinusoidal time features of the velocity MLP.
    flow_lr: Adam learning rate of the flow and the regression.
    flow_batch: batch size of the flow and the regression.
    ode_steps: Euler steps of the transport.
    coupling: which pairs the `flow` stage trains on: "pseudo" (TactAlign), "random" (B1:
      standard rectified flow) or "oracle" (B3: pairs of identical hidden states).
    eval_frames: frames per domain in the EMD (spec: 512).
    ridge_alpha: ridge penalty of the force probe.
    baselines: train and evaluate the baselines B1-B3 (off in smoke: its time budget).
    checks: run the CI unit checks as claims (smoke).
    encoder_human: training loop of the glove encoder.
    encoder_robot: training loop of the Xela encoder.
    flow: training loop of the rectified flow.
    regression: training loop of the pseudo-pair regression baseline (B2).
    mesh: devices.
  """

  data: DataConfig = DataConfig()
  pairs: PairConfig = PairConfig()
  width: int = 32
  depth: int = 1
  heads: int = 2
  latent_dim: int = 8
  mask_ratio: float = 0.25
  encoder_lr: float = 1e-3
  encoder_batch: int = 256
  flow_hidden: tuple[int, ...] = (128, 128)
  time_dim: int = 32
  flow_lr: float = 1e-3
  flow_batch: int = 512
  ode_steps: int = 20
  coupling: str = "pseudo"
  eval_frames: int = 512
  ridge_alpha: float = 1e-2
  baselines: bool = True
  checks: bool = False
  encoder_human: TrainConfig = TrainConfig(steps=1000, eval_every=0, log_every=100,
                                           checkpoint_every=500, steps_per_dispatch=50)
  encoder_robot: TrainConfig = TrainConfig(steps=1000, seed=1, eval_every=0, log_every=100,
                                           checkpoint_every=500, steps_per_dispatch=50)
  flow: TrainConfig = TrainConfig(steps=4000, seed=2, eval_every=0, log_every=100,
                                  checkpoint_every=2000, steps_per_dispatch=100)
  regression: TrainConfig = TrainConfig(steps=4000, seed=3, eval_every=0, log_every=100,
                                        checkpoint_every=2000, steps_per_dispatch=100)
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    for name in ("width", "heads", "latent_dim", "encoder_batch", "flow_batch", "time_dim", "ode_steps"):
      check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
    check(self.width % self.heads == 0, "width", self.width, f"a multiple of heads={self.heads}")
    check(self.time_dim % 2 == 0, "time_dim", self.time_dim, "even (cos and sin features)")
    check(self.depth >= 0, "depth", self.depth, ">= 0")
    check(0 <= self.mask_ratio < 1, "mask_ratio", self.mask_ratio, "in [0, 1)")
    check(0 < self.encoder_lr <= 1 and 0 < self.flow_lr <= 1, "encoder_lr", self.encoder_lr,
          "in (0, 1] (and flow_lr too)")
    check(len(self.flow_hidden) >= 1 and all(h >= 1 for h in self.flow_hidden), "flow_hidden",
          self.flow_hidden, "one or more positive sizes")
    check_choice("coupling", self.coupling, COUPLINGS)
    check(self.eval_frames >= 8, "eval_frames", self.eval_frames, ">= 8")
    check(self.ridge_alpha >= 0, "ridge_alpha", self.ridge_alpha, ">= 0")


SMOKE = TactAlignConfig(
    data=DataConfig(human_demos=4, robot_demos=3, play=100, eval_demos=3),
    width=16, latent_dim=4, flow_hidden=(32, 32), time_dim=8, encoder_batch=64, flow_batch=64,
    eval_frames=96, checks=True, baselines=False,
    encoder_human=TrainConfig(steps=40, eval_every=0, log_every=20, checkpoint_every=40,
                              steps_per_dispatch=20),
    encoder_robot=TrainConfig(steps=40, seed=1, eval_every=0, log_every=20, checkpoint_every=40,
                              steps_per_dispatch=20),
    flow=TrainConfig(steps=100, seed=2, eval_every=0, log_every=20, checkpoint_every=100,
                     steps_per_dispatch=50),
    regression=TrainConfig(steps=100, seed=3, eval_every=0, log_every=20, checkpoint_every=100,
                           steps_per_dispatch=50))
SMALL = TactAlignConfig()
PAPER = TactAlignConfig(
    data=DataConfig(human_demos=200, robot_demos=100, play=50_000, eval_demos=200),
    width=128, depth=4, heads=4, latent_dim=16, flow_hidden=(256, 256),
    encoder_human=TrainConfig(steps=20_000, eval_every=0, log_every=200, checkpoint_every=5000),
    encoder_robot=TrainConfig(steps=20_000, seed=1, eval_every=0, log_every=200, checkpoint_every=5000),
    flow=TrainConfig(steps=20_000, seed=2, eval_every=0, log_every=200, checkpoint_every=5000),
    regression=TrainConfig(steps=20_000, seed=3, eval_every=0, log_every=200, checkpoint_every=5000))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
