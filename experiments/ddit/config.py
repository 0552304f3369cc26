"""Config and presets of the DDiT experiment (arXiv 2602.16968).

The smoke and small presets are our CPU-scale protocol (see experiments/ddit/README.md):
a DiT teacher trained with flow matching on procedural 16 x 16 `shapes16` images at patch 2,
DDiT's coarse patch 4 distilled from it (LoRA, PI-resized embed, R_phi), then Euler sampling
with the third-difference scheduler against fixed schedules.

Presets:
  smoke: the CI version: a width-16 depth-1 DiT, 20 teacher and 10 distillation steps, unit
    checks of the scheduler, the PI-resize and the FLOP counter.
  small: the reproduction: width 48, depth 4, 4 heads; teacher and adapters; 384 samples of
    32 steps per method.
  paper: the paper's structure (patch sizes p, 2p, 4p; LoRA rank 32; 50 steps; tau 0.001 is
    FLUX's and is recalibrated here) on a larger DiT, for an accelerator.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice
from jaxpapers.nn.dit import DiTConfig
from jaxpapers.nn.multipatch_dit import MultiPatchConfig

SOURCES = ("shapes16", "digits", "tfds")
OPTIMIZERS = ("prodigy", "adam")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Training and evaluation images.

  Attributes:
    source: "shapes16" (procedural, an infinite stream), "digits" (scikit-learn's 8 x 8 digits,
      up-sampled to `size`, class-conditional) or "tfds" (a prepared TFDS image dataset).
    size: image side (the model's input is size x size).
    seed: seed of the training stream.
    tfds_name, tfds_split, tfds_data_dir: the TFDS dataset (source "tfds"); its images must be
      size x size with the model's channels.
  """

  source: str = "shapes16"
  size: int = 16
  seed: int = 0
  tfds_name: str = ""
  tfds_split: str = "train"
  tfds_data_dir: str = ""

  def __post_init__(self):
    check_choice("data.source", self.source, SOURCES)
    check(self.size >= 4, "data.size", self.size, ">= 4")
    check(self.seed >= 0, "data.seed", self.seed, ">= 0")
    check(self.source != "tfds" or bool(self.tfds_name), "data.tfds_name", self.tfds_name,
          "a TFDS dataset name when data.source=tfds")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """The sampling study (our CPU protocol).

  Attributes:
    steps: Euler steps T.
    samples: samples per method (same noise seeds for every method).
    real: real images the PCA of the Frechet distance is fitted on.
    real_reference: held-out real images the samples are compared with.
    rho: the scheduler's percentile (paper: 0.4).
    tau: the scheduler's threshold; 0: calibrate it on `calibration_samples` extra seeds.
    calibration: "closed_loop": tau* is found by bisection so that DDiT itself takes
      `calibration_percentile` % coarse steps among the eligible ones; "base" (our protocol's
      first rule): tau* = the `calibration_percentile`-th percentile of sigma^{(rho)} along base
      trajectories, which ignores that a coarse step raises Delta^3 on the next steps.
    calibration_samples: seeds of the calibration trajectories.
    calibration_percentile: see `calibration`.
    bisection_steps: steps of the closed-loop bisection.
    tau_factors: the tau sweep, as multiples of tau*.
    warmup: first steps at the base size.
    per_channel: per-channel patch std (the LTX-2 port's variant) instead of over all values.
    spread_seeds: extra noise seed sets for the spread of FD(all-coarse) - FD(base).
    teacache: TeaCache threshold ell alone (paper, FLUX: 0.6).
    teacache_with_ddit: ell combined with DDiT (paper, FLUX: 0.4).
    with_teacache: run the two TeaCache methods.
    seed: noise seed of the main sample set.
  """

  steps: int = 32
  samples: int = 384
  real: int = 2000
  real_reference: int = 384
  rho: float = 0.4
  tau: float = 0.0
  calibration: str = "closed_loop"
  calibration_samples: int = 32
  calibration_percentile: float = 60.0
  bisection_steps: int = 10
  tau_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
  warmup: int = 3
  per_channel: bool = False
  spread_seeds: int = 2
  teacache: float = 0.6
  teacache_with_ddit: float = 0.4
  with_teacache: bool = True
  seed: int = 100

  def __post_init__(self):
    check(self.steps >= 5, "sampling.steps", self.steps, ">= 5")
    check(self.samples >= 16, "sampling.samples", self.samples, ">= 16")
    check(self.real > 12 and self.real_reference >= 16, "sampling.real", self.real,
          "> 12 (PCA components), with real_reference >= 16")
    check(0 <= self.rho <= 1, "sampling.rho", self.rho, "in [0, 1]")
    check(self.tau >= 0, "sampling.tau", self.tau, ">= 0 (0: calibrate)")
    check_choice("sampling.calibration", self.calibration, ("closed_loop", "base"))
    check(self.calibration_samples >= 1, "sampling.calibration_samples",
          self.calibration_samples, ">= 1")
    check(self.bisection_steps >= 1, "sampling.bisection_steps", self.bisection_steps, ">= 1")
    check(0 < self.calibration_percentile < 100, "sampling.calibration_percentile",
          self.calibration_percentile, "in (0, 100)")
    check(len(self.tau_factors) >= 2 and all(f > 0 for f in self.tau_factors)
          and 1.0 in self.tau_factors, "sampling.tau_factors", self.tau_factors,
          "two or more positive factors including 1.0")
    check(3 <= self.warmup < self.steps, "sampling.warmup", self.warmup,
          f">= 3 (Delta^3 needs four latents) and < steps={self.steps}")
    check(self.spread_seeds >= 1, "sampling.spread_seeds", self.spread_seeds, ">= 1")
    check(self.teacache > 0 and self.teacache_with_ddit > 0, "sampling.teacache",
          self.teacache, "> 0 (and teacache_with_ddit > 0)")


