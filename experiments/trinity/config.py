"""Config and presets of the Trinity experiment (arXiv 2602.17004).

The smoke and small presets are our CPU-scale protocol, see experiments/trinity/README.md.

Presets:
  smoke: a 2-layer AFMoE on Markov documents, a few dozen steps (the test suite's run).
  small: our tiny MoE LM (4 layers, d 64, 16 routed experts top-2 + 1 shared, window 32,
    seq 128) on 8-domain Markov documents through RSDB; the reproduction of `jaxpapers reproduce`.
    Smoke and small dispatch the experts in blocks (`model.dispatch=blocked`, the fastest path
    on CPU: `jaxpapers bench trinity`; `model.dispatch=dense` computes the same function).
    5 optimizer steps per jitted call (`train.steps_per_dispatch`, one per logged record: the
    same records as one step per call).
  paper: an AFMoE in the shape of the HF AfmoeConfig template (Trinity Mini/Nano class) for a GPU,
    its 7 groups of 4 MoE layers (layers 4-31) in one scan (`model.scan_layers`), each layer
    rematerialized (`model.remat=full`, MaxText's default), expert-parallel dispatch (the
    ragged path when `mesh.expert=1`).

Every preset trains with the report's recipe: SMEBU (or the sign rule) plus the sequence-wise
balance loss (alpha 1e-4) and the router z-loss (1e-4, then 1e-6 from mid-run).
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice
from jaxpapers.nn.afmoe import AfmoeConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Documents and the packing loader.

  Attributes:
    corpus: "markov" (8-domain Markov documents) or "stdlib" (Python standard-library sources,
      byte level).
    loader: "rsdb" (random sequential document buffer) or "sequential" packing.
    buffer_size: RSDB user buffer (capacity is twice this).
    length_mean, length_sigma, max_len: log-normal document lengths (Markov corpus).
    eval_batches: held-out batches (documents of another seed) for the eval loss.
  """

  corpus: str = "markov"
  loader: str = "rsdb"
  buffer_size: int = 64
  length_mean: float = 5.5
  length_sigma: float = 1.0
  max_len: int = 8_192
  eval_batches: int = 4

  def __post_init__(self):
    check_choice("data.corpus", self.corpus, ("markov", "stdlib"))
    check_choice("data.loader", self.loader, ("rsdb", "sequential"))
    check(self.buffer_size >= 1, "data.buffer_size", self.buffer_size, ">= 1")
    check(self.length_sigma >= 0, "data.length_sigma", self.length_sigma, ">= 0")
    check(self.max_len >= 16, "data.max_len", self.max_len, ">= 16")
    check(self.eval_batches >= 1, "data.eval_batches", self.eval_batches, ">= 1")


