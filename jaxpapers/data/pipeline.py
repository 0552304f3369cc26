"""Batched input pipelines on grain: training batches, evaluation batches, the full batch.

Training data is a grain `MapDataset` of global batches: example indices, shuffled by grain each
epoch (`MapDataset.shuffle`, reseeded per epoch), cut into batches within each epoch
(`MapDataset.batch`), repeated, and mapped to this process's rows of the gathered examples. An
element depends only on its index, so the iterator's state (`get_state`/`set_state`, grain's
`{"next_index": k}`) is the whole data position: the trainer checkpoints it beside the model
with orbax and a resumed run reads the same batches as an uninterrupted one.

Every global batch is padded to `global_size = round_up(batch_size, pad_to_multiple)` rows by
repeating its last example and carries `"mask"` (float32, 1.0 on real rows, 0.0 on padding);
process `p` of `P` keeps rows `[p * global_size // P, (p + 1) * global_size // P)`, so the
global batch is the same for any number of processes.

Sources are random-access (`len`, `src[i]`, optionally `gather(indices)`): `ArraySource`,
`TfdsSource` (TFDS's `data_source`), `TextSource`; see `jaxpapers.data.sources`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from jaxpapers.data.sources import Batch, Example, Source

# One background thread gathers the next batches while the device trains on this one.
READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)


def _stack(examples: Sequence[Example]) -> Batch:
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


@dataclasses.dataclass(frozen=True)
class _GatherRows:
  """Global batch of example indices -> this process's rows of the padded, masked batch."""

  source: Source
  global_size: int
  rows: slice

  def __call__(self, indices: np.ndarray) -> Batch:
    indices = np.asarray(indices).reshape(-1)
    padded = np.full(self.global_size, indices[-1], dtype=indices.dtype)
    padded[:len(indices)] = indices
    mask = np.zeros(self.global_size, np.float32)
    mask[:len(indices)] = 1.0
    local = padded[self.rows]
    if hasattr(self.source, "gather"):
      batch = self.source.gather(local)
    else:
      batch = _stack([self.source[int(i)] for i in local])
    batch["mask"] = mask[self.rows]
    return batch


def _check(num_examples: int, batch_size: int, seed: int, drop_remainder: bool,
           process_index: int, process_count: int, pad_to_multiple: int) -> None:
  if num_examples < 1:
    raise ValueError("the source is empty: no batch can be made")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if drop_remainder and batch_size > num_examples:
    raise ValueError(f"batch_size={batch_size} exceeds the {num_examples} examples with "
                     "drop_remainder=True: no batch would be produced")
  if not 0 <= seed < 2**32:
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  if pad_to_multiple < 1:
    raise ValueError(f"pad_to_multiple must be >= 1, got {pad_to_multiple}")
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count})")
  padded = _round_up(batch_size, pad_to_multiple)
  if padded % process_count:
    raise ValueError(f"global batch size {padded} (batch_size={batch_size}, pad_to_multiple="
                     f"{pad_to_multiple}) is not divisible by process_count={process_count}")


def batch_dataset(source: Source, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                  drop_remainder: bool = True, repeat: bool = True, process_index: int = 0,
                  process_count: int = 1, pad_to_multiple: int = 1) -> grain.MapDataset:
  """This process's rows of each global batch of `source`, as a grain `MapDataset`.

  Args:
    source: the examples (random access).
    batch_size: global batch size (examples per step over all processes).
    seed: grain's shuffle seed; epoch `e` is shuffled with seed `seed + e`.
    shuffle: whether to permute the examples each epoch.
    drop_remainder: drop the last partial batch of each epoch; if False it is padded to the
      full batch size and masked.
    repeat: repeat the epochs forever (training) or stop after one (evaluation).
    process_index: this process's index in `[0, process_count)`.
    process_count: number of processes sharing each global batch.
    pad_to_multiple: pad the global batch to a multiple of this (e.g. the mesh size).

  Returns:
    A dataset of dicts of numpy arrays plus `"mask"`; transform it further with grain
    (`.map(...)`) before iterating.
  """
  _check(len(source), batch_size, seed, drop_remainder, process_index, process_count,
         pad_to_multiple)
  global_size = _round_up(batch_size, pad_to_multiple)
  per_process = global_size // process_count
  rows = slice(process_index * per_process, (process_index + 1) * per_process)
  ds = grain.MapDataset.range(len(source))
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  if repeat:
    ds = ds.repeat()
  return ds.map(_GatherRows(source, global_size, rows))


