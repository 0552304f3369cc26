"""Tokenizers of ArXiv-to-Model (arXiv 2602.17288, "domain-aware tokenization"; authors' code
tokenizer/train_tokenizer.py), trained with Hugging Face `tokenizers`:

  * "paper": BPE with an [UNK] token, pre-tokenized by whitespace/punctuation splitting and
    then every digit on its own (`Digits(individual_digits=True)`); the special / seed tokens
    `SPECIAL_TOKENS` + `SEED_TOKENS` (digits, operators, Greek letters, LaTeX commands such as
    `\\frac`, `\\sum`) are matched before pre-tokenization, so each is always one token; the
    initial alphabet is the byte-level alphabet; "[BOS] $A [EOS]" around every document.
  * "bytelevel": a plain byte-level BPE (GPT-2 style pre-tokenizer), no seed tokens, the same
    [PAD] / [BOS] / [EOS] specials and template.

Measurements for the reproduction: `digit_violations` (a k-digit number must be k tokens),
`command_fragmentation` (tokens per LaTeX command occurrence) and `tokens_per_document`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

DESIGNS = ("paper", "bytelevel")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "[THOUGHT]", "[STEP]", "[RESULT]")
SEED_TOKENS = (tuple("0123456789") + tuple("+-=*/^_(){}[]<>")
               + ("\\alpha", "\\beta", "\\gamma", "\\theta", "\\pi", "\\phi", "\\psi")
               + ("\\frac", "\\sqrt", "\\int", "\\sum", "\\infty", "\\text", "\\begin", "\\end"))
SEEDED_COMMANDS = tuple(t for t in SEED_TOKENS if t.startswith("\\"))
_COMMAND = re.compile(r"\\[A-Za-z]+")
_NUMBER = re.compile(r"\d+")


def train_tokenizer(texts: Iterable[str], vocab_size: int, design: str = "paper") -> Tokenizer:
  """A BPE tokenizer of `design` ("paper" or "bytelevel") trained on `texts`."""
  if design not in DESIGNS:
    raise ValueError(f"design must be one of {', '.join(DESIGNS)}; got {design!r}")
  if design == "paper":
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    specials = list(SPECIAL_TOKENS) + list(SEED_TOKENS)
  else:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["[PAD]", "[BOS]", "[EOS]"]
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(texts, trainer)
  bos, eos = tok.token_to_id("[BOS]"), tok.token_to_id("[EOS]")
  tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]",
                                                     special_tokens=[("[BOS]", bos), ("[EOS]", eos)])
  return tok


def pad_id(tok: Tokenizer) -> int:
  return tok.token_to_id("[PAD]")


def encode_documents(tok: Tokenizer, texts: Sequence[str], length: int) -> np.ndarray:
  """`[len(texts), length]` int32 ids of "[BOS] text [EOS]", truncated to `length` and padded with
  [PAD] (the authors' per-document truncation: only a document's first `length` tokens are seen)."""
  out = np.full((len(texts), length), pad_id(tok), np.int32)
  for i, enc in enumerate(tok.encode_batch(list(texts))):
    ids = enc.ids[:length]
    out[i, :len(ids)] = ids
  return out


def _covering(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
  return [(a, b) for a, b in spans if a < end and b > start]


def digit_violations(tok: Tokenizer, texts: Iterable[str]) -> tuple[int, int]:
  """(numbers seen, numbers not split into exactly one token per digit) in `texts`, in context."""
  seen = bad = 0
  for text in texts:
    spans = tok.encode(text, add_special_tokens=False).offsets
    for m in _NUMBER.finditer(text):
      seen += 1
      cover = _covering(spans, m.start(), m.end())
      if len(cover) != len(m.group(0)) or any(b - a != 1 for a, b in cover):
        bad += 1
  return seen, bad


def command_fragmentation(tok: Tokenizer, texts: Iterable[str],
                          commands: Sequence[str] | None = None) -> tuple[float, int]:
  """(mean tokens per LaTeX command occurrence, occurrences) in context; only `commands` if given."""
  counts = []
  for text in texts:
    spans = tok.encode(text, add_special_tokens=False).offsets
    for m in _COMMAND.finditer(text):
      if commands is None or m.group(0) in commands:
        counts.append(len(_covering(spans, m.start(), m.end())))
  return (float(np.mean(counts)) if counts else float("nan")), len(counts)


def seeded_command_violations(tok: Tokenizer, texts: Iterable[str]) -> tuple[int, int]:
  """(seeded-command occurrences, those not exactly one token) in context."""
  seen = bad = 0
  for text in texts:
    spans = tok.encode(text, add_special_tokens=False).offsets
    for m in _COMMAND.finditer(text):
      if m.group(0) in SEEDED_COMMANDS:
        seen += 1
        bad += _covering(spans, m.start(), m.end()) != [(m.start(), m.end())]
  return seen, bad


def tokens_per_document(tok: Tokenizer, texts: Sequence[str]) -> float:
  """Mean tokens of a document (with [BOS] and [EOS], untruncated)."""
  return float(np.mean([len(e.ids) for e in tok.encode_batch(list(texts))]))
