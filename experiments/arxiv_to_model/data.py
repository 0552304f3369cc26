"""The corpora of the ArXiv-to-Model reproduction (arXiv 2602.17288): the pipeline's output on the
synthetic arXiv and on real TeX files, the two tokenizers trained on it, and the LM's token
arrays. Built once per process for a given config (the driver's task and the claims share it).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from jaxpapers.data.synth_arxiv import SynthArxiv, synth_arxiv
from jaxpapers.text import latex, sources
from jaxpapers.text import tokenizer as tok_lib

from .config import ArxivToModelConfig


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Everything the stages and the claims read.

  Attributes:
    synth: the synthetic arXiv (records, sources, injected defects).
    synth_result: the pipeline's output on it (the config's match and faithful choice).
    real_result: the pipeline's output on the real TeX files (None: not run).
    real_dir: their folder, or why there are none (a string).
    real_found: what the folder held (`jaxpapers.text.sources.documents`).
    tokenizers: design -> tokenizer trained on the training split.
    train_ids: `[n, context + 1]` token ids of the training documents (config's tokenizer).
    validation_ids: the same for the validation documents.
  """

  synth: SynthArxiv
  synth_result: latex.PipelineResult
  real_result: latex.PipelineResult | None
  real_dir: Path | str
  real_found: dict
  tokenizers: dict[str, Tokenizer]
  train_ids: np.ndarray
  validation_ids: np.ndarray

  @property
  def train_texts(self) -> list[str]:
    docs = self.synth_result.train + (self.real_result.train if self.real_result else [])
    return [d.text for d in docs]

  @property
  def validation_texts(self) -> list[str]:
    docs = self.synth_result.validation + (self.real_result.validation if self.real_result else [])
    return [d.text for d in docs]


def synth_sources(corpus: SynthArxiv) -> list[latex.Source]:
  """The synthetic records as pipeline sources (an offline "download" of their bytes)."""
  return [latex.bytes_source(r.get("id"), r, lambda p=r.get("id"): corpus.sources.get(p)) for r in corpus.records]


def real_sources(folder: Path) -> tuple[list[latex.Source], dict]:
  """The main .tex files of a real TeX tree as sources (no metadata; archives ignored)."""
  docs, found = sources.documents(sources.folder_inventory(folder, archives=False))
  return [make(None) for make in docs.values()], found


def pipeline_config(config: ArxivToModelConfig, **changes) -> latex.PipelineConfig:
  base = latex.PipelineConfig(match=config.match, faithful=config.faithful,
                              validation_every=config.validation_every)
  return dataclasses.replace(base, **changes)


def real_dir(config: ArxivToModelConfig) -> Path | str:
  """The real TeX folder, or the reason there is none."""
  if config.real_tex_dir:
    folder = Path(config.real_tex_dir)
    return folder if folder.is_dir() else f"real_tex_dir={config.real_tex_dir} is not a folder"
  folder = sources.debian_tex_dir()
  if folder is None:
    return (f"no real TeX files: {sources.DEBIAN_TEX_PACKAGE} is not unpacked in {sources.DEBIAN_TEX_CACHE} "
            f"(install: {sources.DEBIAN_TEX_INSTALL})")
  return folder


def _key(config: ArxivToModelConfig) -> tuple:
  return (config.records, config.corpus_seed, config.real_tex, config.real_tex_dir, config.match,
          config.faithful, config.validation_every, config.vocab_size, config.tokenizer,
          config.model.context)


@functools.lru_cache(maxsize=2)
def _build(key: tuple) -> Corpus:
  (records, seed, real, real_tex_dir, match, faithful, every, vocab, design, context) = key
  config = ArxivToModelConfig(records=records, corpus_seed=seed, real_tex=real, real_tex_dir=real_tex_dir,
                              match=match, faithful=faithful, validation_every=every, vocab_size=vocab,
                              tokenizer=design)
  synth = synth_arxiv(records, seed)
  synth_result = latex.run_pipeline(synth_sources(synth), pipeline_config(config))
  real_result, folder, found = None, "real_tex=false", {}
  if real:
    folder = real_dir(config)
    if isinstance(folder, Path):
      srcs, found = real_sources(folder)
      real_result = latex.run_pipeline(srcs, pipeline_config(config))
  train_docs = [d.text for d in synth_result.train + (real_result.train if real_result else [])]
  val_docs = [d.text for d in synth_result.validation + (real_result.validation if real_result else [])]
  if not val_docs:  # a corpus under `validation_every` documents: its last one is held out
    val_docs = train_docs[-1:]
  toks = {d: tok_lib.train_tokenizer(train_docs, vocab, d) for d in tok_lib.DESIGNS}
  tok = toks[design]
  return Corpus(synth, synth_result, real_result, folder, found, toks,
                tok_lib.encode_documents(tok, train_docs, context + 1),
                tok_lib.encode_documents(tok, val_docs, context + 1))


def corpus(config: ArxivToModelConfig) -> Corpus:
  """The corpus of `config` (built once per process for the same corpus fields)."""
  return _build(_key(config))


def unigram_perplexity(ids: np.ndarray, pad: int) -> float:
  """exp(entropy) of the empirical unigram distribution of the target tokens (`ids[:, 1:]`,
  pads excluded): the perplexity of the best unigram model of exactly these tokens."""
  targets = ids[:, 1:]
  counts = np.bincount(targets[targets != pad])
  p = counts[counts > 0] / counts.sum()
  return float(np.exp(-np.sum(p * np.log(p))))
