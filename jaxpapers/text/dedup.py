"""Exact deduplication and the validation split of ArXiv-to-Model (arXiv 2602.17288; authors'
code data_prep/prepare_dataset.py and train_val_split.py).

  * dedup: the MD5 digest of the assembled document text; a digest seen before is a duplicate;
  * split: every `every`-th accepted document (the 100th, 200th, ...) goes to validation (1% for
    every=100), the rest to training.
"""

from __future__ import annotations

import hashlib


class Deduplicator:
  """Remembers the MD5 digests of the texts it has seen."""

  def __init__(self):
    self._seen: set[str] = set()

  def is_duplicate(self, text: str) -> bool:
    """True if `text` was seen before; otherwise remembers it and returns False."""
    digest = hashlib.md5(text.encode("utf-8")).hexdigest()
    if digest in self._seen:
      return True
    self._seen.add(digest)
    return False


class Splitter:
  """Sends the `every`-th, `2 * every`-th, ... accepted document to validation."""

  def __init__(self, every: int = 100):
    if every < 1:
      raise ValueError(f"every must be >= 1, got {every}")
    self.every, self.accepted = every, 0

  def split(self) -> str:
    """"validation" or "train" for the next accepted document."""
    self.accepted += 1
    return "validation" if self.accepted % self.every == 0 else "train"
