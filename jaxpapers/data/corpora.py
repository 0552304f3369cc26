"""Local text corpora as next-token window sources (nothing is downloaded).

* ``stdlib_paths``: the ``.py`` files of Python's standard library, a real
  text corpus every Python installation ships.
* ``TextSource``: non-overlapping next-token windows over local text files
  (by default the standard library's top-level modules), at byte or
  character level; a source in the sense of ``jaxpapers.data.sources``.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from jaxpapers.data.sources import Batch, Example


def stdlib_paths(recursive: bool = False) -> list[Path]:
  """The ``.py`` files of Python's standard library, sorted: top-level modules only, or with
  ``recursive`` every package's files too (never site-packages or caches)."""
  root = Path(sysconfig.get_paths()["stdlib"])
  if not recursive:
    return sorted(root.glob("*.py"))
  skip = {"site-packages", "dist-packages", "__pycache__"}
  return sorted(p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts))


class TextSource:
  """Non-overlapping next-token windows over a local text corpus.

  Example ``i`` is ``{"inputs": t[i*L:(i+1)*L], "targets": t[i*L+1:(i+1)*L+1]}``
  (int32) where ``t`` are the corpus tokens and ``L`` is ``seq_len``.

  Attributes:
    seq_len: Window length ``L``.
    level: ``"byte"`` (tokens 0..255) or ``"char"`` (ids into ``vocab``).
    vocab: The characters of the char-level vocabulary (``None`` for bytes).
    vocab_size: Number of token ids.
    tokens: The whole corpus as a 1-D token array.
  """

  def __init__(
      self,
      paths: Sequence[str | Path] | None = None,
      *,
      seq_len: int,
      level: Literal["byte", "char"] = "byte",
      vocab: str | Sequence[str] | None = None,
      max_bytes: int | None = None,
  ):
    """Reads the corpus.

    Args:
      paths: Text files, concatenated in order. ``None`` means the
        top-level ``.py`` files of the standard library (``stdlib_paths``).
      seq_len: Window length, >= 1.
      level: Tokenization level, ``"byte"`` or ``"char"``.
      vocab: Char level only: the vocabulary (e.g. another source's
        ``vocab``, to share ids). Default: sorted set of corpus characters.
      max_bytes: If set, read at most this many bytes of the corpus.
    """
    if seq_len < 1:
      raise ValueError(f"seq_len must be >= 1, got {seq_len}.")
    if level not in ("byte", "char"):
      raise ValueError(f"level must be 'byte' or 'char', got {level!r}.")
    if level == "byte" and vocab is not None:
      raise ValueError("vocab is only used with level='char'.")
    paths = stdlib_paths() if paths is None else [Path(p) for p in paths]
    data = _read_corpus(paths, max_bytes)
    self.seq_len = seq_len
    self.level = level
    if level == "byte":
      self.vocab = None
      self._codepoints = None
      self.tokens = np.frombuffer(data, dtype=np.uint8)
    else:
      text = data.decode("utf-8", errors="replace")
      self.vocab = "".join(sorted(set(text)) if vocab is None else vocab)
      self._codepoints = _codepoints(self.vocab)
      if len(set(self.vocab)) != len(self.vocab):
        raise ValueError("vocab has repeated characters.")
      self.tokens = self.encode(text)
    self._length = (len(self.tokens) - 1) // seq_len
    if self._length < 1:
      raise ValueError(
          f"Corpus of {len(self.tokens)} tokens from {_describe(paths)} is "
          f"too short for one window of seq_len={seq_len}."
      )

  @property
  def vocab_size(self) -> int:
    return 256 if self.vocab is None else len(self.vocab)

  def encode(self, text: str) -> np.ndarray:
    """Token ids (int32) of ``text``; unknown characters raise ValueError."""
    if self._codepoints is None:
      return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)
    cps = _codepoints(text)
    order = np.argsort(self._codepoints)
    sorted_cps = self._codepoints[order]
    pos = np.minimum(np.searchsorted(sorted_cps, cps), len(sorted_cps) - 1)
    unknown = sorted_cps[pos] != cps
    if unknown.any():
      chars = sorted({chr(c) for c in cps[unknown]})[:10]
      raise ValueError(f"Characters not in the vocabulary: {chars!r}.")
    return order[pos].astype(np.int32)

  def decode(self, ids: Iterable[int] | np.ndarray) -> str:
    """Text of token ids (invalid UTF-8 bytes become U+FFFD at byte level)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if self._codepoints is None:
      return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
    return self._codepoints[ids].astype("<u4").tobytes().decode("utf-32-le")

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Example:
    index = range(self._length)[index]  # Bounds check, negative indices.
    return {k: v[0] for k, v in self.gather(np.array([index])).items()}

  def gather(self, indices: np.ndarray) -> Batch:
    """Returns the windows at ``indices``, stacked."""
    indices = np.asarray(indices, dtype=np.int64)
    offsets = indices[:, None] * self.seq_len + np.arange(self.seq_len + 1)
    windows = self.tokens[offsets].astype(np.int32)
    return {"inputs": windows[:, :-1], "targets": windows[:, 1:]}

  def __repr__(self) -> str:
    return (
        f"TextSource(len={self._length}, seq_len={self.seq_len}, "
        f"level={self.level!r}, vocab_size={self.vocab_size})"
    )


def _codepoints(text: str) -> np.ndarray:
  return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)


def _describe(paths: Sequence[Path]) -> str:
  if len(paths) <= 3:
    return ", ".join(str(p) for p in paths) or "<no paths>"
  return f"{len(paths)} files ({paths[0]}, ..., {paths[-1]})"


def _read_corpus(paths: Sequence[Path], max_bytes: int | None) -> bytes:
  """Concatenated bytes of ``paths``, at most ``max_bytes`` of them."""
  if not paths:
    raise ValueError("TextSource got no paths.")
  if max_bytes is not None and max_bytes < 1:
    raise ValueError(f"max_bytes must be >= 1, got {max_bytes}.")
  chunks, total = [], 0
  for path in paths:
    if not path.is_file():
      raise ValueError(f"Text file not found: {path}")
    if max_bytes is not None and total >= max_bytes:
      break
    chunk = path.read_bytes()
    chunks.append(chunk)
    total += len(chunk)
  data = b"".join(chunks)[:max_bytes]
  if not data:
    raise ValueError(f"Empty text corpus: {_describe(paths)}")
  return data