def iterator(dataset: grain.MapDataset | grain.IterDataset) -> grain.DatasetIterator:
  """A checkpointable iterator over `dataset`, prefetching with `READ_OPTIONS`."""
  if isinstance(dataset, grain.MapDataset):
    dataset = dataset.to_iter_dataset(READ_OPTIONS)
  return iter(dataset)


def batches(source: Source, batch_size: int, **kwargs: Any) -> grain.DatasetIterator:
  """`iterator(batch_dataset(source, batch_size, **kwargs))`: training batches, resumable."""
  return iterator(batch_dataset(source, batch_size, **kwargs))


def eval_batches(source: Source, batch_size: int, *, pad_to_multiple: int = 1,
                 process_index: int = 0, process_count: int = 1) -> list[Batch]:
  """One ordered pass over `source` in equal-shape batches, the last one padded and masked.

  Evaluation metrics weight rows by `"mask"` (`jaxpapers.core.metrics.mean`), so the padding of
  the last batch changes nothing, and every batch has one shape (one compiled program).
  """
  return list(batch_dataset(source, min(batch_size, len(source)), shuffle=False,
                            drop_remainder=False, repeat=False, pad_to_multiple=pad_to_multiple,
                            process_index=process_index, process_count=process_count))


class IndexedBatches:
  """A resumable iterator whose batch `i` is a function of `i` alone: `{"index": i}` is its whole
  state (the trainer's checkpoint record, as for grain's iterators). Subclasses define `batch`."""

  index: int = 0

  def batch(self, index: int) -> Batch:
    raise NotImplementedError

  def __iter__(self) -> "IndexedBatches":
    return self

  def __next__(self) -> Batch:
    out = self.batch(self.index)
    self.index += 1
    return out

  def get_state(self) -> dict[str, Any]:
    return {"index": self.index}

  def set_state(self, state: dict[str, Any]) -> None:
    self.index = int(state["index"])


class FullBatch:
  """The whole of `source`, in order, as one padded, masked batch at every step.

  The same dict object is returned each time, so the trainer sends it to the devices once (do
  not mutate it). The state counts the steps taken.
  """

  def __init__(self, source: Source, *, pad_to_multiple: int = 1, process_index: int = 0,
               process_count: int = 1):
    self.batch = eval_batches(source, len(source), process_index=process_index,
                              process_count=process_count,
                              pad_to_multiple=math.lcm(pad_to_multiple, process_count))[0]
    self.steps = 0

  def __iter__(self) -> FullBatch:
    return self

  def __next__(self) -> Batch:
    self.steps += 1
    return self.batch

  def get_state(self) -> dict[str, int]:
    return {"steps": self.steps}

  def set_state(self, state: dict[str, Any]) -> None:
    steps = int(state["steps"])
    if steps < 0:
      raise ValueError(f"invalid full-batch state {state}")
    self.steps = steps


def full_batch(source: Source, *, pad_to_multiple: int = 1, process_index: int = 0,
               process_count: int = 1) -> FullBatch:
  """`FullBatch(source, ...)`: full-batch training (the batch padded to a multiple of both
  `pad_to_multiple` and `process_count`)."""
  return FullBatch(source, pad_to_multiple=pad_to_multiple, process_index=process_index,
                   process_count=process_count)
