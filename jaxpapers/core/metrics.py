"""Metrics: masked means accumulated over batches, and metrics.jsonl records.

`Mean` is a (total, count) pair: evaluation functions return one per metric and the trainer sums
them over the batches of a split, so a padded last batch gives the exact mean. `MetricsWriter`
writes metrics.jsonl (and TensorBoard events when tensorboardX is installed); only process 0
writes. Each line is one JSON object with a `step` and scalar metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Mean(NamedTuple):
  """A mean kept as its sum and its count, so means over several batches add exactly."""

  total: jax.Array
  count: jax.Array

  def __add__(self, other: Mean) -> Mean:  # pytype: disable=signature-mismatch
    return Mean(self.total + other.total, self.count + other.count)

  def value(self) -> jax.Array:
    return self.total / jnp.maximum(self.count, 1e-30)


def mean(values: jax.Array, mask: jax.Array | None = None) -> Mean:
  """The mean of `values` over the entries where `mask` is 1 (all entries without a mask).

  `mask` broadcasts against `values` from the left (a `[batch]` row mask weights every entry of
  its row).
  """
  values = jnp.asarray(values, jnp.float32)
  if mask is None:
    return Mean(jnp.sum(values), jnp.asarray(values.size, jnp.float32))
  mask = jnp.asarray(mask, jnp.float32)
  mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim)), values.shape)
  return Mean(jnp.sum(values * mask), jnp.sum(mask))


def as_mean(value: Any) -> Mean:
  """`value` if it is a `Mean`, else a scalar counted once (a metric that needs no data)."""
  if isinstance(value, Mean):
    return Mean(jnp.asarray(value.total, jnp.float32), jnp.asarray(value.count, jnp.float32))
  return Mean(jnp.asarray(value, jnp.float32), jnp.ones((), jnp.float32))


def _scalar(value: Any) -> Any:
  if isinstance(value, (str, bool)) or value is None:
    return value
  value = np.asarray(value)
  return value.item() if value.size == 1 else value.tolist()


class MetricsWriter:
  """Appends `{"step": s, "kind": ..., **metrics}` lines to WORKDIR/metrics.jsonl."""

  def __init__(self, workdir: Path | None, tensorboard: bool = True):
    self.path = None if workdir is None else Path(workdir) / "metrics.jsonl"
    self._active = self.path is not None and jax.process_index() == 0
    self._tb = None
    if self._active and tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))
      except Exception:  # pylint: disable=broad-except  # optional: absent or broken install
        self._tb = None

  def rewind(self, step: int) -> None:
    """Drops the records a run resumed at `step` will write again (all of them at step 0)."""
    if not self._active or not self.path.exists():
      return

    def keep(record: dict[str, Any]) -> bool:
      return record["step"] < step or (record["step"] == step and record["kind"] == "train")

    kept = [line for line in self.path.read_text().splitlines() if line.strip() and keep(json.loads(line))]
    self.path.write_text("".join(line + "\n" for line in kept))

  def write(self, step: int, kind: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Records scalar metrics of one kind ("train", "eval") at `step`; returns the record."""
    record = {"step": int(step), "kind": kind, **{k: _scalar(v) for k, v in metrics.items()}}
    if self._active:
      with self.path.open("a") as f:
        f.write(json.dumps(record) + "\n")
      if self._tb is not None:
        for k, v in record.items():
          if k not in ("step", "kind") and isinstance(v, (int, float)):
            self._tb.add_scalar(f"{kind}/{k}", v, step)
    return record

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
  """All records of a metrics.jsonl file."""
  return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def series(records: Iterable[dict[str, Any]], key: str, kind: str = "eval") -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of one metric across records of a kind."""
  pairs = [(r["step"], r[key]) for r in records if r.get("kind") == kind and key in r]
  if not pairs:
    return np.zeros(0, int), np.zeros(0)
  steps, values = zip(*pairs)
  return np.asarray(steps), np.asarray(values)
