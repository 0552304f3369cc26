"""Deterministic document streams for packing loaders (RSDB, arXiv 2602.17004).

A *document stream* is a random-access, possibly infinite sequence of
``Document(tokens, domain)`` records: ``tokens`` is a 1-D int32 array and
``domain`` an int in ``[0, num_domains)``. Document ``i`` is a pure function of
the stream's parameters and ``i``, so a position in the stream is just the next
document index, and a loader can regenerate any document it holds from its
index (compact, exact resume).

Streams provided here (nothing is downloaded):

* ``MarkovDocuments``: synthetic multi-domain text (the data of our
  CPU-scale Trinity study, experiments/trinity/README.md).
  Each domain is a first-order Markov chain over ``vocab_size`` tokens with
  Dirichlet(concentration) transition rows (``markov_domains``). Document ``i``
  draws, from ``np.random.default_rng([seed, i])``, a uniform domain, a length
  ``clip(round(lognormal(length_mean, length_sigma)), min_len, max_len)`` and
  its tokens: the first from the domain's initial distribution, each next one
  by inverse-CDF sampling (binary search over the cumulative row of the
  current token).
* ``StdlibDocuments``: real text, one Python standard-library source file per
  document, byte-level tokens (0..255); the domain is the file's top-level
  package (the largest ``max_domains - 1`` packages by bytes, the rest in
  ``"<other>"``; top-level modules are ``"<top>"``).
"""

from __future__ import annotations

import bisect
import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from jaxpapers.data.corpora import stdlib_paths


class Document(NamedTuple):
  """One document: its tokens (int32 [length]) and its domain id."""

  tokens: np.ndarray
  domain: int


class DocumentStream(Protocol):
  """Random-access documents; ``num_documents`` is None for infinite streams."""

  num_documents: int | None
  num_domains: int
  vocab_size: int

  @property
  def mix(self) -> np.ndarray:
    """Expected token share of each domain, float64 [num_domains]."""
    ...

  def __getitem__(self, index: int) -> Document:
    ...


def iterate(stream: DocumentStream, start: int = 0) -> Iterator[Document]:
  """Documents ``start, start + 1, ...`` of ``stream`` (until its end, if any)."""
  index = start
  while stream.num_documents is None or index < stream.num_documents:
    yield stream[index]
    index += 1


def _check_index(index: int, num_documents: int | None) -> int:
  index = int(index)
  if index < 0 or (num_documents is not None and index >= num_documents):
    raise IndexError(
        f"Document index {index} out of range [0, {num_documents or 'inf'})."
    )
  return index


