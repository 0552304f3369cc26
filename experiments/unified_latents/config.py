"""Config and presets of the Unified Latents experiment (Heek et al., arXiv 2602.17270).

The smoke and small presets are our CPU-scale protocol, see experiments/unified_latents/README.md.

Presets:
  smoke: the CI version: tiny MLPs (width 32), 20 joint steps of E, P and D on shapes16, and
    10 base-model steps; the analytic checks of the bitrate bound run beside it.
  small: the reproduction: MLP encoder / prior / decoder (width 256) on shapes16 (16 x 16
    grayscale, 256 dimensions, latent 16), runs R1-R3 (c_lf 1.0, 1.5, 2.1) and the
    stop-gradient ablation R4 (c_lf 1.5), then a stage-2 MLP base model on each of R1-R3.
  paper: the paper's Sec. 5.1 networks (ResNet encoder, ViT prior, UViT decoder, ViT base) on
    512 x 512 images of a prepared TFDS dataset, latent 32 x 32 x 32, for accelerators.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice
from jaxpapers.diffusion.ddim import METHODS
from jaxpapers.diffusion.unified_latents import SIGN_CONVENTIONS
from jaxpapers.nn.ul_models import ULConfig

SOURCES = ("shapes16", "digits", "tfds")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Images in [-1, 1].

  Attributes:
    source: "shapes16" (procedural 16 x 16 shapes), "digits" (scikit-learn's 8 x 8 digits) or
      "tfds" (a prepared TFDS image dataset, resized and center-cropped to model.image_shape).
    train_examples: training images (shapes16; digits and tfds use their train split).
    eval_examples: held-out images (shapes16: the next indices of the same stream; digits: the
      test split, at most 359; tfds: the first of `tfds_eval_split`).
    tfds_name, tfds_split, tfds_eval_split, tfds_data_dir: the TFDS dataset.
  """

  source: str = "shapes16"
  train_examples: int = 20_000
  eval_examples: int = 2_000
  tfds_name: str = "imagenet2012"
  tfds_split: str = "train"
  tfds_eval_split: str = "validation"
  tfds_data_dir: str = ""

  def __post_init__(self):
    check_choice("data.source", self.source, SOURCES)
    check(self.train_examples >= 1, "data.train_examples", self.train_examples, ">= 1")
    check(self.eval_examples >= 2, "data.eval_examples", self.eval_examples, ">= 2")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Held-out observables.

  Attributes:
    bits_examples: images of the latent-bitrate estimate.
    bits_times: t draws per image (stratified) of the estimate.
    psnr_examples: images reconstructed for PSNR.
    sampler: "ddim" or "euler" (the decoder's and the base model's ODE).
    sampler_steps: steps of each ODE.
    base_samples: images generated through the base model for FD-PCA.
    fd_components: PCA components of the Frechet distance.
    collapse_seeds: extra seeds of R1 and R2 for the collapse calibration (empty: none).
  """

  bits_examples: int = 2_000
  bits_times: int = 8
  psnr_examples: int = 256
  sampler: str = "ddim"
  sampler_steps: int = 50
  base_samples: int = 512
  fd_components: int = 12
  collapse_seeds: tuple[int, ...] = ()

  def __post_init__(self):
    for name in ("bits_examples", "bits_times", "psnr_examples", "sampler_steps"):
      check(getattr(self, name) >= 1, f"eval.{name}", getattr(self, name), ">= 1")
    check_choice("eval.sampler", self.sampler, METHODS)
    check(self.fd_components >= 1, "eval.fd_components", self.fd_components, ">= 1")
    check(self.base_samples > self.fd_components, "eval.base_samples", self.base_samples,
          f"> eval.fd_components = {self.fd_components}")
    check(all(s >= 0 for s in self.collapse_seeds), "eval.collapse_seeds", self.collapse_seeds,
          "seeds >= 0")


@dataclasses.dataclass(frozen=True)
class UnifiedLatentsConfig:
  """A Unified Latents run: stage 1 (E, P, D jointly) and stage 2 (the base model).

  Attributes:
    model: the networks (with data.source shapes16 or digits, model.image_shape is the
      source's: 16 x 16 x 1 or 8 x 8 x 1).
    data: the images.
    eval: held-out observables.
    lambda_0: the encoder's fixed output log-SNR = the prior's largest log-SNR (paper: 5).
    prior_lambda_min: lambda_z(1) (linear schedule lambda_z(t) = lambda_0 - (lambda_0 -
      prior_lambda_min) t; also the base model's noisiest level).
    decoder_lambda_max, decoder_lambda_min: the decoder's linear log-SNR range.
    loss_factor: c_lf, the decoder's loss factor (paper default 1.5).
    bias: b of the decoder's sigmoid weight.
    weight_convention: "discount_low_noise" (w = sigmoid(b - lambda) on the epsilon form) or
      "discount_high_noise" (w = sigmoid(lambda - b)).
    prior_gradient: let the prior loss's gradient reach the encoder (False: the paper's
      "no prior gradient" ablation, stop-gradient on z_clean in the prior branch).
    antithetic: antithetic stratified training times (else stratified only).
    base_bias: b of the base model's sigmoid weight.
    rate_loss_factors: c_lf of runs R1, R2, R3 (the reproduction's sweep).
    ablation_loss_factor: c_lf of the stop-gradient run R4.
    batch_size: global batch of both stages.
    lr: peak Adam learning rate of stage 1 (cosine decay to 0).
    base_lr: the same for stage 2.
    warmup_steps: linear warm-up of both stages.
    grad_clip: global gradient-norm clip.
    stage1: training loop of stage `stage1` (E, P, D jointly).
    base: training loop of stage `base` (the base model on the frozen encoder's latents).
    mesh: devices.
  """

  model: ULConfig = ULConfig()
  data: DataConfig = DataConfig()
  eval: EvalConfig = EvalConfig()
  lambda_0: float = 5.0
  prior_lambda_min: float = -10.0
  decoder_lambda_max: float = 10.0
  decoder_lambda_min: float = -10.0
  loss_factor: float = 1.5
  bias: float = 0.0
  weight_convention: str = "discount_low_noise"
  prior_gradient: bool = True
  antithetic: bool = True
  base_bias: float = -2.0
  rate_loss_factors: tuple[float, ...] = (1.0, 1.5, 2.1)
  ablation_loss_factor: float = 1.5
  batch_size: int = 128
  lr: float = 1e-3
  base_lr: float = 1e-3
  warmup_steps: int = 0
  grad_clip: float = 1.0
  stage1: TrainConfig = TrainConfig(steps=1500, eval_every=0, log_every=50, checkpoint_every=500,
                                    steps_per_dispatch=50)
  base: TrainConfig = TrainConfig(steps=1000, eval_every=0, log_every=50, checkpoint_every=500,
                                  steps_per_dispatch=50)
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    check(self.prior_lambda_min < self.lambda_0, "prior_lambda_min", self.prior_lambda_min,
          f"< lambda_0 = {self.lambda_0}")
    check(self.decoder_lambda_min < self.decoder_lambda_max, "decoder_lambda_min",
          self.decoder_lambda_min, f"< decoder_lambda_max = {self.decoder_lambda_max}")
    check(self.loss_factor > 0, "loss_factor", self.loss_factor, "> 0")
    check_choice("weight_convention", self.weight_convention, SIGN_CONVENTIONS)
    check(len(self.rate_loss_factors) == 3 and all(c > 0 for c in self.rate_loss_factors),
          "rate_loss_factors", self.rate_loss_factors, "three positive loss factors (R1, R2, R3)")
    check(self.ablation_loss_factor > 0, "ablation_loss_factor", self.ablation_loss_factor, "> 0")
    check(self.batch_size >= 2, "batch_size", self.batch_size, ">= 2")
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(0 < self.base_lr <= 1, "base_lr", self.base_lr, "in (0, 1]")
    check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
    check(self.grad_clip > 0, "grad_clip", self.grad_clip, "> 0")
    # The generated sources fix the image shape (model.image_shape follows them, so that
    # `data.source=digits` alone switches the data).
    shapes = {"shapes16": (16, 16, 1), "digits": (8, 8, 1)}
    if self.data.source in shapes and self.model.image_shape != shapes[self.data.source]:
      object.__setattr__(self, "model", dataclasses.replace(
          self.model, image_shape=shapes[self.data.source]))
    if self.data.source == "digits":
      check(self.data.eval_examples <= 359, "data.eval_examples", self.data.eval_examples,
            "<= 359 (the digits test split)")


SMOKE = UnifiedLatentsConfig(
    model=ULConfig(hidden=32, base_hidden=32, embedding_dim=16),
    data=DataConfig(train_examples=512, eval_examples=256),
    eval=EvalConfig(bits_examples=256, bits_times=2, psnr_examples=32, sampler_steps=10,
                    base_samples=64),
    batch_size=32, lr=3e-3,
    stage1=TrainConfig(steps=20, eval_every=0, log_every=1, checkpoint_every=10),
    base=TrainConfig(steps=10, eval_every=0, log_every=1, checkpoint_every=10))
SMALL = UnifiedLatentsConfig()
PAPER = UnifiedLatentsConfig(
    model=ULConfig(architecture="paper", image_shape=(512, 512, 3)),
    data=DataConfig(source="tfds", eval_examples=10_000),
    eval=EvalConfig(bits_examples=10_000, psnr_examples=1_000, base_samples=10_000),
    batch_size=256, lr=1e-4, base_lr=1e-4, warmup_steps=1_000,
    stage1=TrainConfig(steps=300_000, eval_every=0, log_every=100, checkpoint_every=5_000),
    base=TrainConfig(steps=300_000, eval_every=0, log_every=100, checkpoint_every=5_000),
    mesh=MeshConfig(data=-1, axis_types="auto"))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