@dataclasses.dataclass(frozen=True)
class TrinityConfig:
  """A tiny Trinity run: AFMoE model, bias balancing, optimizer, data.

  Attributes:
    balancing: "smebu", "sign" (centered, DeepSeek-V3) or "none".
    balance_lr: lambda of SMEBU / gamma of the sign rule.
    balance_momentum, balance_kappa: SMEBU's beta and kappa.
    balance_loss: alpha of the sequence-wise balance loss (DeepSeek-V3's form), summed over the
      MoE layers; 1e-4, the report's Trinity Large pretraining value (Nano and Mini also use
      it). 0 turns it off.
    z_loss: coefficient of the router z-loss (`mean_t logsumexp(router logits_t)^2`, summed
      over the MoE layers) before `z_loss_switch`; 1e-4, the report's intended value.
    z_loss_late: its coefficient from `z_loss_switch` on; 1e-6, the value the report settled on
      mid-run after larger ones destabilised training. (The report introduced the z-loss only
      at that mid-run change: `z_loss=0` gives that reading.)
    z_loss_switch: fraction of `train.steps` at which `z_loss_late` takes over (the step
      `round(z_loss_switch * train.steps)` is the first with it).
    optimizer: "adamw" or "muon" (Muon for hidden and expert matrices, AdamW elsewhere).
    lr: peak learning rate (Muon's when optimizer = muon).
    adam_lr: AdamW's learning rate inside the Muon split (default: lr).
    weight_decay: decoupled weight decay.
    warmup_steps: linear warm-up, then cosine decay to 0.1 x peak (Trinity's schedule shape).
    batch_size, seq_len: global batch of packed sequences.
  """

  model: AfmoeConfig = AfmoeConfig(dispatch="blocked")
  data: DataConfig = DataConfig()
  balancing: str = "smebu"
  balance_lr: float = 5e-3
  balance_momentum: float = 0.5
  balance_kappa: float = 2.0
  balance_loss: float = 1e-4
  z_loss: float = 1e-4
  z_loss_late: float = 1e-6
  z_loss_switch: float = 0.5
  optimizer: str = "adamw"
  lr: float = 3e-3
  adam_lr: float | None = None
  weight_decay: float = 0.0
  warmup_steps: int = 20
  batch_size: int = 16
  seq_len: int = 128
  train: TrainConfig = TrainConfig(steps=300, eval_every=25, log_every=5, checkpoint_every=100,
                                   steps_per_dispatch=5)
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    check_choice("balancing", self.balancing, ("smebu", "sign", "none"))
    check(0 <= self.balance_lr <= 1, "balance_lr", self.balance_lr, "in [0, 1]")
    check(0 <= self.balance_momentum < 1, "balance_momentum", self.balance_momentum, "in [0, 1)")
    check(self.balance_kappa > 0, "balance_kappa", self.balance_kappa, "> 0")
    for name in ("balance_loss", "z_loss", "z_loss_late"):
      check(0 <= getattr(self, name) <= 1, name, getattr(self, name), "in [0, 1]")
    check(0 <= self.z_loss_switch <= 1, "z_loss_switch", self.z_loss_switch, "in [0, 1]")
    check_choice("optimizer", self.optimizer, ("adamw", "muon"))
    check(0 < self.lr <= 10, "lr", self.lr, "in (0, 10]")
    check(self.adam_lr is None or 0 < self.adam_lr <= 10, "adam_lr", self.adam_lr, "in (0, 10] or none")
    check(0 <= self.weight_decay <= 10, "weight_decay", self.weight_decay, "in [0, 10]")
    check(0 <= self.warmup_steps, "warmup_steps", self.warmup_steps, ">= 0")
    check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
    check(self.seq_len >= 2, "seq_len", self.seq_len, ">= 2")


SMOKE = TrinityConfig(
    model=AfmoeConfig(num_layers=2, num_dense_layers=1, global_every=2, d_model=32, num_heads=2,
                      num_kv_heads=1, dense_width=64, num_experts=8, expert_width=32, window=16,
                      dispatch="blocked"),
    data=DataConfig(buffer_size=16, eval_batches=2),
    batch_size=8, seq_len=64,
    train=TrainConfig(steps=60, eval_every=30, log_every=1, checkpoint_every=30))
SMALL = TrinityConfig()
PAPER = TrinityConfig(
    model=AfmoeConfig(vocab_size=256, d_model=2048, num_layers=32, num_dense_layers=1,
                      num_heads=16, num_kv_heads=4, head_dim=128, dense_width=6144,
                      num_experts=64, top_k=6, expert_width=1408, num_shared=2, window=1024,
                      dispatch="expert_parallel", scan_layers=True, remat="full"),
    data=DataConfig(corpus="stdlib", buffer_size=4096, eval_batches=8),
    balancing="smebu", balance_lr=5e-4, optimizer="muon", lr=8e-4, adam_lr=2e-4,
    weight_decay=0.1, warmup_steps=2000, batch_size=256, seq_len=2048,
    train=TrainConfig(steps=50_000, eval_every=1000, log_every=50, checkpoint_every=1000),
    mesh=MeshConfig(fsdp=8, expert=1))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
