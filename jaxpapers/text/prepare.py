"""`jaxpapers prepare arxiv`: the ArXiv-to-Model pipeline (arXiv 2602.17288,
`jaxpapers.text.latex`) on a user's folder or tar of LaTeX sources.

With `--metadata FILE.jsonl` (the arXiv metadata snapshot's JSON-lines format: one record per
line with id, title, abstract, categories, versions, comments) the records are read in file
order, each paper's source is looked up in the input by id (a missing one counts as
`download_failed`; a line that is not a JSON object is counted in `bad_metadata_lines`), and the
metadata filters apply. Without it every document of the input is processed, the filters are
skipped (`metadata_skipped`), and title and abstract come from the LaTeX.

Writes OUT/documents.jsonl (the training split, one {"id", "text"} per line),
OUT/validation.jsonl (the 1-in-100 split) and OUT/stats.json (the counters, the share lost per
stage, what the input held, the settings).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jaxpapers.core.errors import UsageError
from jaxpapers.text import latex, sources

OUTPUTS = ("documents.jsonl", "validation.jsonl", "stats.json")
Progress = Callable[[int], Callable[[], None]]  # total -> advance()


def read_metadata(path: Path) -> tuple[list[dict[str, Any]], int]:
  """The records of a metadata JSON-lines file and the number of lines that are not JSON objects.

  Raises:
    UsageError: the file cannot be opened.
  """
  records, bad = [], 0
  try:
    with open(path, encoding="utf-8", errors="replace") as handle:
      for line in handle:
        if not line.strip():
          continue
        try:
          record = json.loads(line)
        except ValueError:
          bad += 1
          continue
        if isinstance(record, dict):
          records.append(record)
        else:
          bad += 1
  except OSError as e:
    raise UsageError(f"cannot read --metadata {path} ({e.strerror}); pass a readable JSON-lines file") from None
  return records, bad


@contextlib.contextmanager
def open_inventory(path: Path) -> Iterator[sources.Inventory]:
  """The inventory of a folder, or of a tar file (kept open while in use)."""
  path = Path(path)
  if path.is_dir():
    yield sources.folder_inventory(path)
    return
  if not path.exists():
    raise UsageError(f"--input {path} does not exist; pass a folder of .tex files or source archives, or a tar")
  try:
    archive = tarfile.open(path, mode="r:*")
  except (tarfile.TarError, OSError, EOFError) as e:
    raise UsageError(f"--input {path} is neither a folder nor a readable tar archive ({e}); pass a folder "
                     "or a .tar / .tar.gz file") from None
  with archive:
    try:
      inventory = sources.tar_inventory(archive)
    except (tarfile.TarError, OSError, EOFError) as e:
      raise UsageError(f"--input {path}: the tar archive is damaged ({e}); re-create it or pass its "
                       "extracted folder") from None
    yield inventory


def _key(doc_id: str) -> str:
  """Ids as file names hold them: old-style "math/0501001" is stored as "math0501001"."""
  return doc_id.replace("/", "")


def prepare_arxiv(input_path: Path, out: Path, metadata: Path | None = None,
                  config: latex.PipelineConfig = latex.PipelineConfig(), overwrite: bool = False,
                  progress: Progress | None = None) -> dict[str, Any]:
  """Runs the pipeline on `input_path` and writes OUT/{documents,validation}.jsonl and stats.json.

  Args:
    input_path: a folder or a tar file of LaTeX sources (see `jaxpapers.text.sources`).
    out: the output folder (created).
    metadata: arXiv metadata JSON-lines file, or None (filters skipped).
    config: the pipeline's choices.
    overwrite: replace outputs already in `out`.
    progress: `progress(total) -> advance`, called once; `advance()` after each source.

  Returns:
    The stats.json record.

  Raises:
    UsageError: unreadable input or metadata, an output folder that cannot be written, or one
      that holds outputs already (without `overwrite`).
  """
  out, input_path = Path(out), Path(input_path)
  if not input_path.exists():
    raise UsageError(f"--input {input_path} does not exist; pass a folder of .tex files or source archives, "
                     "or a tar")
  existing = [name for name in OUTPUTS if (out / name).exists()]
  if existing and not overwrite:
    raise UsageError(f"--out {out} already holds {', '.join(existing)}; choose another --out or pass --overwrite")
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UsageError(f"cannot create --out {out} ({e.strerror}); choose another --out") from None
  records, bad = read_metadata(metadata) if metadata is not None else (None, 0)
  with open_inventory(input_path) as inventory:
    docs, found = sources.documents(inventory)
    if records is None:
      todo = [make(None) for make in docs.values()]
      not_in_metadata = 0
    else:
      by_key = {_key(k): make for k, make in docs.items()}
      todo, used = [], set()
      for record in records:
        key = _key(str(record.get("id") or ""))
        make = by_key.get(key)
        if make is None:
          todo.append(latex.Source(record.get("id"), record, lambda config: None))
        else:
          used.add(key)
          todo.append(make(record))
      not_in_metadata = len(set(by_key) - used)
    advance = progress(len(todo)) if progress is not None else (lambda: None)
    stats = latex.new_stats()

    def stream():
      for source in todo:
        yield source
        advance()

    try:
      with open(out / "documents.jsonl", "w", encoding="utf-8") as train, \
           open(out / "validation.jsonl", "w", encoding="utf-8") as validation:
        for doc in latex.iter_pipeline(stream(), config, stats):
          target = validation if doc.split == "validation" else train
          target.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
    except OSError as e:
      raise UsageError(f"cannot write to --out {out} ({e.strerror}); choose another --out") from None
  record = {"counters": stats, "losses": latex.losses(stats),
            "input": dict(found, path=str(input_path), not_in_metadata=not_in_metadata,
                          bad_metadata_lines=bad),
            "metadata": "used" if records is not None else "skipped (no --metadata)",
            "config": dataclasses.asdict(config)}
  (out / "stats.json").write_text(json.dumps(record, indent=2) + "\n")
  return record
