"""Config and presets of the hardware co-design experiment (arXiv 2602.10377).

Presets:
  smoke: the CI checks (roofline test vectors and unit checks, a toy Pareto space, the fit on a
    known law plus noise, the decode step against the full forward) and two tiny runs of 40
    steps through the shared loop.
  small: the whole pipeline at CPU scale: the roofline claims on the ~24k-candidate design
    space, 16 tiny AFMoE-family models (12 dense: d 32-96, l 1, 2, 4; 4 MoE: d 32, 64, l 2, E 4
    and 8, K 1) trained on the same token budget of a second-order Markov stream (V 64, 400
    steps of 16 x 64 tokens: 410k tokens each, 5x fewer than the spec's 2M, so that the sweep
    aims at about 4-5 minutes on 2 cores (645 CPU-s measured at a load of 13-22); one dispatch of 200 steps between the evaluations at
    0, 200 and 400 steps), the loss law fitted on 80% of
    them and scored on the rest (and the study of why it fails: `law_study`), the co-design
    consistency checks with our fitted law, and the CPU decode-timing calibration.
  paper: the spec's data and token budget (V 256, 2M tokens per model, ~1 h on 2 cores) on the
    same sweep.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice
from jaxpapers.nn.moe import DISPATCHES
from jaxpapers.roofline.devices import DEVICES
from jaxpapers.roofline.latency import PRECISIONS
from jaxpapers.roofline.loss_law import LAWS


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The seeded sparse second-order Markov stream (`jaxpapers.data.markov2`).

  Attributes:
    vocab_size: tokens V.
    branching: successors k of every context (a, b).
    concentration: Dirichlet concentration of each context's k probabilities.
    chain_seed: seed of the chain.
    seq_len: targets per window.
    train_sequences: training windows (one epoch covers steps x batch_size of them).
    eval_sequences: held-out windows (another seed).
    data_seed: seed of the training windows (the held-out ones use data_seed + 1).
  """

  vocab_size: int = 64
  branching: int = 4
  concentration: float = 1.0
  chain_seed: int = 0
  seq_len: int = 64
  train_sequences: int = 6400
  eval_sequences: int = 256
  data_seed: int = 1

  def __post_init__(self):
    check(self.vocab_size >= 2, "data.vocab_size", self.vocab_size, ">= 2")
    check(1 <= self.branching <= self.vocab_size, "data.branching", self.branching,
          f"in [1, data.vocab_size={self.vocab_size}]")
    check(self.concentration > 0, "data.concentration", self.concentration, "> 0")
    check(self.seq_len >= 2, "data.seq_len", self.seq_len, ">= 2")
    check(self.train_sequences >= 1, "data.train_sequences", self.train_sequences, ">= 1")
    check(self.eval_sequences >= 1, "data.eval_sequences", self.eval_sequences, ">= 1")
    for name in ("chain_seed", "data_seed"):
      check(getattr(self, name) >= 0, f"data.{name}", getattr(self, name), ">= 0")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """One tiny LM of the sweep: `jaxpapers.nn.afmoe.AfmoeLM`, dense (experts 1) or MoE.

  Attributes:
    d_model, num_layers: width d and depth l.
    num_experts: routed experts E per layer (1: a dense SwiGLU FFN of width r d in every layer).
    top_k: active experts K.
    ffn_ratio: r (dense width r d; expert width r d / granularity).
    granularity: expert granularity (the spec's 4).
    head_dim: d_h (heads d / d_h, no GQA: the sweep does not vary g).
    dispatch: the MoE dispatch path (`jaxpapers.nn.moe`; all compute the same function).
  """

  d_model: int = 64
  num_layers: int = 2
  num_experts: int = 1
  top_k: int = 1
  ffn_ratio: float = 4.0
  granularity: float = 4.0
  head_dim: int = 16
  dispatch: str = "dense"

  def __post_init__(self):
    check(self.d_model >= 2, "model.d_model", self.d_model, ">= 2")
    check(self.num_layers >= 1, "model.num_layers", self.num_layers, ">= 1")
    check(self.num_experts >= 1, "model.num_experts", self.num_experts, ">= 1")
    check(1 <= self.top_k <= self.num_experts, "model.top_k", self.top_k,
          f"in [1, model.num_experts={self.num_experts}]")
    check(self.ffn_ratio > 0, "model.ffn_ratio", self.ffn_ratio, "> 0")
    check(self.granularity >= 1, "model.granularity", self.granularity, ">= 1")
    check(self.head_dim >= 2 and self.head_dim % 2 == 0 and self.d_model % self.head_dim == 0,
          "model.head_dim", self.head_dim, f"even and a divisor of model.d_model={self.d_model}")
    check(self.expert_width >= 1, "model.granularity", self.granularity,
          "small enough that r d / granularity >= 1")
    check_choice("model.dispatch", self.dispatch, DISPATCHES)

  @property
  def expert_width(self) -> int:
    return round(self.ffn_ratio * self.d_model / self.granularity)

  @property
  def dense_width(self) -> int:
    return round(self.ffn_ratio * self.d_model)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """The tiny models of the loss law and its fit.

  Attributes:
    dense_widths, dense_depths: the dense grid.
    moe_widths, moe_depths, moe_experts, moe_top_k: the MoE grid (K <= E).
    holdout: share of the configurations held out of the fit (scored by R^2).
    holdout_seed: which ones.
    law: the loss law fitted (`jaxpapers.roofline.loss_law.LAWS`).
    huber_delta: the fit's Huber scale, in log-loss units.
  """

  dense_widths: tuple[int, ...] = (32, 48, 64, 96)
  dense_depths: tuple[int, ...] = (1, 2, 4)
  moe_widths: tuple[int, ...] = (32, 64)
  moe_depths: tuple[int, ...] = (2,)
  moe_experts: tuple[int, ...] = (4, 8)
  moe_top_k: tuple[int, ...] = (1,)
  holdout: float = 0.2
  holdout_seed: int = 0
  law: str = "reduced"
  huber_delta: float = 1e-2

  def __post_init__(self):
    for name in ("dense_widths", "dense_depths", "moe_widths", "moe_depths", "moe_experts",
                 "moe_top_k"):
      check(all(v >= 1 for v in getattr(self, name)), f"sweep.{name}", getattr(self, name),
            "positive integers")
    check(bool(self.dense_widths) and bool(self.dense_depths), "sweep.dense_widths", self.dense_widths,
          "non-empty, with non-empty sweep.dense_depths")
    check(0 <= self.holdout < 1, "sweep.holdout", self.holdout, "in [0, 1)")
    check(self.holdout_seed >= 0, "sweep.holdout_seed", self.holdout_seed, ">= 0")
    check_choice("sweep.law", self.law, tuple(LAWS))
    check(self.huber_delta > 0, "sweep.huber_delta", self.huber_delta, "> 0")

  def models(self, base: ModelConfig) -> list[ModelConfig]:
    """Every configuration of the sweep, dense first."""
    out = [dataclasses.replace(base, d_model=d, num_layers=l, num_experts=1, top_k=1)
           for d in self.dense_widths for l in self.dense_depths]
    out += [dataclasses.replace(base, d_model=d, num_layers=l, num_experts=e, top_k=k)
            for d in self.moe_widths for l in self.moe_depths for e in self.moe_experts
            for k in self.moe_top_k if k <= e]
    return out


