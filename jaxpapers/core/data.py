"""Data sources and resumable batch iterators for the shared training loop.

A *source* is any random-access sequence of examples: ``len(src)`` and
``src[i]`` returning a dict of numpy arrays (every example has the same keys,
shapes and dtypes). A source may also provide ``gather(indices)`` returning
the stacked examples at ``indices``; ``BatchIterator`` uses it when present
instead of reading examples one by one.

Sources provided here:

* ``ArraySource``: rows of equal-length arrays (data generated in code).
* ``digits_source``: scikit-learn's 8x8 digits (shipped with the package).
* ``TextSource``: next-token windows over local text files (by default the
  Python standard library), at byte or character level.
* ``tfds_source``: a TensorFlow Datasets ``data_source`` (no TensorFlow
  needed), for datasets already prepared on disk.

``BatchIterator`` yields this process's slice of each global batch, with a
``"mask"`` marking real (1.0) and padding (0.0) rows, and can be saved and
restored with ``get_state``/``set_state``.
"""

from __future__ import annotations

import math
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

Example = dict[str, np.ndarray]
Batch = dict[str, np.ndarray]

_TFDS_HINT = "pip install 'jaxpapers[tfds]'"


class Source(Protocol):
  """A random-access sequence of examples."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Example:
    ...


# ---------------------------------------------------------------------------
# Sources.
# ---------------------------------------------------------------------------


class ArraySource:
  """Examples are the rows of equal-length arrays.

  Attributes:
    arrays: The feature name -> array mapping; row ``i`` of each array is a
      field of example ``i``.
  """

  def __init__(self, arrays: Mapping[str, Any]):
    if not arrays:
      raise ValueError("ArraySource needs at least one array.")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    lengths = {k: _leading_length(k, v) for k, v in self.arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(
          f"ArraySource arrays must share their leading length, got {lengths}."
      )
    self._length = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Example:
    return {k: v[index] for k, v in self.arrays.items()}

  def gather(self, indices: np.ndarray) -> Batch:
    """Returns the examples at ``indices``, stacked (numpy fancy indexing)."""
    return {k: v[indices] for k, v in self.arrays.items()}

  def __repr__(self) -> str:
    fields = ", ".join(
        f"{k}: {v.dtype}{list(v.shape[1:])}" for k, v in self.arrays.items()
    )
    return f"ArraySource(len={self._length}, {fields})"


def _leading_length(name: str, array: np.ndarray) -> int:
  if array.ndim == 0:
    raise ValueError(f"ArraySource array {name!r} is a scalar; need ndim >= 1.")
  return array.shape[0]


def digits_source(
    split: str = "train", test_fraction: float = 0.2, seed: int = 0
) -> ArraySource:
  """scikit-learn's 8x8 digits (1797 images, bundled, no download).

  Args:
    split: ``"train"`` or ``"test"``.
    test_fraction: Fraction of the examples in the test split, in (0, 1).
    seed: Seed of the permutation that assigns examples to splits.

  Returns:
    An ``ArraySource`` with ``image`` float32 [64] in [0, 1] and ``label``
    int32 in 0..9, rows in their original order.
  """
  from sklearn.datasets import load_digits

  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
  digits = load_digits()
  n = digits.data.shape[0]
  perm = np.random.default_rng(seed).permutation(n)
  n_test = int(round(n * test_fraction))
  rows = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
  return ArraySource({
      "image": (digits.data[rows] / 16.0).astype(np.float32),
      "label": digits.target[rows].astype(np.int32),
  })


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


class TfdsSource:
  """A TFDS data source whose examples are converted to numpy arrays.

  Nested feature dicts are flattened with ``/``-joined keys.
  """

  def __init__(self, data_source: Any):
    self.data_source = data_source

  def __len__(self) -> int:
    return len(self.data_source)

  def __getitem__(self, index: int) -> Example:
    return _to_numpy(self.data_source[index])


def _to_numpy(example: Mapping[str, Any], prefix: str = "") -> Example:
  out = {}
  for key, value in example.items():
    if isinstance(value, Mapping):
      out.update(_to_numpy(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = np.asarray(value)
  return out


def tfds_source(
    name: str, split: str, *, data_dir: str | None = None
) -> TfdsSource:
  """A prepared TFDS dataset as a source (no download, no TensorFlow).

  Args:
    name: TFDS dataset name, e.g. ``"mnist"``.
    split: Split, e.g. ``"train"`` or ``"test[:10%]"``.
    data_dir: TFDS data directory (default: TFDS's own default).

  Returns:
    A ``TfdsSource`` whose examples are dicts of numpy arrays.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f"tfds_source needs tensorflow-datasets: {_TFDS_HINT}"
    ) from e
  return TfdsSource(
      tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  )


# ---------------------------------------------------------------------------
# Batching.
# ---------------------------------------------------------------------------