@dataclasses.dataclass(frozen=True)
class DDiTConfig:
  """A DDiT run: teacher, adapters, sampling study.

  Attributes:
    model: the multi-patch DiT (its `dit` is the teacher).
    data: training and evaluation images.
    sampling: the sampling study.
    batch_size: global batch of both stages.
    lr: the teacher's peak learning rate (Adam, linear warm-up, then constant).
    warmup_steps: the teacher's warm-up.
    grad_clip: global-norm clip of the teacher's gradients.
    distill_optimizer: "prodigy" (the paper's T2I choice, lr 1.0) or "adam".
    distill_lr: the distillation learning rate (prodigy: 1.0; adam: e.g. 1e-3).
    teacher: training loop of stage `teacher` (flow matching, t ~ U(0, 1)).
    adapters: training loop of stage `adapters` (distillation of the coarse sizes from the
      frozen base path; only the new parameters are trained).
    checks: run the CI unit checks as claims (smoke).
    mesh: devices.
  """

  model: MultiPatchConfig = MultiPatchConfig(
      dit=DiTConfig(input_shape=(16, 16), channels=1, patch=(2, 2), width=48, depth=4,
                    num_heads=4, num_classes=1, frequency_dim=64),
      scales=(2,), lora_rank=8)
  data: DataConfig = DataConfig()
  sampling: SamplingConfig = SamplingConfig()
  batch_size: int = 32
  lr: float = 3e-4
  warmup_steps: int = 100
  grad_clip: float = 1.0
  distill_optimizer: str = "prodigy"
  distill_lr: float = 1.0
  teacher: TrainConfig = TrainConfig(steps=800, eval_every=0, log_every=50, checkpoint_every=400,
                                     steps_per_dispatch=10)
  adapters: TrainConfig = TrainConfig(steps=300, eval_every=0, log_every=25,
                                      checkpoint_every=150, steps_per_dispatch=10)
  checks: bool = False
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    d = self.model.dit
    check(d.input_shape == (self.data.size, self.data.size), "model.dit.input_shape",
          d.input_shape, f"(data.size, data.size) = {(self.data.size, self.data.size)}")
    if self.data.source == "shapes16":
      check(self.data.size == 16 and d.channels == 1, "data.size", self.data.size,
            "16 with model.dit.channels=1 for shapes16")
    if self.data.source == "digits":
      check(d.num_classes >= 10 and d.channels == 1 and self.data.size % 8 == 0,
            "model.dit.num_classes", d.num_classes,
            ">= 10 with channels=1 and data.size a multiple of 8 for digits")
    check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
    check(self.grad_clip > 0, "grad_clip", self.grad_clip, "> 0")
    check_choice("distill_optimizer", self.distill_optimizer, OPTIMIZERS)
    check(0 < self.distill_lr <= 10, "distill_lr", self.distill_lr, "in (0, 10]")


SMOKE = DDiTConfig(
    model=MultiPatchConfig(
        dit=DiTConfig(input_shape=(16, 16), channels=1, patch=(2, 2), width=16, depth=1,
                      num_heads=2, num_classes=1, frequency_dim=16),
        scales=(2,), lora_rank=4),
    sampling=SamplingConfig(steps=8, samples=16, real=200, real_reference=32,
                            calibration_samples=8, bisection_steps=3, spread_seeds=1,
                            with_teacache=False),
    batch_size=16, warmup_steps=5,
    teacher=TrainConfig(steps=20, eval_every=0, log_every=10, checkpoint_every=20,
                        steps_per_dispatch=10),
    adapters=TrainConfig(steps=10, eval_every=0, log_every=1, checkpoint_every=10),
    checks=True)
SMALL = DDiTConfig()
PAPER = DDiTConfig(
    model=MultiPatchConfig(
        dit=DiTConfig(input_shape=(64, 64), channels=4, patch=(2, 2), width=384, depth=12,
                      num_heads=6, num_classes=1, frequency_dim=256),
        scales=(2, 4), lora_rank=32),
    data=DataConfig(source="tfds", size=64, tfds_name="my_latents"),
    sampling=SamplingConfig(steps=50, samples=2048, real=10_000, real_reference=2048),
    batch_size=256, lr=1e-4, warmup_steps=1000,
    teacher=TrainConfig(steps=100_000, eval_every=0, log_every=100, checkpoint_every=5000),
    adapters=TrainConfig(steps=5000, eval_every=0, log_every=100, checkpoint_every=1000))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
