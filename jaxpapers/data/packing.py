"""Packed-sequence loaders: RSDB and sequential packing (arXiv 2602.17004, Trinity).

RSDB (Random Sequential Document Buffer, as the Trinity report describes it): a buffer of live
documents, each with a read head. It is filled to ``capacity`` documents from
the stream; to build each sequence of ``seq_len`` tokens the loader repeatedly
picks a live document uniformly at random (or weighted by its remaining
tokens, ``length_weighted``), copies ``min(space_left, doc_left, max_chunk)``
tokens from its read head and advances the head; a document whose head reaches
its end is removed, and when the live count drops to ``buffer_size`` the buffer
is refilled in bulk up to ``capacity``. Reading stays sequential inside a
document while consecutive sequences (and the rows of a batch) mix many
documents and domains. ``SequentialPacker`` is the baseline: the stream
concatenated in order and cut every ``seq_len`` tokens.

Both yield, per step, this process's rows of a ``[batch_size, seq_len]``
global batch::

  inputs       int32    token at each position (0 on padding)
  targets      int32    the next token of the same document (-1 where none)
  mask         float32  1.0 where ``targets`` is a real token, else 0.0
  segment_ids  int32    1, 2, ... for each document piece of a row; 0 = padding
  domains      int32    domain of each token; -1 = padding
  doc_ids, positions    int32, only with ``with_provenance``: document index
                        and offset of each token in its document (-1 = padding)

Targets convention: ``targets[r, t]`` is the token that follows
``inputs[r, t]`` *in its document*, also when that token lands in another row
or batch (documents are regenerable, so it is known); only a document's last
token (and padding) has ``mask == 0``. Each document of length L thus trains
exactly L - 1 predictions, as it would unpacked. Use ``segment_ids`` for
document-causal attention (a token attends to earlier tokens of its segment).

Rows always hold exactly ``seq_len`` tokens; only a finite stream's final batch
is padded, after which the iterator raises StopIteration. State
(``get_state``/``set_state``) is JSON: the stream position, the step (the RNG
of batch ``k`` is ``np.random.default_rng([seed, RSDB_RNG_TAG, k])``, so the
step is the RNG state) and, for RSDB, the live documents as
``[index, read_head]`` pairs; documents are regenerated from their index.
Every process builds the same global batch and keeps its rows
``[p * B / P, (p + 1) * B / P)``, like ``jaxpapers.data.pipeline``.

Both packers are grain iterators (``grain.DatasetIterator``), and ``PackedDataset`` makes
either one a ``grain.IterDataset`` (``iter()`` starts a fresh packer), so grain's
transformations (``.map``, ``.batch``, prefetching) compose with them and keep the state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grain
import numpy as np

from jaxpapers.data.documents import Document, DocumentStream

Batch = dict[str, np.ndarray]

RSDB_RNG_TAG = 0x5D8
PAD_TARGET = -1


def domain_tv(domains: np.ndarray, mix: np.ndarray) -> float:
  """DomTV = 1/2 sum_k |p_k - pi_k| of one batch (our data-only proxy for the
  report's batch heterogeneity).

  Args:
    domains: Domain id of every token of the batch, any shape; negative ids
      (padding) are ignored.
    mix: Global domain mix pi, [num_domains], summing to 1.

  Returns:
    Total variation between the batch's token share per domain and ``mix``
    (NaN for a batch without tokens).
  """
  mix = np.asarray(mix, np.float64)
  d = np.asarray(domains).reshape(-1)
  d = d[d >= 0]
  if d.size == 0:
    return float("nan")
  if d.max() >= mix.size:
    raise ValueError(f"Domain id {d.max()} outside mix of size {mix.size}.")
  p = np.bincount(d, minlength=mix.size) / d.size
  return float(0.5 * np.abs(p - mix).sum())


class _Packer(grain.DatasetIterator):
  """Shared batch assembly, process slicing and iterator protocol (a grain source iterator)."""

  kind = ""

  def __init__(
      self,
      documents: DocumentStream,
      batch_size: int,
      seq_len: int,
      *,
      process_index: int = 0,
      process_count: int = 1,
      with_provenance: bool = False,
  ):
    super().__init__()  # first: a packer refused below is still a well-formed grain iterator
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if seq_len < 1:
      raise ValueError(f"seq_len must be >= 1, got {seq_len}.")
    if process_count < 1:
      raise ValueError(f"process_count must be >= 1, got {process_count}.")
    if not 0 <= process_index < process_count:
      raise ValueError(
          f"process_index={process_index} not in [0, process_count={process_count})."
      )
    if batch_size % process_count:
      raise ValueError(
          f"batch_size={batch_size} is not divisible by process_count={process_count}."
      )
    self.documents = documents
    self.batch_size, self.seq_len = int(batch_size), int(seq_len)
    self.process_index, self.process_count = int(process_index), int(process_count)
    self.with_provenance = with_provenance
    per_process = self.batch_size // self.process_count
    self._rows = slice(process_index * per_process, (process_index + 1) * per_process)
    self.step = 0
    self.done = False

  @property
  def mix(self) -> np.ndarray:
    """The stream's global domain mix (for ``domain_tv``)."""
    return self.documents.mix

  def _load(self, index: int) -> Document:
    return self.documents[index]

  def _exhausted(self, next_doc: int) -> bool:
    n = self.documents.num_documents
    return n is not None and next_doc >= n

  def _begin_batch(self) -> None:
    pass

  def _next_piece(self, space: int) -> tuple[int, Document, int, int] | None:
    """``(doc_index, doc, start, n)`` of the next piece (n <= space), or None."""
    raise NotImplementedError

  def _empty(self) -> Batch:
    shape = (self.batch_size, self.seq_len)
    batch = {
        "inputs": np.zeros(shape, np.int32),
        "targets": np.full(shape, PAD_TARGET, np.int32),
        "mask": np.zeros(shape, np.float32),
        "segment_ids": np.zeros(shape, np.int32),
        "domains": np.full(shape, -1, np.int32),
    }
    if self.with_provenance:
      batch["doc_ids"] = np.full(shape, -1, np.int32)
      batch["positions"] = np.full(shape, -1, np.int32)
    return batch

  def _put(self, batch: Batch, row: int, col: int, segment: int, piece) -> int:
    index, doc, start, n = piece
    tokens = doc.tokens
    end = col + n
    batch["inputs"][row, col:end] = tokens[start:start + n]
    nxt = tokens[start + 1:start + n + 1]  # n - 1 entries at the document's end
    batch["targets"][row, col:col + len(nxt)] = nxt
    batch["mask"][row, col:col + len(nxt)] = 1.0
    batch["segment_ids"][row, col:end] = segment
    batch["domains"][row, col:end] = doc.domain
    if self.with_provenance:
      batch["doc_ids"][row, col:end] = index
      batch["positions"][row, col:end] = np.arange(start, start + n)
    return end

  def __iter__(self):
    return self

  def __next__(self) -> Batch:
    if self.done:
      raise StopIteration
    self._begin_batch()
    batch = self._empty()
    written = 0
    for row in range(self.batch_size):
      col, segment = 0, 0
      while col < self.seq_len:
        piece = self._next_piece(self.seq_len - col)
        if piece is None:
          self.done = True
          break
        segment += 1
        col = self._put(batch, row, col, segment, piece)
      written += col
      if self.done:
        break
    if written == 0:
      raise StopIteration
    self.step += 1
    return {k: v[self._rows] for k, v in batch.items()}

  def _config(self) -> dict[str, Any]:
    return {"kind": self.kind, "batch_size": self.batch_size, "seq_len": self.seq_len}

  def _check_config(self, state: Mapping[str, Any]) -> None:
    for key, value in self._config().items():
      if key in state and state[key] != value:
        raise ValueError(
            f"State mismatch: state has {key}={state[key]!r}, this iterator has "
            f"{key}={value!r}."
        )


class RSDB(_Packer):
  """Random Sequential Document Buffer loader (Trinity, arXiv 2602.17004).

  Attributes:
    buffer_size: Live-document count that triggers a bulk refill.
    capacity: Documents held right after a refill.
    next_doc: Index of the next stream document to load.
    num_live: Current number of live documents.
  """

  kind = "rsdb"

  def __init__(
      self,
      documents: DocumentStream,
      batch_size: int,
      seq_len: int,
      *,
      buffer_size: int = 64,
      capacity: int | None = None,
      max_chunk: int | None = None,
      length_weighted: bool = False,
      seed: int = 0,
      process_index: int = 0,
      process_count: int = 1,
      with_provenance: bool = False,
  ):
    """Creates the loader (the buffer fills on the first batch).

    Args:
      documents: The document stream.
      batch_size: Global rows per batch (divisible by ``process_count``).
      seq_len: Tokens per row S.
      buffer_size: User buffer size; refill when the live count drops to it.
      capacity: Internal capacity (default ``2 * buffer_size``), >= buffer_size.
      max_chunk: Most tokens copied per visit (default: no limit, our
        reading of the report).
      length_weighted: Pick documents with probability proportional to their
        remaining tokens instead of uniformly (default: uniform, our reading of
        the report).
      seed: Seed of the document picks, >= 0.
      process_index: This process's index.
      process_count: Number of processes sharing each global batch.
      with_provenance: Also emit ``doc_ids`` and ``positions``.
    """
    super().__init__(
        documents, batch_size, seq_len, process_index=process_index,
        process_count=process_count, with_provenance=with_provenance,
    )
    capacity = 2 * buffer_size if capacity is None else capacity
    if buffer_size < 1:
      raise ValueError(f"buffer_size must be >= 1, got {buffer_size}.")
    if capacity < buffer_size:
      raise ValueError(f"capacity={capacity} must be >= buffer_size={buffer_size}.")
    if max_chunk is not None and max_chunk < 1:
      raise ValueError(f"max_chunk must be >= 1 or None, got {max_chunk}.")
    if seed < 0:
      raise ValueError(f"seed must be >= 0, got {seed}.")
    self.buffer_size, self.capacity = int(buffer_size), int(capacity)
    self.max_chunk = None if max_chunk is None else int(max_chunk)
    self.length_weighted = bool(length_weighted)
    self.seed = int(seed)
    self.next_doc = 0
    self._live: list[int] = []   # document indices, in buffer order
    self._heads: list[int] = []  # read heads, parallel to _live
    self._cache: dict[int, Document] = {}
    self._rng = np.random.default_rng([self.seed, RSDB_RNG_TAG, 0])

  @property
  def num_live(self) -> int:
    return len(self._live)

  def _begin_batch(self) -> None:
    self._rng = np.random.default_rng([self.seed, RSDB_RNG_TAG, self.step])

  def _refill(self) -> None:
    while len(self._live) < self.capacity and not self._exhausted(self.next_doc):
      doc = self._load(self.next_doc)
      if len(doc.tokens):
        self._live.append(self.next_doc)
        self._heads.append(0)
        self._cache[self.next_doc] = doc
      self.next_doc += 1

  def _pick(self) -> int:
    if not self.length_weighted:
      return int(self._rng.integers(len(self._live)))
    left = np.cumsum([len(self._cache[d].tokens) - h for d, h in zip(self._live, self._heads)])
    return int(np.searchsorted(left, self._rng.random() * left[-1], side="right"))

  def _next_piece(self, space: int):
    if len(self._live) <= self.buffer_size:
      self._refill()
    if not self._live:
      return None
    i = self._pick()
    index, start = self._live[i], self._heads[i]
    doc = self._cache[index]
    n = min(space, len(doc.tokens) - start)
    if self.max_chunk is not None:
      n = min(n, self.max_chunk)
    if start + n == len(doc.tokens):  # finished: swap-remove
      self._live[i], self._heads[i] = self._live[-1], self._heads[-1]
      self._live.pop()
      self._heads.pop()
      del self._cache[index]
    else:
      self._heads[i] = start + n
    return index, doc, start, n

  def _config(self) -> dict[str, Any]:
    return {
        **super()._config(), "buffer_size": self.buffer_size,
        "capacity": self.capacity, "max_chunk": self.max_chunk,
        "length_weighted": self.length_weighted, "seed": self.seed,
    }

  def get_state(self) -> dict[str, Any]:
    """JSON-serializable state: config, step, stream position, live documents."""
    return {
        **self._config(),
        "step": int(self.step),
        "next_doc": int(self.next_doc),
        "done": bool(self.done),
        "live": [[int(d), int(h)] for d, h in zip(self._live, self._heads)],
    }

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Restores ``get_state`` of a matching loader (regenerates live documents)."""
    self._check_config(state)
    live = [(int(d), int(h)) for d, h in state["live"]]
    if len(live) > self.capacity:
      raise ValueError(f"State holds {len(live)} documents > capacity {self.capacity}.")
    cache = {}
    for index, head in live:
      doc = self._load(index)
      if not 0 <= head < len(doc.tokens):
        raise ValueError(f"Read head {head} out of range for document {index}.")
      cache[index] = doc
    self._live = [d for d, _ in live]
    self._heads = [h for _, h in live]
    self._cache = cache
    self.step, self.next_doc = int(state["step"]), int(state["next_doc"])
    self.done = bool(state.get("done", False))

  def __repr__(self) -> str:
    return (
        f"RSDB(buffer={self.buffer_size}/{self.capacity}, batch={self.batch_size}, "
        f"seq_len={self.seq_len}, live={self.num_live}, next_doc={self.next_doc})"
    )


class SequentialPacker(_Packer):
  """Baseline: the stream concatenated in order and cut into rows of S tokens.

  Attributes:
    doc: Index of the document being read (-1 before the first).
    head: Read head in that document.
  """

  kind = "sequential"

  def __init__(
      self,
      documents: DocumentStream,
      batch_size: int,
      seq_len: int,
      *,
      process_index: int = 0,
      process_count: int = 1,
      with_provenance: bool = False,
  ):
    """Creates the packer at the stream's start (arguments as in ``RSDB``)."""
    super().__init__(
        documents, batch_size, seq_len, process_index=process_index,
        process_count=process_count, with_provenance=with_provenance,
    )
    self.doc, self.head = -1, 0
    self._current: Document | None = None

  def _next_piece(self, space: int):
    while self._current is None or self.head >= len(self._current.tokens):
      if self._exhausted(self.doc + 1):
        return None
      self.doc, self.head = self.doc + 1, 0
      self._current = self._load(self.doc)
    n = min(space, len(self._current.tokens) - self.head)
    piece = self.doc, self._current, self.head, n
    self.head += n
    return piece

  def get_state(self) -> dict[str, Any]:
    """JSON-serializable state: config, step, current document and read head."""
    return {
        **self._config(), "step": int(self.step), "doc": int(self.doc),
        "head": int(self.head), "done": bool(self.done),
    }

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Restores ``get_state`` of a matching packer."""
    self._check_config(state)
    doc, head = int(state["doc"]), int(state["head"])
    current = self._load(doc) if doc >= 0 else None
    if head < 0 or (current is not None and head > len(current.tokens)):
      raise ValueError(f"Read head {head} out of range for document {doc}.")
    self.doc, self.head, self._current = doc, head, current
    self.step = int(state["step"])
    self.done = bool(state.get("done", False))

  def __repr__(self) -> str:
    return (
        f"SequentialPacker(batch={self.batch_size}, seq_len={self.seq_len}, "
        f"doc={self.doc}, head={self.head})"
    )


class PackedDataset(grain.IterDataset):
  """A packer as a grain ``IterDataset``: each ``iter()`` starts a fresh packer.

  Example::

    ds = PackedDataset(lambda: RSDB(stream, 8, 256, buffer_size=64, seed=0))
    it = iter(ds.map(add_loss_weights))  # a grain iterator; get_state/set_state resume it
  """

  def __init__(self, make_packer: Callable[[], _Packer]):
    super().__init__()
    self._make_packer = make_packer

  def __iter__(self) -> _Packer:
    return self._make_packer()

  def __str__(self) -> str:
    return "PackedDataset"