def _stack(examples: Sequence[Example]) -> Batch:
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _gather(source: Source, indices: np.ndarray) -> Batch:
  if hasattr(source, "gather"):
    return source.gather(indices)
  return _stack([source[int(i)] for i in indices])


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class BatchIterator:
  """Infinite, resumable iterator over (per-process slices of) batches.

  Epoch ``e`` visits the examples in the order
  ``np.random.default_rng([seed, e]).permutation(len(source))`` (identity if
  not shuffling), ``batch_size`` (global) at a time. Every global batch is
  padded to ``global_size = round_up(batch_size, pad_to_multiple)`` rows by
  repeating its last example; ``next()`` returns rows
  ``[p * global_size // process_count, (p + 1) * global_size // process_count)``
  (``p = process_index``) as a dict of stacked arrays plus ``"mask"``
  (float32, 1.0 for real examples, 0.0 for padding). When every epoch is one
  unshuffled batch (full-batch training) the same dict object is returned each
  step, so consumers can skip re-transferring it; do not mutate it.
  """

  def __init__(
      self,
      source: Source,
      batch_size: int,
      *,
      seed: int = 0,
      shuffle: bool = True,
      drop_remainder: bool = True,
      process_index: int = 0,
      process_count: int = 1,
      pad_to_multiple: int = 1,
  ):
    """Creates the iterator at epoch 0, position 0.

    Args:
      source: The examples.
      batch_size: Global batch size (examples per step over all processes).
      seed: Shuffling seed (non-negative).
      shuffle: Whether to permute the examples each epoch.
      drop_remainder: Drop the last partial batch of each epoch; if False it
        is padded to the full batch size and masked.
      process_index: This process's index in ``[0, process_count)``.
      process_count: Number of processes sharing each global batch.
      pad_to_multiple: Pad the global batch to a multiple of this.
    """
    self.source = source
    self.num_examples = len(source)
    self.batch_size = int(batch_size)
    self.seed = int(seed)
    self.shuffle = shuffle
    self.drop_remainder = drop_remainder
    self.process_index = int(process_index)
    self.process_count = int(process_count)
    self.pad_to_multiple = int(pad_to_multiple)
    self._validate()
    self.global_size = _round_up(self.batch_size, self.pad_to_multiple)
    per_process = self.global_size // self.process_count
    self._rows = slice(
        self.process_index * per_process, (self.process_index + 1) * per_process
    )
    self.epoch = 0
    self.position = 0
    self._perm_epoch, self._perm = -1, np.arange(0)
    self._repeated: Batch | None = None

  def _validate(self) -> None:
    if self.num_examples < 1:
      raise ValueError("BatchIterator got an empty source.")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
    if self.drop_remainder and self.batch_size > self.num_examples:
      raise ValueError(
          f"batch_size={self.batch_size} exceeds the {self.num_examples} "
          "examples with drop_remainder=True: no batch would be produced."
      )
    if self.seed < 0:
      raise ValueError(f"seed must be >= 0, got {self.seed}.")
    if self.pad_to_multiple < 1:
      raise ValueError(
          f"pad_to_multiple must be >= 1, got {self.pad_to_multiple}."
      )
    if self.process_count < 1:
      raise ValueError(f"process_count must be >= 1, got {self.process_count}.")
    if not 0 <= self.process_index < self.process_count:
      raise ValueError(
          f"process_index={self.process_index} not in "
          f"[0, process_count={self.process_count})."
      )
    padded = _round_up(self.batch_size, self.pad_to_multiple)
    if padded % self.process_count:
      raise ValueError(
          f"Global batch size {padded} (batch_size={self.batch_size}, "
          f"pad_to_multiple={self.pad_to_multiple}) is not divisible by "
          f"process_count={self.process_count}."
      )

  @property
  def steps_per_epoch(self) -> int:
    """Number of batches in one epoch."""
    if self.drop_remainder:
      return self.num_examples // self.batch_size
    return math.ceil(self.num_examples / self.batch_size)

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._perm_epoch:
      if self.shuffle:
        rng = np.random.default_rng([self.seed, epoch])
        self._perm = rng.permutation(self.num_examples)
      else:
        self._perm = np.arange(self.num_examples)
      self._perm_epoch = epoch
    return self._perm

  def _epoch_done(self) -> bool:
    left = self.num_examples - self.position
    return left <= 0 or (self.drop_remainder and left < self.batch_size)

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> Batch:
    if self._epoch_done():
      self.epoch += 1
      self.position = 0
    start = self.position
    perm = self._permutation(self.epoch)
    indices = perm[self.position:self.position + self.batch_size]
    self.position += len(indices)
    if self._repeated is not None and start == 0:
      return self._repeated
    mask = np.zeros(self.global_size, np.float32)
    mask[:len(indices)] = 1.0
    padded = np.full(self.global_size, indices[-1], dtype=indices.dtype)
    padded[:len(indices)] = indices
    batch = _gather(self.source, padded[self._rows])
    batch["mask"] = mask[self._rows]
    if not self.shuffle and self.steps_per_epoch == 1:
      self._repeated = batch  # every epoch is this one batch: hand out the same object
    return batch

  def get_state(self) -> dict[str, int]:
    """JSON-serializable position of the iterator."""
    return {
        "epoch": int(self.epoch),
        "position": int(self.position),
        "seed": self.seed,
        "batch_size": self.batch_size,
        "num_examples": self.num_examples,
    }

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Restores a position saved by ``get_state`` of a matching iterator."""
    for key in ("seed", "batch_size", "num_examples"):
      if key in state and int(state[key]) != getattr(self, key):
        raise ValueError(
            f"State mismatch: state has {key}={state[key]}, this iterator "
            f"has {key}={getattr(self, key)}."
        )
    epoch, position = int(state["epoch"]), int(state["position"])
    if epoch < 0 or not 0 <= position <= self.num_examples:
      raise ValueError(f"Invalid state epoch={epoch}, position={position}.")
    self.epoch, self.position = epoch, position


def full_batch(
    source: Source,
    *,
    pad_to_multiple: int = 1,
    process_index: int = 0,
    process_count: int = 1,
) -> BatchIterator:
  """A BatchIterator returning the whole dataset, in order, at every step.

  The global batch is padded (and masked) to a multiple of both
  ``pad_to_multiple`` and ``process_count``.
  """
  return BatchIterator(
      source,
      len(source),
      shuffle=False,
      drop_remainder=False,
      process_index=process_index,
      process_count=process_count,
      pad_to_multiple=math.lcm(pad_to_multiple, process_count),
  )