# ---------------------------------------------------------------------------
# Synthetic Markov domains.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class MarkovDomains:
  """One first-order Markov chain per domain.

  Attributes:
    transitions: float64 [num_domains, vocab_size, vocab_size]; row
      ``transitions[d, a]`` is the next-token distribution after token ``a``.
    initial: float64 [num_domains, vocab_size], first-token distributions.
  """

  transitions: np.ndarray
  initial: np.ndarray

  def __post_init__(self):
    t, p0 = np.asarray(self.transitions), np.asarray(self.initial)
    if t.ndim != 3 or t.shape[1] != t.shape[2] or p0.shape != t.shape[:2]:
      raise ValueError(
          f"Need transitions [D, V, V] and initial [D, V], got {t.shape} and "
          f"{p0.shape}."
      )
    # Cumulative rows as Python lists: bisect over them is the fastest exact
    # sequential sampler without a compiler. The last entry is forced to 1.
    cdf = np.cumsum(t, axis=-1)
    cdf[..., -1] = 1.0
    cdf0 = np.cumsum(p0, axis=-1)
    cdf0[..., -1] = 1.0
    object.__setattr__(self, "_cdf", [[r.tolist() for r in d] for d in cdf])
    object.__setattr__(self, "_cdf0", [r.tolist() for r in cdf0])

  def __repr__(self) -> str:
    return f"MarkovDomains(num_domains={self.num_domains}, vocab_size={self.vocab_size})"

  @property
  def num_domains(self) -> int:
    return self.transitions.shape[0]

  @property
  def vocab_size(self) -> int:
    return self.transitions.shape[1]

  def sample(self, domain: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """A token path of ``length`` steps of chain ``domain`` (int32 [length])."""
    if length < 1:
      return np.zeros(0, np.int32)
    u = rng.random(length).tolist()
    rows, find = self._cdf[domain], bisect.bisect_right
    x = find(self._cdf0[domain], u[0])
    out = [x] * length
    for t in range(1, length):
      x = find(rows[x], u[t])
      out[t] = x
    return np.array(out, dtype=np.int32)


def markov_domains(
    num_domains: int = 8,
    vocab_size: int = 256,
    concentration: float = 0.1,
    seed: int = 0,
) -> MarkovDomains:
  """Random Markov chains, one per domain (our Trinity study's domains).

  Args:
    num_domains: Number of domains (chains), >= 1.
    vocab_size: Number of tokens, >= 2.
    concentration: Dirichlet concentration of every transition row (small =
      sparse, predictable rows), > 0.
    seed: Seed of the chains.

  Returns:
    The chains; initial distributions are Dirichlet(1) (uniform on the simplex).
  """
  if num_domains < 1:
    raise ValueError(f"num_domains must be >= 1, got {num_domains}.")
  if vocab_size < 2:
    raise ValueError(f"vocab_size must be >= 2, got {vocab_size}.")
  if concentration <= 0:
    raise ValueError(f"concentration must be > 0, got {concentration}.")
  rng = np.random.default_rng(seed)
  # Gamma-normalize (Dirichlet); a row that underflows to all-zeros is redrawn
  # as uniform, which at concentration >= 1e-3 and V >= 2 practically never happens.
  g = rng.gamma(concentration, size=(num_domains, vocab_size, vocab_size))
  sums = g.sum(-1, keepdims=True)
  transitions = np.where(sums > 0, g / np.where(sums > 0, sums, 1.0), 1.0 / vocab_size)
  initial = rng.dirichlet(np.ones(vocab_size), size=num_domains)
  return MarkovDomains(transitions, initial)


class MarkovDocuments:
  """Multi-domain Markov documents of log-normal length (our Trinity study's
  documents).

  Document ``i`` comes from ``np.random.default_rng([seed, i])``: domain
  ``integers(num_domains)``, then length
  ``clip(round(lognormal(length_mean, length_sigma)), min_len, max_len)``, then
  the chain's tokens.

  Attributes:
    domains: The chains.
    num_documents: Stream length, or None for an infinite stream.
  """

  def __init__(
      self,
      domains: MarkovDomains | None = None,
      *,
      seed: int = 0,
      length_mean: float = 7.0,
      length_sigma: float = 1.3,
      min_len: int = 16,
      max_len: int = 200_000,
      num_documents: int | None = None,
  ):
    """Creates the stream.

    Args:
      domains: The chains (default ``markov_domains()``: 8 domains, 256 tokens).
      seed: Seed of the documents (not of the chains), >= 0.
      length_mean: Mean of the log-length (numpy's ``lognormal`` ``mean``).
      length_sigma: Std of the log-length, >= 0.
      min_len: Shortest document, >= 1.
      max_len: Longest document, >= min_len.
      num_documents: Finite stream of this many documents; None = infinite.
    """
    if seed < 0:
      raise ValueError(f"seed must be >= 0, got {seed}.")
    if length_sigma < 0:
      raise ValueError(f"length_sigma must be >= 0, got {length_sigma}.")
    if not 1 <= min_len <= max_len:
      raise ValueError(f"Need 1 <= min_len <= max_len, got {min_len}, {max_len}.")
    if num_documents is not None and num_documents < 0:
      raise ValueError(f"num_documents must be >= 0, got {num_documents}.")
    self.domains = markov_domains() if domains is None else domains
    self.seed = int(seed)
    self.length_mean = float(length_mean)
    self.length_sigma = float(length_sigma)
    self.min_len, self.max_len = int(min_len), int(max_len)
    self.num_documents = num_documents
    self.num_domains = self.domains.num_domains
    self.vocab_size = self.domains.vocab_size

  @property
  def mix(self) -> np.ndarray:
    """Uniform: the domain is drawn independently of the length."""
    return np.full(self.num_domains, 1.0 / self.num_domains)

  def _header(self, rng: np.random.Generator) -> tuple[int, int]:
    domain = int(rng.integers(self.num_domains))
    length = round(float(rng.lognormal(self.length_mean, self.length_sigma)))
    return domain, int(np.clip(length, self.min_len, self.max_len))

  def length_and_domain(self, index: int) -> tuple[int, int]:
    """``(length, domain)`` of document ``index`` without sampling its tokens."""
    index = _check_index(index, self.num_documents)
    domain, length = self._header(np.random.default_rng([self.seed, index]))
    return length, domain

  def __getitem__(self, index: int) -> Document:
    index = _check_index(index, self.num_documents)
    rng = np.random.default_rng([self.seed, index])
    domain, length = self._header(rng)
    return Document(self.domains.sample(domain, length, rng), domain)

  def __len__(self) -> int:
    if self.num_documents is None:
      raise TypeError("An infinite MarkovDocuments stream has no len().")
    return self.num_documents

  def __iter__(self) -> Iterator[Document]:
    return iterate(self)

  def __repr__(self) -> str:
    return (
        f"MarkovDocuments(domains={self.num_domains}, vocab={self.vocab_size}, "
        f"seed={self.seed}, lognormal({self.length_mean:g}, "
        f"{self.length_sigma:g}) in [{self.min_len}, {self.max_len}], "
        f"num_documents={self.num_documents})"
    )


# ---------------------------------------------------------------------------
# Real text: the Python standard library.
# ---------------------------------------------------------------------------


class StdlibDocuments:
  """Source files as byte-level documents, one file per document.

  Documents are the files in the given order (the default is sorted by path,
  so packages are contiguous: the worst case for sequential packing). With
  ``repeat`` the stream is infinite and document ``i`` is file
  ``i % num_files``. Empty files give empty documents (loaders skip them).

  Attributes:
    paths: The files.
    domain_names: Name of each domain id.
    file_domains: Domain id of each file, int32 [num_files].
    file_sizes: Byte size of each file, int64 [num_files].
  """

  vocab_size = 256

  def __init__(
      self,
      paths: Sequence[str | Path] | None = None,
      *,
      max_domains: int = 8,
      repeat: bool = False,
  ):
    """Indexes the files (sizes only; contents are read on access).

    Args:
      paths: The files; default ``stdlib_paths(recursive=True)``.
      max_domains: Number of domain buckets, >= 1: the largest
        ``max_domains - 1`` top-level packages (by bytes) get their own domain,
        the rest share ``"<other>"`` (top-level modules form ``"<top>"``).
      repeat: Cycle through the files forever.
    """
    if max_domains < 1:
      raise ValueError(f"max_domains must be >= 1, got {max_domains}.")
    self.paths = stdlib_paths(recursive=True) if paths is None else [Path(p) for p in paths]
    if not self.paths:
      raise ValueError("StdlibDocuments got no paths.")
    missing = [p for p in self.paths if not p.is_file()]
    if missing:
      raise ValueError(f"Text file not found: {missing[0]}")
    root = Path(os.path.commonpath([p.parent for p in self.paths]))
    keys = [
        rel.parts[0] if len(rel.parts) > 1 else "<top>"
        for rel in (p.relative_to(root) for p in self.paths)
    ]
    self.file_sizes = np.array([p.stat().st_size for p in self.paths], np.int64)
    if repeat and not self.file_sizes.any():
      raise ValueError("StdlibDocuments(repeat=True) needs a non-empty file.")
    totals: dict[str, int] = {}
    for key, size in zip(keys, self.file_sizes.tolist()):
      totals[key] = totals.get(key, 0) + size
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    if len(ranked) > max_domains:
      ranked = ranked[:max_domains - 1] + ["<other>"]
    self.domain_names = ranked
    index = {name: i for i, name in enumerate(ranked)}
    other = index.get("<other>")
    self.file_domains = np.array(
        [index.get(k, other) for k in keys], np.int32
    )
    self.num_files = len(self.paths)
    self.num_documents = None if repeat else self.num_files
    self.num_domains = len(ranked)

  @property
  def mix(self) -> np.ndarray:
    """Byte share of each domain over the files."""
    shares = np.bincount(
        self.file_domains, weights=self.file_sizes, minlength=self.num_domains
    )
    return shares / max(shares.sum(), 1)

  def __getitem__(self, index: int) -> Document:
    index = _check_index(index, self.num_documents) % self.num_files
    data = self.paths[index].read_bytes()
    tokens = np.frombuffer(data, dtype=np.uint8).astype(np.int32)
    return Document(tokens, int(self.file_domains[index]))

  def __len__(self) -> int:
    if self.num_documents is None:
      raise TypeError("A repeating StdlibDocuments stream has no len().")
    return self.num_documents

  def __iter__(self) -> Iterator[Document]:
    return iterate(self)

  def __repr__(self) -> str:
    return (
        f"StdlibDocuments(files={self.num_files}, "
        f"bytes={int(self.file_sizes.sum())}, domains={self.domain_names}, "
        f"repeat={self.num_documents is None})"
    )
