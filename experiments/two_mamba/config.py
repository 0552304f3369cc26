"""Config and presets of the 2Mamba experiment (arXiv 2602.17363).

The smoke and small presets are our CPU-scale protocol, see experiments/two_mamba/README.md.

Presets:
  smoke: the CI checks (forms agree, kernel gradients, feature map, 100 recall steps with 8 pairs cut
    the 2Mamba loss by >= 30 %), memory and a short decode check.
  small: multi-query associative recall (32 pairs, 1 layer, d_model 64, 4 heads x 16,
    600 steps: our protocol's short-time option) for softmax attention (RoPE), 2Mamba and
    Mamba-2S; memory crossover; decode == parallel at N = 2,048; the character-level LM on
    standard-library sources (2 layers, d_model 64, 4 heads x 16, context 128, batch 8, 600
    steps) for softmax, Mamba-2, Mamba-2S, 2Mamba and 2Mamba-E, 3 seeds each (one program per
    variant).
  paper: the paper's small model shape (hidden 1024, 16 heads x 64, 20 layers, context 2048)
    for a GPU, on the LM task (one seed).
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice
from jaxpapers.nn.mixers import IMPLEMENTATIONS, KINDS
from jaxpapers.nn.scan import REMAT

MAMBA2_LAYOUTS = ("module", "heads")


@dataclasses.dataclass(frozen=True)
class RecallConfig:
  """Multi-query associative recall (MQAR; our CPU protocol).

  Attributes:
    pairs: (key, value) pairs per sequence; keys without replacement from tokens 2-65.
    queries: query keys after the pairs (with replacement from the pairs' keys).
    test_size: held-out sequences (another seed).
  """

  pairs: int = 32
  queries: int = 32
  test_size: int = 256

  def __post_init__(self):
    check(1 <= self.pairs <= 64, "recall.pairs", self.pairs, "in [1, 64] (64 key tokens)")
    check(self.queries >= 1, "recall.queries", self.queries, ">= 1")
    check(self.test_size >= 1, "recall.test_size", self.test_size, ">= 1")


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """Character-level LM on the standard library's top-level modules (our optional LM check).

  Every tenth file (sorted by name) is held out for the test loss.

  Attributes:
    seq_len: context.
    d_model, num_layers, num_heads, head_dim, mlp_ratio: model shape (GELU MLP of width
      `mlp_ratio * d_model`).
    batch_size: sequences per step (per seed).
    seeds: independently seeded models trained at once (`model.SeedEnsemble`), seeds
      `train.seed`, `train.seed + 1`, ...; each reads the training windows in its own order.
    decay_bias: the softplus decay's bias `b_A` (ours, initialised like Mamba's dt bias; the
      authors' layers have none). Mamba-2's dt bias is part of Mamba-2 and always on.
    mamba2_layout: the Mamba-2 mixer as the authors' module builds it ("module": one SSM head
      of `head_dim` with `mamba2_state`-wide B and C, the rest a gated MLP, see
      `jaxpapers.nn.mixers.mamba2_module`) or with our `num_heads` heads ("heads").
    mamba2_state: Mamba-2's `d_state` in the "module" layout (mamba_ssm's default 128).
    lr: peak learning rate.
    warmup_steps: linear warm-up, then cosine to 0 over train.steps.
    train_bytes, test_bytes: corpus bytes read for each split.
    eval_windows: held-out windows in the test loss.
    eval_spread: take them evenly spaced over every held-out file (else the first windows, i.e.
      one or two files, as before issue 16).
    scan_layers: run the layers in one scan (one compiled layer whatever the depth;
      `jaxpapers.nn.scan`); off keeps the list of layers.
    remat: rematerialization of every layer in the backward pass: "none", "full" or "dots".
    train: the LM's training loop (each mixer in `reproduce`; `jaxpapers train two_mamba
      task=lm`).
  """

  seq_len: int = 128
  d_model: int = 64
  num_layers: int = 2
  num_heads: int = 4
  head_dim: int = 16
  mlp_ratio: int = 4
  batch_size: int = 8
  seeds: int = 3
  decay_bias: bool = False
  mamba2_layout: str = "module"
  mamba2_state: int = 128
  lr: float = 3e-3
  warmup_steps: int = 60
  train_bytes: int = 3_000_000
  test_bytes: int = 300_000
  eval_windows: int = 256
  eval_spread: bool = True
  scan_layers: bool = False
  remat: str = "none"
  train: TrainConfig = TrainConfig(steps=600, eval_every=150, log_every=25, checkpoint_every=150,
                                   steps_per_dispatch=25)

  def __post_init__(self):
    check(self.seq_len >= 2, "lm.seq_len", self.seq_len, ">= 2")
    check(self.warmup_steps >= 0, "lm.warmup_steps", self.warmup_steps, ">= 0")
    for name in ("d_model", "num_layers", "num_heads", "head_dim", "mlp_ratio", "batch_size",
                 "seeds", "eval_windows", "mamba2_state"):
      check(getattr(self, name) >= 1, f"lm.{name}", getattr(self, name), ">= 1")
    check_choice("lm.mamba2_layout", self.mamba2_layout, MAMBA2_LAYOUTS)
    check(self.head_dim <= self.d_model, "lm.head_dim", self.head_dim, "<= lm.d_model")
    check(0 < self.lr <= 1, "lm.lr", self.lr, "in (0, 1]")
    check(self.train_bytes >= 10_000, "lm.train_bytes", self.train_bytes, ">= 10000")
    check(self.test_bytes >= 1_000, "lm.test_bytes", self.test_bytes, ">= 1000")
    check_choice("lm.remat", self.remat, REMAT)


@dataclasses.dataclass(frozen=True)
class TwoMambaConfig:
  """A 2Mamba run: model, mixer, task, optimizer.

  Attributes:
    task: "recall" (MQAR) or "lm" (character-level LM) for `jaxpapers train`.
    mixer: mixer kind (`jaxpapers.nn.mixers.KINDS`) for `jaxpapers train`; `reproduce` runs
      several.
    implementation: "xla", "pallas" or "chunked" (see MixerConfig).
    d_model, num_layers, num_heads, head_dim, mlp_ratio: model shape (recall task; the LM task
      takes its own from `lm`).
    lr, warmup_steps, batch_size: the recall task's AdamW (linear warm-up then cosine to 0);
      the LM's are in `lm`.
    weight_decay, clip: AdamW weight decay and gradient clipping of both tasks.
    decode_len: length of the decode == parallel check.
    recall, lm: the two tasks.
    run_lm: whether `reproduce` runs the LM study.
    train: the recall task's training loop (the LM's is `lm.train`; the one training stage
      trains the one `task` chooses).
  """

  task: str = "recall"
  mixer: str = "2mamba"
  implementation: str = "xla"
  d_model: int = 64
  num_layers: int = 1
  num_heads: int = 4
  head_dim: int = 16
  mlp_ratio: int = 4
  lr: float = 3e-3
  warmup_steps: int = 50
  weight_decay: float = 0.01
  clip: float = 1.0
  batch_size: int = 32
  decode_len: int = 2048
  recall: RecallConfig = RecallConfig()
  lm: LMConfig = LMConfig()
  run_lm: bool = True
  train: TrainConfig = TrainConfig(steps=600, eval_every=100, log_every=50, checkpoint_every=200,
                                   steps_per_dispatch=50)
  mesh: MeshConfig = MeshConfig(data=1)

  def __post_init__(self):
    check_choice("task", self.task, ("recall", "lm"))
    check_choice("mixer", self.mixer, KINDS)
    check_choice("implementation", self.implementation, IMPLEMENTATIONS)
    for name in ("d_model", "num_layers", "num_heads", "mlp_ratio", "batch_size"):
      check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
    check(self.head_dim >= 2, "head_dim", self.head_dim, ">= 2")
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
    check(0 <= self.weight_decay <= 10, "weight_decay", self.weight_decay, "in [0, 10]")
    check(self.clip > 0, "clip", self.clip, "> 0")
    check(self.decode_len >= 2, "decode_len", self.decode_len, ">= 2")


SMOKE = TwoMambaConfig(
    recall=RecallConfig(pairs=8, queries=8, test_size=64),
    run_lm=False,
    decode_len=64, lr=5e-3, warmup_steps=20,
    train=TrainConfig(steps=100, eval_every=100, log_every=25, checkpoint_every=50,
                      steps_per_dispatch=25))
SMALL = TwoMambaConfig()
PAPER = TwoMambaConfig(
    task="lm", implementation="pallas",
    lm=LMConfig(seq_len=2048, d_model=1024, num_layers=20, num_heads=16,
                head_dim=64, batch_size=32, seeds=1, lr=1e-4, warmup_steps=10_000,
                train_bytes=200_000_000,
                test_bytes=2_000_000, eval_windows=256, scan_layers=True,
                train=TrainConfig(steps=100_000, eval_every=5_000, log_every=100,
                                  checkpoint_every=5_000)),
    warmup_steps=10_000, weight_decay=0.01,
    train=TrainConfig(steps=100_000, eval_every=5_000, log_every=100, checkpoint_every=5_000),
    mesh=MeshConfig())

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}


def train_field(config: TwoMambaConfig) -> str:
  """The TrainConfig of the task `config.task` chooses: `train` (recall) or `lm.train`."""
  return "lm.train" if config.task == "lm" else "train"
