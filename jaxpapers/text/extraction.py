"""LaTeX extraction from a paper's source bytes (ArXiv-to-Model, arXiv 2602.17288; authors' code
data_prep/extraction.py), first success wins:

  a. a tar archive (any compression, `tarfile` mode "r:*"): every member whose name ends in
     .tex (any case) and whose size is at most `max_bytes`;
  b. a single gzip-compressed file: its first `max_bytes`, accepted only if it contains
     `\\documentclass` or `\\begin{document}`;
  c. a plain file: the same test.
Bytes that start as gzip but do not decompress, or a tar whose members cannot be read, are a
corrupt archive (the authors' `incorrect_tar_path`); a source with no accepted LaTeX is
`empty_tex`; LaTeX that is not valid UTF-8 is `bad_encoding` (with `faithful=True`: decoded
with replacement characters, as the authors do).

Multi-file sources: the authors concatenate every .tex member in archive order (kept as
`faithful=True` and as the fallback when no file has `\\documentclass`). By default the main
file (the one with `\\documentclass`, preferring one with `\\begin{document}` that no other file
inputs) is read and each `\\input{x}` / `\\include{x}` / `\\input x` is replaced by file x
(".tex" added when missing), recursively up to `max_depth` levels (the README's stated design).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import posixpath
import re
import tarfile
import zlib
from collections.abc import Mapping

from jaxpapers.text.clean import remove_comments

MAX_BYTES = 5_000_000
MAX_DEPTH = 10
_MARKERS = (b"\\documentclass", b"\\begin{document}")
INPUT_COMMAND = re.compile(r"\\(input|include)(?![A-Za-z])\s*(?:\{([^{}]*)\}|([^\s{}\\%]+))")
_DOCUMENTCLASS = re.compile(r"\\documentclass(?![A-Za-z])")


@dataclasses.dataclass(frozen=True)
class Extracted:
  """The LaTeX of one source, or why there is none.

  Attributes:
    text: the LaTeX (None unless `status == "ok"`).
    status: "ok", "incorrect_tar_path" (corrupt archive), "empty_tex" or "bad_encoding".
    kind: "tar", "gzip" or "plain" (what the bytes were read as).
    files: .tex files read.
    inputs_resolved: `\\input` / `\\include` commands replaced by a file.
    inputs_missing: such commands whose file is absent or past the depth limit (deleted).
    concatenated: the files were concatenated (no main file, or `faithful`).
  """

  text: str | None
  status: str
  kind: str
  files: int = 0
  inputs_resolved: int = 0
  inputs_missing: int = 0
  concatenated: bool = False


def _decode(data: bytes, faithful: bool) -> str | None:
  if faithful:
    return data.decode("utf-8", errors="replace")
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    return None


def _has_markers(data: bytes) -> bool:
  return any(m in data for m in _MARKERS)


def lookup_input(files: Mapping[str, str], name: str, base: str) -> str | None:
  """The path in `files` of an `\\input{name}`: relative to `base`, then the root, as given or
  with ".tex" added (None if absent)."""
  name = name.strip()
  for folder in dict.fromkeys((base, "")):
    path = posixpath.normpath(posixpath.join(folder, name))
    for candidate in (path, path + ".tex"):
      if candidate in files:
        return candidate
  return None


def resolve_inputs(files: Mapping[str, str], main: str, max_depth: int = MAX_DEPTH) -> tuple[str, int, int]:
  """`files[main]` with every `\\input` / `\\include` replaced by the file it names.

  Comments are removed from each file before its inputs are resolved (a commented-out
  `\\input` is not followed). Paths are looked up relative to the main file's folder, then the
  root, as given and with ".tex" added.

  Returns:
    (text, inputs resolved, inputs missing or past `max_depth`).
  """
  base = posixpath.dirname(main)
  counts = [0, 0]

  def expand(path: str, depth: int) -> str:
    def repl(m: re.Match) -> str:
      target = lookup_input(files, m.group(2) if m.group(2) is not None else m.group(3), base)
      if target is None or depth >= max_depth:
        counts[1] += 1
        return " "
      counts[0] += 1
      return "\n" + expand(target, depth + 1) + "\n"
    return INPUT_COMMAND.sub(repl, remove_comments(files[path]))

  return expand(main, 0), counts[0], counts[1]


def main_file(files: Mapping[str, str]) -> str | None:
  """The main file of a multi-file source: has `\\documentclass` (outside comments), prefers
  `\\begin{document}`, and is not input by another file; None if no file has `\\documentclass`."""
  stripped = {p: remove_comments(t) for p, t in files.items()}
  mains = [p for p, t in stripped.items() if _DOCUMENTCLASS.search(t)]
  if not mains:
    return None
  named = set()
  for p, t in stripped.items():
    for m in INPUT_COMMAND.finditer(t):
      target = lookup_input(files, m.group(2) if m.group(2) is not None else m.group(3), posixpath.dirname(p))
      if target is not None and target != p:
        named.add(target)
  ranked = sorted(mains, key=lambda p: (p in named, "\\begin{document}" not in stripped[p]))
  return ranked[0]


def latex_from_files(files: Mapping[str, bytes], kind: str, faithful: bool = False,
                     max_depth: int = MAX_DEPTH, main: str | None = None) -> Extracted:
  """The LaTeX of a multi-file source (`files`: path -> bytes, in archive order)."""
  if not files:
    return Extracted(None, "empty_tex", kind)
  decoded = {}
  for path, data in files.items():
    text = _decode(data, faithful)
    if text is None:
      return Extracted(None, "bad_encoding", kind, len(files))
    decoded[path] = text
  if not faithful:
    main = main or main_file(decoded)
  if faithful or main is None:
    return Extracted("\n\n".join(decoded.values()), "ok", kind, len(files), concatenated=True)
  text, resolved, missing = resolve_inputs(decoded, main, max_depth)
  return Extracted(text, "ok", kind, len(files), resolved, missing)


def _tar_members(data: bytes, max_bytes: int) -> dict[str, bytes] | None:
  """The .tex members of a tar archive (None: not a tar)."""
  try:
    archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
  except (tarfile.TarError, EOFError, OSError, zlib.error):
    return None
  with archive:
    files = {}
    for member in archive:
      if member.isfile() and member.name.lower().endswith(".tex") and member.size <= max_bytes:
        handle = archive.extractfile(member)
        if handle is not None:
          files[posixpath.normpath(member.name.lstrip("/"))] = handle.read()
    return files


def extract_latex(data: bytes, *, max_bytes: int = MAX_BYTES, faithful: bool = False,
                  max_depth: int = MAX_DEPTH) -> Extracted:
  """The LaTeX of one paper's source bytes (tar, gzip or plain; see the module docstring)."""
  try:
    files = _tar_members(data, max_bytes)
  except (tarfile.TarError, EOFError, OSError, zlib.error):
    return Extracted(None, "incorrect_tar_path", "tar")
  if files is not None:
    return latex_from_files(files, "tar", faithful, max_depth)
  if data[:2] == b"\x1f\x8b":
    try:
      with gzip.GzipFile(fileobj=io.BytesIO(data)) as handle:
        content = handle.read(max_bytes)
    except (EOFError, OSError, zlib.error):
      return Extracted(None, "incorrect_tar_path", "gzip")
    kind = "gzip"
  else:
    content, kind = data[:max_bytes], "plain"
  if not _has_markers(content):
    return Extracted(None, "empty_tex", kind)
  text = _decode(content, faithful)
  if text is None:
    return Extracted(None, "bad_encoding", kind, 1)
  if faithful:
    return Extracted(text, "ok", kind, 1)
  text, resolved, missing = resolve_inputs({"main.tex": text}, "main.tex", max_depth)
  return Extracted(text, "ok", kind, 1, resolved, missing)