@dataclasses.dataclass(frozen=True)
class CodesignConfig:
  """The design space, the device and the budgets of the co-design.

  Attributes:
    device: a `jaxpapers.roofline.devices.DEVICES` preset.
    precision: a `jaxpapers.roofline.latency.PRECISIONS` preset.
    prompt: prompt length s of TTFT and of the prefill intensities.
    context: context length c of the frontier's TPOT.
    new_tokens: output tokens of the end-to-end latency.
    vocab: vocabulary of the design space (default Qwen2.5's, the paper's reference model).
    tied: tied embeddings in the design space.
    memory_budget_gb: the weights' budget of the design space (GB, at `precision`).
    latency_budget_ms: the TPOT budget of the iso-latency optimum; 0: Qwen2.5-0.5B's TPOT at
      `context` on the device (the paper compares at Qwen2.5-0.5B's latency).
    toy_candidates: size of the toy Pareto space of the CI check.
  """

  device: str = "agx_orin"
  precision: str = "fp16"
  prompt: int = 512
  context: int = 1024
  new_tokens: int = 128
  vocab: int = 151_936
  tied: bool = True
  memory_budget_gb: float = 4.0
  latency_budget_ms: float = 0.0
  toy_candidates: int = 50

  def __post_init__(self):
    check_choice("codesign.device", self.device, tuple(DEVICES))
    check_choice("codesign.precision", self.precision, tuple(PRECISIONS))
    for name in ("prompt", "context", "new_tokens", "vocab", "toy_candidates"):
      check(getattr(self, name) >= 1, f"codesign.{name}", getattr(self, name), ">= 1")
    check(self.memory_budget_gb > 0, "codesign.memory_budget_gb", self.memory_budget_gb, "> 0")
    check(self.latency_budget_ms >= 0, "codesign.latency_budget_ms", self.latency_budget_ms,
          ">= 0 (0: Qwen2.5-0.5B's TPOT)")


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
  """The CPU decode-timing calibration (our TinyLM's KV-cache decode step, fp32).

  Attributes:
    widths, depths: the timed models (MLP 4 d, heads of 64, vocabulary 256); the first
      `fit_on` fit eta_m and the per-operator overhead, the rest are predicted.
    fit_on: how many of them the fit uses.
    context: tokens already in the KV cache.
    repeats: timed repeats (interleaved across the models; the fastest counts).
    bandwidth_gbs, gflops: the nominal CPU roof the efficiency factors scale.
  """

  widths: tuple[int, ...] = (256, 512, 768)
  depths: tuple[int, ...] = (4, 4, 6)
  fit_on: int = 2
  context: int = 256
  repeats: int = 7
  bandwidth_gbs: float = 20.0
  gflops: float = 100.0

  def __post_init__(self):
    check(len(self.widths) == len(self.depths) and len(self.widths) >= 2,
          "calibration.widths", self.widths, "as many as calibration.depths, at least 2")
    check(all(w % 64 == 0 and w >= 64 for w in self.widths), "calibration.widths", self.widths,
          "multiples of 64")
    check(all(l >= 1 for l in self.depths), "calibration.depths", self.depths, ">= 1 each")
    check(2 <= self.fit_on < len(self.widths), "calibration.fit_on", self.fit_on,
          f"in [2, {len(self.widths) - 1}] (at least one model is predicted)")
    check(self.context >= 1, "calibration.context", self.context, ">= 1")
    check(self.repeats >= 1, "calibration.repeats", self.repeats, ">= 1")
    check(self.bandwidth_gbs > 0 and self.gflops > 0, "calibration.bandwidth_gbs",
          self.bandwidth_gbs, "> 0, with calibration.gflops > 0")


