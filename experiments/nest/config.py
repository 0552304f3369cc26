"""Config and presets of the NeST experiment (arXiv 2602.16835).

Our CPU-scale protocol (experiments/nest/README.md): a weakly aligned FFN-only toy transformer on
the synthetic jailbreak world of `jaxpapers.safety.toy`, repaired by NeST (probe-selected,
clustered FFN neurons with cluster-shared updates, trained on vanilla harmful prompts only)
against full fine-tuning, LoRA, circuit breakers and a random-neuron control.

Presets:
  smoke: the CI version: seed 0, alpha 0.7, base 1,000 steps, NeST 150 steps, no baselines.
  small: the reproduction: seeds 0-2, alpha calibrated per seed, base 1,500 steps, every
    method 300 steps, every baseline and variant.
  paper: the same protocol at a larger toy (wider FFNs, more layers, more prompts); the paper's
    own scale is 1-27B LLMs with real jailbreak suites, which we do not have.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice
from jaxpapers.safety import TAPS, VARIANTS

METHODS = ("nest", "random", "full", "lora", "circuit_breakers")
CB_REPRESENTATIONS = ("residual", "update")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The synthetic world's sizes (the topic vectors and prompts are drawn from the base seed).

  Attributes:
    dim: token width D.
    length: tokens per prompt L.
    n_benign: benign prompts in the base training set.
    n_template: benign + template prompts in the base training set.
    n_harmful: harmful prompts in the base training set.
    comply: fraction of those labelled with a random answer ("weak alignment").
    probe_prompts: harmful and as many benign prompts for the probe.
    repair_prompts: vanilla harmful (-> REFUSE) and as many benign prompts (-> the base model's
      own answers) of the repair set.
    eval_prompts: held-out prompts per evaluation set (jailbreak, benign, benign + template).
    calibration_prompts: jailbreak prompts on which alpha is calibrated (a separate stream).
  """

  dim: int = 32
  length: int = 8
  n_benign: int = 4000
  n_template: int = 1000
  n_harmful: int = 2000
  comply: float = 0.35
  probe_prompts: int = 500
  repair_prompts: int = 500
  eval_prompts: int = 1000
  calibration_prompts: int = 1000

  def __post_init__(self):
    for name in ("dim", "n_benign", "n_template", "n_harmful", "probe_prompts", "repair_prompts",
                 "eval_prompts", "calibration_prompts"):
      check(getattr(self, name) >= 1, f"data.{name}", getattr(self, name), ">= 1")
    check(self.length >= 6, "data.length", self.length, ">= 6 (3 harmful + 3 template tokens)")
    check(0 <= self.comply < 1, "data.comply", self.comply, "in [0, 1)")


