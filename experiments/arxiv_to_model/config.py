"""Config and presets of the ArXiv-to-Model experiment (Gupta, arXiv 2602.17288).

The protocol (experiments/arxiv_to_model/README.md): the LaTeX pipeline on a seeded synthetic
arXiv with injected defects (exact counters) and on real TeX sources (Debian's
texlive-science-doc), the paper's digit- and LaTeX-aware tokenizer beside a plain byte-level
BPE, and a LLaMA-style LM trained on the pipeline's output.

Presets:
  smoke: the CI version: a 50-record synthetic run with exact counters, unit checks of the rules,
    a tiny model trained a few steps (loss finite), parameter counts of the toy and full configs;
    no real TeX (it runs anywhere).
  small: the reproduction: 2,000 synthetic records plus the real TeX files, tokenizers of 8,000
    entries, d 128 / 4 layers / 4 heads / FFN 344 / context 128, AdamW 1e-3 (0.9, 0.95), wd 0.1,
    warm-up 100, cosine, clip 1.0.
  paper: the released model's shape (24 layers, d 2,048, 16 heads, FFN 5,504, vocabulary 102,400,
    context 768, lr 2e-4, warm-up 500, 2,048 sequences per step); for `jaxpapers plan`, not for a CPU.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice
from jaxpapers.text.metadata import MATCHES
from jaxpapers.text.tokenizer import DESIGNS


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The LLaMA-style decoder (authors' train/config.json).

  Attributes:
    vocab_size: embedding rows (at least the trained tokenizer's size; with `vocab_size=0` the
      tokenizer's own size).
    d_model: hidden width.
    num_layers: decoder blocks.
    num_heads: attention heads (as many KV heads: plain MHA).
    ffn: SwiGLU hidden width.
    norm_eps: RMSNorm epsilon.
    rope_theta: RoPE base.
    init_std: normal init of every weight matrix and the embedding.
    context: tokens per training sequence (documents truncated and padded to it).
    scan_layers: run the blocks as one scanned stack (same parameters, one compiled block).
  """

  vocab_size: int = 0
  d_model: int = 128
  num_layers: int = 4
  num_heads: int = 4
  ffn: int = 344
  norm_eps: float = 1e-6
  rope_theta: float = 10_000.0
  init_std: float = 0.02
  context: int = 128
  scan_layers: bool = False

  def __post_init__(self):
    check(self.vocab_size >= 0, "model.vocab_size", self.vocab_size, ">= 0 (0: the tokenizer's size)")
    for name in ("d_model", "num_layers", "num_heads", "ffn", "context"):
      check(getattr(self, name) >= 1, f"model.{name}", getattr(self, name), ">= 1")
    check(self.d_model % self.num_heads == 0 and (self.d_model // self.num_heads) % 2 == 0, "model.num_heads",
          self.num_heads, f"a divisor of d_model={self.d_model} leaving an even head width")
    check(self.norm_eps > 0, "model.norm_eps", self.norm_eps, "> 0")
    check(self.init_std > 0, "model.init_std", self.init_std, "> 0")


@dataclasses.dataclass(frozen=True)
class ArxivToModelConfig:
  """An ArXiv-to-Model run.

  Attributes:
    records: synthetic arXiv records.
    corpus_seed: seed of the synthetic corpus.
    real_tex: also run the pipeline on real TeX files and train on them.
    real_tex_dir: the folder of real TeX files ("": the Debian texlive-science-doc tree that
      .ci/run unpacks, `jaxpapers.text.sources.debian_tex_dir()`).
    match: category matching, "prefix" (ours) or "substring" (the authors').
    faithful: the authors' extraction and cleaning in the main run (otherwise reported beside).
    validation_every: every this-many accepted documents goes to validation.
    vocab_size: tokenizer vocabulary for both designs.
    tokenizer: the design the LM is trained with.
    model: the decoder.
    lr: AdamW peak learning rate.
    b1: AdamW beta 1.
    b2: AdamW beta 2.
    weight_decay: AdamW weight decay.
    eps: AdamW epsilon.
    warmup_steps: linear warm-up, then cosine decay to 0.
    clip: gradient-norm clip.
    batch_size: sequences per step.
    train: the training loop.
    mesh: devices.
  """

  records: int = 2000
  corpus_seed: int = 0
  real_tex: bool = True
  real_tex_dir: str = ""
  match: str = "prefix"
  faithful: bool = False
  validation_every: int = 100
  vocab_size: int = 8000
  tokenizer: str = "paper"
  model: ModelConfig = ModelConfig()
  lr: float = 1e-3
  b1: float = 0.9
  b2: float = 0.95
  weight_decay: float = 0.1
  eps: float = 1e-8
  warmup_steps: int = 100
  clip: float = 1.0
  batch_size: int = 16
  train: TrainConfig = TrainConfig(steps=400, eval_every=25, log_every=25, checkpoint_every=200,
                                   steps_per_dispatch=25)
  mesh: MeshConfig = MeshConfig(axis_types="auto")

  def __post_init__(self):
    check(self.records >= 50, "records", self.records, ">= 50 (the defect shares need 50 records)")
    check(self.corpus_seed >= 0, "corpus_seed", self.corpus_seed, ">= 0")
    check_choice("match", self.match, MATCHES)
    check(self.validation_every >= 1, "validation_every", self.validation_every, ">= 1")
    check(self.vocab_size >= 300, "vocab_size", self.vocab_size, ">= 300 (the byte alphabet and seed tokens)")
    check_choice("tokenizer", self.tokenizer, DESIGNS)
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(0 <= self.b1 < 1 and 0 <= self.b2 < 1, "b1/b2", (self.b1, self.b2), "in [0, 1)")
    check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
    check(self.eps > 0, "eps", self.eps, "> 0")
    check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
    check(self.clip > 0, "clip", self.clip, "> 0")
    check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")


SMOKE = ArxivToModelConfig(
    records=50, real_tex=False, vocab_size=400,
    model=ModelConfig(d_model=32, num_layers=2, num_heads=2, ffn=86, context=32, scan_layers=True),
    validation_every=10, warmup_steps=1, batch_size=4,
    train=TrainConfig(steps=2, eval_every=0, log_every=1, checkpoint_every=0, steps_per_dispatch=1))
SMALL = ArxivToModelConfig()
PAPER = ArxivToModelConfig(
    records=20_000, vocab_size=102_400,
    model=ModelConfig(vocab_size=102_400, d_model=2048, num_layers=24, num_heads=16, ffn=5504, context=768,
                      scan_layers=True),
    lr=2e-4, warmup_steps=500, batch_size=2048,
    train=TrainConfig(steps=33_200, eval_every=1000, log_every=100, checkpoint_every=1000))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
