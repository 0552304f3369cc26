"""Scientific-text preprocessing: the LaTeX normalization pipeline and tokenizers of
ArXiv-to-Model (Gupta, arXiv 2602.17288; code: kitefishai/KiteFish-A1-1.5B-Math, data_prep/).

* `metadata`: the metadata filters of the arXiv snapshot records (categories, abstract length,
  first-version year, withdrawn).
* `extraction`: LaTeX from tar / gzip / plain source bytes, with `\\input` / `\\include` resolution.
* `clean`: the normalization rules (comments, preamble, citations, figures, verbatim, whitespace).
* `language`: a deterministic English check.
* `dedup`: MD5 exact deduplication and the 1-in-100 validation split.
* `latex`: the pipeline itself (stages 1-11 with per-stage counters).
* `sources`: documents of a folder or tar of `.tex` files / source archives (real inputs).
* `prepare`: `jaxpapers prepare arxiv` (reads metadata, writes documents.jsonl, validation.jsonl,
  stats.json).
* `tokenizer`: the paper's digit- and LaTeX-aware BPE and a plain byte-level BPE (HF `tokenizers`).
"""

from jaxpapers.text.clean import clean_latex
from jaxpapers.text.dedup import Deduplicator, Splitter
from jaxpapers.text.extraction import Extracted, extract_latex, resolve_inputs
from jaxpapers.text.language import detect_language
from jaxpapers.text.latex import COUNTERS, Document, PipelineConfig, PipelineResult, Source, run_pipeline
from jaxpapers.text.metadata import category_allowed, filter_record, first_year
