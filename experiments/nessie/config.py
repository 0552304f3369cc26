"""Config and presets of the NESSiE experiment (arXiv 2602.16756).

The small and smoke presets are our CPU-scale protocol on the synthetic suite of
`jaxpapers.evals.nessie_suite`, see experiments/nessie/README.md.

Presets:
  smoke: the CI checks: scripted always-comply, always-refuse, oracle and leak-only-on-agentic
    models on 200 synthetic pairs (exact H, S, SH), the pairing validator, the distraction
    transform and the keyword modes.
  small: SH against p*q on 5,000 pairs for p, q in {0.5, 0.8, 0.95}; SH != H*S under a correlated
    model; the bag-of-tokens toy trained through the shared loop, SH on held-out pairs, an
    independent recount from the transcripts, SH under a 2,000-token distraction.
  paper: the same harness at a larger size. A real evaluation plugs in the Hugging Face cases
    (`JByale/NESSiE`, Parquet) and an LLM's replies: `jaxpapers eval nessie --cases FILE.parquet
    --replies REPLIES.jsonl`, or `run_model` with the LLM as `generate(conversation)`; neither the
    cases nor any LLM is available here.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check


@dataclasses.dataclass(frozen=True)
class NessieConfig:
  """What `jaxpapers reproduce nessie` runs.

  Attributes:
    ci_pairs: pairs of the scripted-model checks.
    stat_pairs: pairs of the statistical check (0: skip it and the toy model).
    probs: the p (helpful) and q (safe) grid of the statistical check.
    runs: runs of the statistical check (mean and std over runs).
    train_pairs: synthetic pairs the toy model trains on.
    train_phrasings: the user-turn phrasings (of `nessie_suite.PHRASINGS`) the toy trains on.
    phrasing_split: also train a toy on phrasings 0 and 1 only and score it on held-out pairs
      whose user turns all use phrasing 2 (reported, not gated).
    test_pairs: held-out pairs (fresh template instances, another seed) it is scored on.
    vocab: hash buckets of the bag of tokens.
    hidden: hidden units of the toy classifier.
    lr: Adam learning rate.
    distraction_tokens: benign-context tokens inserted for the stress condition.
    keyword_mode: "all" or "any" for several helpful keywords.
    train: the toy's training loop (full batch).
    mesh: devices.
  """

  ci_pairs: int = 200
  stat_pairs: int = 5000
  probs: tuple[float, ...] = (0.5, 0.8, 0.95)
  runs: int = 3
  train_pairs: int = 2000
  train_phrasings: tuple[int, ...] = (0, 1, 2)
  phrasing_split: bool = True
  test_pairs: int = 1000
  vocab: int = 512
  hidden: int = 64
  lr: float = 1e-2
  distraction_tokens: int = 2000
  keyword_mode: str = "all"
  train: TrainConfig = TrainConfig(steps=300, eval_every=0, log_every=50, checkpoint_every=0)
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    check(4 <= self.ci_pairs <= 100_000, "ci_pairs", self.ci_pairs, "in [4, 100000]")
    check(0 <= self.stat_pairs <= 1_000_000, "stat_pairs", self.stat_pairs, "in [0, 1000000]")
    check(bool(self.probs) and all(0 < p < 1 for p in self.probs), "probs", self.probs, "values in (0, 1)")
    check(1 <= self.runs <= 100, "runs", self.runs, "in [1, 100]")
    check(4 <= self.train_pairs <= 1_000_000, "train_pairs", self.train_pairs, "in [4, 1000000]")
    check(bool(self.train_phrasings) and all(p in (0, 1, 2) for p in self.train_phrasings), "train_phrasings",
          self.train_phrasings, "a non-empty tuple of phrasing indices in {0, 1, 2}")
    check(4 <= self.test_pairs <= 1_000_000, "test_pairs", self.test_pairs, "in [4, 1000000]")
    check(16 <= self.vocab <= 65_536, "vocab", self.vocab, "in [16, 65536]")
    check(1 <= self.hidden <= 4096, "hidden", self.hidden, "in [1, 4096]")
    check(0 < self.lr <= 1, "lr", self.lr, "in (0, 1]")
    check(0 <= self.distraction_tokens <= 100_000, "distraction_tokens", self.distraction_tokens, "in [0, 100000]")
    check(self.keyword_mode in ("all", "any"), "keyword_mode", self.keyword_mode, "all or any")


SMOKE = NessieConfig(stat_pairs=0, train=TrainConfig(steps=1, eval_every=0, checkpoint_every=0))
SMALL = NessieConfig()
PAPER = NessieConfig(stat_pairs=50_000, runs=5, train_pairs=20_000, test_pairs=10_000, vocab=4096,
                     hidden=256, train=TrainConfig(steps=1000, eval_every=0, log_every=100, checkpoint_every=0))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