@dataclasses.dataclass(frozen=True)
class NestConfig:
  """A NeST run: base model, attack calibration, detection, repair methods, evaluation.

  Attributes:
    data: the synthetic world's sizes.
    hidden: FFN width f of each layer.
    num_layers: FFN layers.
    down_init_scale: scale of the down projections' initialization.
    base_lr: Adam step size of the base model.
    batch_size: batch of every training run.
    alphas: attack strengths tried, strongest last; the largest with base jailbreak ASR >=
      target_base_asr on the calibration prompts is used (one entry: fixed alpha).
    target_base_asr: the calibration's target.
    tap: where neurons are probed: "hidden" (after the ReLU) or "up" (before); the gated
      "gate" tap applies to gated FFNs only.
    probe_steps: full-batch Adam steps of each layer's probe.
    probe_lr: their step size.
    probe_weight_decay: coupled L2 coefficient of the probe.
    standardize: z-score the pooled features before the probe.
    z_threshold: select `|z| > z_threshold` ...
    positive_only: ... and `w > 0`.
    max_k: largest k of the silhouette search.
    min_split: layers with fewer selected neurons keep one cluster.
    method: what the `repair` stage trains: "nest", "random" (same cluster sizes on random
      neurons), "full" (all weights), "lora" (rank `lora_rank` on every up/down projection),
      "circuit_breakers" (representation rerouting with LoRA).
    variant: NeST's update: "in_out", "in_only" or "out_only".
    per_neuron: one update per selected neuron (no sharing).
    nest_lr: Adam step size of NeST and of the random control.
    full_lr: Adam step size of full fine-tuning.
    lora_rank: rank of the LoRA baseline.
    lora_lr: Adam step size of LoRA and of circuit breakers.
    cb_rank: LoRA rank of circuit breakers.
    cb_alpha: alpha of the rerouting / retain schedule.
    cb_representation: what circuit breakers reroute at each layer: "residual" (the residual
      stream after the layer, the paper's hidden states) or "update" (what the layer writes into
      it: output minus input; in the toy the residual stream keeps the prompt's own tokens,
      which no adapter can turn away).
    seeds: base seeds of the reproduction (world, base model and repairs).
    baselines: run full FT, LoRA (r 1, 4), circuit breakers and the random control.
    variants: run in_only, out_only and per-neuron NeST.
    base: training loop of the base model (its seed draws the world too).
    repair: training loop of the repair stage.
    mesh: devices.
  """

  data: DataConfig = DataConfig()
  hidden: int = 64
  num_layers: int = 2
  down_init_scale: float = 0.5
  base_lr: float = 1e-3
  batch_size: int = 128
  alphas: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
  target_base_asr: float = 0.4
  tap: str = "hidden"
  probe_steps: int = 800
  probe_lr: float = 1e-2
  probe_weight_decay: float = 1e-3
  standardize: bool = True
  z_threshold: float = 2.0
  positive_only: bool = True
  max_k: int = 10
  min_split: int = 2
  method: str = "nest"
  variant: str = "in_out"
  per_neuron: bool = False
  nest_lr: float = 1e-2
  full_lr: float = 1e-3
  lora_rank: int = 1
  lora_lr: float = 1e-2
  cb_rank: int = 4
  cb_alpha: float = 10.0
  cb_representation: str = "residual"
  seeds: tuple[int, ...] = (0, 1, 2)
  baselines: bool = True
  variants: bool = True
  base: TrainConfig = TrainConfig(steps=1500, eval_every=0, log_every=100, checkpoint_every=500,
                                  steps_per_dispatch=100)
  repair: TrainConfig = TrainConfig(steps=300, eval_every=0, log_every=50, checkpoint_every=300,
                                    steps_per_dispatch=50)
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    for name in ("hidden", "num_layers", "batch_size", "probe_steps", "max_k", "lora_rank", "cb_rank"):
      check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
    check(self.batch_size <= 2 * self.data.repair_prompts, "batch_size", self.batch_size,
          f"<= 2 * data.repair_prompts = {2 * self.data.repair_prompts}")
    check(self.down_init_scale > 0, "down_init_scale", self.down_init_scale, "> 0")
    for name in ("base_lr", "probe_lr", "nest_lr", "full_lr", "lora_lr"):
      check(0 < getattr(self, name) <= 1, name, getattr(self, name), "in (0, 1]")
    check(len(self.alphas) >= 1 and all(0 < a <= 2 for a in self.alphas), "alphas", self.alphas,
          "one or more strengths in (0, 2]")
    check(0 < self.target_base_asr <= 1, "target_base_asr", self.target_base_asr, "in (0, 1]")
    check_choice("tap", self.tap, [t for t in TAPS if t != "gate"])
    check(self.probe_weight_decay >= 0, "probe_weight_decay", self.probe_weight_decay, ">= 0")
    check(self.z_threshold >= 0, "z_threshold", self.z_threshold, ">= 0")
    check(self.min_split >= 1, "min_split", self.min_split, ">= 1")
    check_choice("method", self.method, METHODS)
    check_choice("variant", self.variant, VARIANTS)
    check(self.cb_alpha > 0, "cb_alpha", self.cb_alpha, "> 0")
    check_choice("cb_representation", self.cb_representation, CB_REPRESENTATIONS)
    check(len(self.seeds) >= 1 and all(s >= 0 for s in self.seeds), "seeds", self.seeds,
          "one or more seeds >= 0")


SMOKE = NestConfig(
    alphas=(0.7,), seeds=(0,), baselines=False, variants=False,
    base=TrainConfig(steps=1000, eval_every=0, log_every=100, checkpoint_every=500,
                     steps_per_dispatch=250),
    repair=TrainConfig(steps=150, eval_every=0, log_every=50, checkpoint_every=150,
                       steps_per_dispatch=75))
SMALL = NestConfig()
PAPER = NestConfig(
    data=DataConfig(dim=64, length=16, n_benign=16_000, n_template=4000, n_harmful=8000,
                    probe_prompts=2000, repair_prompts=2000, eval_prompts=4000),
    hidden=256, num_layers=4, seeds=(0, 1, 2, 3, 4),
    base=TrainConfig(steps=6000, eval_every=0, log_every=200, checkpoint_every=2000),
    repair=TrainConfig(steps=1000, eval_every=0, log_every=100, checkpoint_every=1000))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
