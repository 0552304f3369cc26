"""The LaTeX normalization pipeline of ArXiv-to-Model (Gupta, arXiv 2602.17288, the
preprocessing pipeline: metadata filtering -> archive validation -> LaTeX extraction -> text
normalization; authors' code data_prep/prepare_dataset.py), stage by stage:

  1. id check: a record without `id` is `incorrect_id`;
  2. metadata filters (`jaxpapers.text.metadata`): `blocked_category`, `short_abstract`,
     `too_old`, `withdrawn` (together `blocked_by_filter`); without metadata the filters are
     skipped and each such document is counted in `metadata_skipped`;
  3. the source is read (the authors download arXiv's /src/{id}; here a local file or the
     synthetic corpus): a missing or unreadable one is `download_failed`, else `downloaded`;
  4-5. archive validation and extraction (`jaxpapers.text.extraction`): `incorrect_tar_path`,
     `empty_tex`, `bad_encoding`, else `extracted`;
  6. normalization (`jaxpapers.text.clean.clean_latex`);
  7. assembly: "Title: {title}\\nAbstract: {abstract}\\nBody: {body}" (title and abstract from the
     metadata, else from `\\title{}` and the abstract environment);
  8. quality filters: fewer than `min_words` whitespace tokens is `too_short`; not English is
     `non_english` (`jaxpapers.text.language`);
  9. MD5 exact deduplication: `duplicate`;
  10. split: every `validation_every`-th accepted document to `validation`, the rest to `train`
     (`written` = both);
  11. the counters above, plus how sources were read (`kind_tar`, `kind_gzip`, `kind_plain`,
     `kind_folder`, `concatenated`, `inputs_resolved`, `inputs_missing`) and `failed`: a source
     whose processing raised (counted and skipped; the run goes on).
The authors' filter and cleaning helpers are `async` functions called without `await` (the
shipped script passes everything); this implements their intended synchronous semantics.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jaxpapers.text import clean, extraction, metadata
from jaxpapers.text.dedup import Deduplicator, Splitter
from jaxpapers.text.extraction import Extracted
from jaxpapers.text.language import detect_language

COUNTERS = (
    "records", "incorrect_id", "blocked_category", "short_abstract", "too_old", "withdrawn",
    "blocked_by_filter", "metadata_skipped", "download_failed", "downloaded", "incorrect_tar_path",
    "empty_tex", "bad_encoding", "extracted", "too_short", "non_english", "duplicate", "written",
    "train", "validation", "failed", "kind_tar", "kind_gzip", "kind_plain", "kind_folder", "concatenated",
    "inputs_resolved", "inputs_missing")
# Counters of documents lost at a stage, in pipeline order (the "data yield" analysis).
LOSSES = ("incorrect_id", "blocked_by_filter", "download_failed", "incorrect_tar_path", "empty_tex",
          "bad_encoding", "too_short", "non_english", "duplicate", "failed")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Choices of the pipeline.

  Attributes:
    match: category matching, "prefix" (ours) or "substring" (the authors').
    faithful: the authors' extraction and cleaning (concatenated .tex files, `%.*` comments,
      non-greedy command regexes, replacement-character decoding, raw title and abstract).
    max_bytes: size cap of a .tex member / the decompressed single file.
    max_depth: `\\input` nesting limit.
    min_words: whitespace tokens a document needs.
    validation_every: every this-many accepted documents, one goes to validation.
  """

  match: str = "prefix"
  faithful: bool = False
  max_bytes: int = extraction.MAX_BYTES
  max_depth: int = extraction.MAX_DEPTH
  min_words: int = 50
  validation_every: int = 100

  def __post_init__(self):
    if self.match not in metadata.MATCHES:
      raise ValueError(f"match must be one of {', '.join(metadata.MATCHES)}; got {self.match!r}")
    for name in ("max_bytes", "min_words", "validation_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
    if self.max_depth < 0:
      raise ValueError(f"max_depth must be >= 0; got {self.max_depth}")


@dataclasses.dataclass(frozen=True)
class Source:
  """One candidate document.

  Attributes:
    id: the paper's id (None or "" fails the id check).
    record: its arXiv metadata record (title, abstract, categories, versions, comments), or
      None when there is no metadata (filters skipped; title and abstract from the LaTeX).
    load: `load(config) -> Extracted` reads and extracts the source; None, or raising OSError,
      means it could not be read.
  """

  id: str | None
  record: Mapping[str, Any] | None
  load: Callable[[PipelineConfig], Extracted | None]


def bytes_source(id: str | None, record: Mapping[str, Any] | None,
                 read: Callable[[], bytes | None]) -> Source:
  """A `Source` whose bytes come from `read()` (None: missing) and go through `extract_latex`."""
  def load(config: PipelineConfig) -> Extracted | None:
    data = read()
    if data is None:
      return None
    return extraction.extract_latex(data, max_bytes=config.max_bytes, faithful=config.faithful,
                                    max_depth=config.max_depth)
  return Source(id, record, load)


@dataclasses.dataclass(frozen=True)
class Document:
  """An accepted document: its id, its text in the paper's format and its split."""

  id: str
  text: str
  split: str


@dataclasses.dataclass
class PipelineResult:
  """Accepted documents by split and the per-stage counters."""

  train: list[Document]
  validation: list[Document]
  stats: dict[str, int]

  @property
  def yield_(self) -> float:
    """written / records."""
    return self.stats["written"] / max(self.stats["records"], 1)


def new_stats() -> dict[str, int]:
  return dict.fromkeys(COUNTERS, 0)


def assemble(title: str, abstract: str, body: str) -> str:
  """The paper's document format: "Title: ...\\nAbstract: ...\\nBody: ..."."""
  return f"Title: {title}\nAbstract: {abstract}\nBody: {body}"


def _process(source: Source, config: PipelineConfig, stats: dict[str, int], dedup: Deduplicator,
             splitter: Splitter) -> Document | None:
  if not source.id:
    stats["incorrect_id"] += 1
    return None
  if source.record is None:
    stats["metadata_skipped"] += 1
  else:
    reason = metadata.filter_record(source.record, config.match)
    if reason is not None:
      stats[reason] += 1
      stats["blocked_by_filter"] += 1
      return None
  try:
    extracted = source.load(config)
  except OSError:
    extracted = None
  if extracted is None:
    stats["download_failed"] += 1
    return None
  stats["downloaded"] += 1
  stats[f"kind_{extracted.kind}"] += 1
  if extracted.status != "ok":
    stats[extracted.status] += 1
    return None
  stats["extracted"] += 1
  stats["concatenated"] += int(extracted.concatenated)
  stats["inputs_resolved"] += extracted.inputs_resolved
  stats["inputs_missing"] += extracted.inputs_missing
  body = clean.clean_latex(extracted.text, config.faithful)
  if source.record is None:
    title, abstract = clean.front_matter(extracted.text)
  else:
    title, abstract = str(source.record.get("title") or ""), str(source.record.get("abstract") or "")
    if not config.faithful:
      title, abstract = clean.collapse_whitespace(title), clean.collapse_whitespace(abstract)
  text = assemble(title, abstract, body)
  if len(text.split()) < config.min_words:
    stats["too_short"] += 1
    return None
  if detect_language(text) != "en":
    stats["non_english"] += 1
    return None
  if dedup.is_duplicate(text):
    stats["duplicate"] += 1
    return None
  split = splitter.split()
  stats["written"] += 1
  stats[split] += 1
  return Document(str(source.id), text, split)


def iter_pipeline(sources: Iterable[Source], config: PipelineConfig = PipelineConfig(),
                  stats: dict[str, int] | None = None) -> Iterator[Document]:
  """Runs stages 1-10 on each source, yielding accepted documents; counts into `stats`.

  A source whose processing raises is counted in `failed` and skipped.
  """
  stats = new_stats() if stats is None else stats
  dedup, splitter = Deduplicator(), Splitter(config.validation_every)
  for source in sources:
    stats["records"] += 1
    try:
      doc = _process(source, config, stats, dedup, splitter)
    except Exception:  # pylint: disable=broad-except  # one bad source never stops the run
      stats["failed"] += 1
      continue
    if doc is not None:
      yield doc


def run_pipeline(sources: Iterable[Source], config: PipelineConfig = PipelineConfig()) -> PipelineResult:
  """Every accepted document of `sources`, by split, and the counters (stages 1-11)."""
  stats = new_stats()
  train, validation = [], []
  for doc in iter_pipeline(sources, config, stats):
    (validation if doc.split == "validation" else train).append(doc)
  return PipelineResult(train, validation, stats)


def losses(stats: Mapping[str, int]) -> dict[str, float]:
  """The share of all records lost at each stage (`LOSSES`), and the yield."""
  total = max(stats["records"], 1)
  out = {k: stats[k] / total for k in LOSSES}
  out["yield"] = stats["written"] / total
  return out


FORBIDDEN = ("\\documentclass", "\\cite{", "\\begin{figure}")
_UNESCAPED_PERCENT = re.compile(r"(?<!\\)(?:\\\\)*%")


def violations(text: str) -> list[str]:
  """The output invariants a document breaks: the format "Title: ..\\nAbstract: ..\\nBody: .."
  (exactly two newlines, none in the body), no `\\documentclass`, `\\cite{`, `\\begin{figure}`,
  no unescaped `%`."""
  out = []
  head, sep, body = text.partition("\nBody: ")
  if not (text.startswith("Title: ") and "\nAbstract: " in head and sep):
    out.append("format")
  if text.count("\n") != 2 or "\n" in body:
    out.append("newline")
  out += [s for s in FORBIDDEN if s in text]
  if _UNESCAPED_PERCENT.search(text):
    out.append("unescaped %")
  return out
