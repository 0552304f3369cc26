"""Resumable batch iterators over sources.

``BatchIterator`` yields this process's slice of each global batch, with a
``"mask"`` marking real (1.0) and padding (0.0) rows, and can be saved and
restored with ``get_state``/``set_state``; ``full_batch`` is the full-batch
special case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxpapers.data.sources import Batch, Example, Source


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
