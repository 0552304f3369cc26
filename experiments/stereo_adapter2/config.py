"""Config and presets of the StereoAdapter-2 experiment (arXiv 2602.16915).

Presets (our CPU-scale protocol, see experiments/stereo_adapter2/README.md):
  smoke: the CI version: the operator checks (receptive field of one update, scan bookkeeping in
    the three modes, selective scan sequential == associative == Pallas interpret) and 10 AdamW
    steps of a tiny ConvSS2D RAFT-Stereo on 32 x 64 pairs.
  small: the reproduction: a ConvGRU and a ConvSS2D tiny RAFT-Stereo (C_h 48, 1/4 resolution,
    6 iterations) trained on generated 64 x 128 pairs with textureless rectangles, evaluated
    (EPE overall and inside the textureless regions, D1) at 1, 2, 4, 6 and 8 iterations.
  paper: the official code's update block (three hidden levels at 1/4, 1/8, 1/16, C_h 128,
    d_state 16, dt_rank 8, convex upsampling; 22 training and 32 evaluation iterations, batch 8,
    lr 1e-4) on 480 x 640 generated pairs, for a GPU; a tiny CNN stands in for the frozen Depth
    Anything 3 encoder with CoDyRA LoRA, and there is no monocular initialisation.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice
from jaxpapers.data.stereo_pairs import StereoPairsConfig
from jaxpapers.nn.conv_ss2d import MODES, SCANS, SS2DConfig
from jaxpapers.nn.raft_stereo import UPSAMPLING, RAFTStereoConfig

ARMS = ("gru", "ss2d")


@dataclasses.dataclass(frozen=True)
class StereoConfig:
  """A StereoAdapter-2 run: two tiny RAFT-Stereo arms that differ only in the updater.

  Attributes:
    model: the RAFT-Stereo (its `updater` is set per arm; `model.ss2d` is the ConvSS2D block).
    data: the generated pairs.
    train_pairs, eval_pairs: pairs generated for training and for the evaluation.
    data_seed, eval_seed: their seeds (the same training data for both arms).
    batch_size: pairs per step.
    lr: AdamW peak learning rate (cosine decay to 0 over the stage's steps).
    weight_decay: AdamW weight decay (not on A_log and D, as Mamba).
    train_iters: refinement iterations in training.
    eval_iters: iteration counts at which the evaluation reads the prediction.
    gamma: base of the sequence loss' weights.
    arms: the arms trained ("gru", "ss2d").
    kernel_check: run the operator checks of the CI (receptive field, bookkeeping, kernel).
    gru, ss2d: training loops of the stages `gru` and `ss2d`.
    mesh: devices.
  """

  model: RAFTStereoConfig = RAFTStereoConfig()
  data: StereoPairsConfig = StereoPairsConfig()
  train_pairs: int = 1024
  eval_pairs: int = 64
  data_seed: int = 0
  eval_seed: int = 1
  batch_size: int = 4
  lr: float = 2e-4
  weight_decay: float = 1e-5
  train_iters: int = 6
  eval_iters: tuple[int, ...] = (1, 2, 4, 6, 8)
  gamma: float = 0.9
  arms: tuple[str, ...] = ARMS
  kernel_check: bool = False
  gru: TrainConfig = TrainConfig(steps=250, eval_every=0, log_every=10, checkpoint_every=0)
  ss2d: TrainConfig = TrainConfig(steps=250, eval_every=0, log_every=10, checkpoint_every=0)
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    check(self.model.hidden == self.model.ss2d.d_model, "model.ss2d.d_model",
          self.model.ss2d.d_model, f"model.hidden = {self.model.hidden}")
    check_choice("model.ss2d.mode", self.model.ss2d.mode, MODES)
    check_choice("model.ss2d.scan", self.model.ss2d.scan, SCANS)
    check_choice("model.upsample", self.model.upsample, UPSAMPLING)
    check(self.data.height % 4 == 0 and self.data.width % 4 == 0, "data.height", self.data.height,
          "a multiple of 4 (and data.width too): the model works at 1/4 resolution")
    check(self.train_pairs >= self.batch_size, "train_pairs", self.train_pairs, ">= batch_size")
    check(self.eval_pairs >= 1, "eval_pairs", self.eval_pairs, ">= 1")
    check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
    check(self.train_iters >= 1, "train_iters", self.train_iters, ">= 1")
    check(len(self.eval_iters) >= 1 and all(i >= 1 for i in self.eval_iters), "eval_iters",
          self.eval_iters, "positive iteration counts")
    check(0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]")
    check(len(self.arms) >= 1 and all(a in ARMS for a in self.arms), "arms", self.arms,
          f"a non-empty subset of {ARMS}")


SMOKE = StereoConfig(
    model=RAFTStereoConfig(hidden=16, feature_dim=16, encoder_dims=(8, 16), motion_dims=(8, 8),
                           head_dim=16, ss2d=SS2DConfig(16, d_state=4, dt_rank=1,
                                                        scan="sequential")),
    data=StereoPairsConfig(height=32, width=64, base=(2.0, 6.0), foreground=(7.0, 12.0),
                           flat_width=(8, 20), flat_height=(6, 12)),
    train_pairs=16, eval_pairs=4, batch_size=2, lr=2e-3, train_iters=2, eval_iters=(1, 2),
    arms=("ss2d",), kernel_check=True,
    gru=TrainConfig(steps=10, eval_every=0, log_every=1, checkpoint_every=0),
    ss2d=TrainConfig(steps=10, eval_every=0, log_every=1, checkpoint_every=0))
# The CPU reproduction: spec sizes (C_h 48, d_state 8, dt_rank 3); the ConvSS2D arm trains on the
# lax.scan path ("sequential": on 2 CPU cores it ran a training step in 1.0 s against 2.0 s for
# "associative").
SMALL = StereoConfig(
    model=RAFTStereoConfig(ss2d=SS2DConfig(48, d_state=8, dt_rank=3, scan="sequential")))
PAPER = StereoConfig(
    model=RAFTStereoConfig(hidden=128, feature_dim=256, encoder_dims=(64, 128),
                           motion_dims=(64, 64), head_dim=256, corr_levels=4, upsample="convex",
                           hidden_levels=3,
                           ss2d=SS2DConfig(128, d_state=16, dt_rank=8, scan="pallas")),
    data=StereoPairsConfig(height=480, width=640, base=(20.0, 60.0), foreground=(70.0, 120.0),
                           flat_width=(80, 200), flat_height=(60, 120)),
    train_pairs=100_000, eval_pairs=1000, batch_size=8, lr=1e-4, train_iters=22,
    eval_iters=(1, 2, 4, 8, 22, 32),
    gru=TrainConfig(steps=100_000, eval_every=0, log_every=100, checkpoint_every=5000),
    ss2d=TrainConfig(steps=100_000, eval_every=0, log_every=100, checkpoint_every=5000))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