@dataclasses.dataclass(frozen=True)
class HwCodesignConfig:
  """A run of the co-design pipeline.

  Attributes:
    data, model, sweep, codesign, calibration: see their classes (`model` is what
      `jaxpapers train hw_codesign` trains; `reproduce` trains every `sweep` model).
    lr: AdamW peak learning rate (linear warm-up, then cosine to 0 over train.steps).
    warmup_steps: warm-up steps.
    weight_decay: AdamW weight decay.
    batch_size: windows per step.
    balance_loss: weight of the MoE layers' sequence-wise balance loss.
    run_sweep: train the sweep and fit the law (off: the roofline claims only).
    run_calibration: time the decode step on this host.
    train: the shared loop's settings of every tiny run.
  """

  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  sweep: SweepConfig = SweepConfig()
  codesign: CodesignConfig = CodesignConfig()
  calibration: CalibrationConfig = CalibrationConfig()
  lr: float = 3e-3
  warmup_steps: int = 30
  weight_decay: float = 0.1
  batch_size: int = 16
  balance_loss: float = 0.01
  run_sweep: bool = True
  run_calibration: bool = True
  train: TrainConfig = TrainConfig(steps=400, eval_every=200, log_every=200, checkpoint_every=0,
                                   steps_per_dispatch=200)
  mesh: MeshConfig = MeshConfig(data=1)

  def __post_init__(self):
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
    check(0 <= self.weight_decay <= 10, "weight_decay", self.weight_decay, "in [0, 10]")
    check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
    check(self.balance_loss >= 0, "balance_loss", self.balance_loss, ">= 0")


SMALL = HwCodesignConfig()
SMOKE = HwCodesignConfig(
    data=DataConfig(vocab_size=64, seq_len=32, train_sequences=640, eval_sequences=32),
    sweep=SweepConfig(dense_widths=(16,), dense_depths=(1,), moe_widths=(16,), moe_depths=(1,),
                      moe_experts=(4,), moe_top_k=(1,)),
    model=ModelConfig(d_model=16, num_layers=1, head_dim=8),
    run_calibration=False, warmup_steps=5, lr=1e-2,
    train=TrainConfig(steps=40, eval_every=0, log_every=40, checkpoint_every=0,
                      steps_per_dispatch=20))
PAPER = HwCodesignConfig(  # the spec's 2M tokens per model: 490 steps of 32 x 128
    data=DataConfig(vocab_size=256, seq_len=128, train_sequences=15_680),
    train=TrainConfig(steps=490, eval_every=0, log_every=70, checkpoint_every=0,
                      steps_per_dispatch=70),
    batch_size=32)

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
