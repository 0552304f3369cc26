"""Checkpoints of a training run: orbax CheckpointManager in WORKDIR/checkpoints.

A checkpoint holds the train state (model, optimizer, RNG key; arrays, restored with their
shardings) and a JSON record (step, data-iterator position, experiment, config). Foreign or
unreadable checkpoints raise `CheckpointError` and are never modified or deleted.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxpapers.core.errors import CheckpointError

FORMAT = "jaxpapers.checkpoint/1"


def _closed_loop_noise(exc: BaseException | None) -> bool:
  return isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)


@contextlib.contextmanager
def _quiet_failed_restore():
  """A failed orbax restore leaves tensorstore callbacks that hit a closed asyncio loop and
  print tracebacks from background threads; drop exactly those (kept off after a failure, as
  the program then ends with its one-line error)."""
  previous_hook, previous_unraisable = sys.excepthook, sys.unraisablehook

  def excepthook(exc_type, exc, tb):
    if not _closed_loop_noise(exc):
      previous_hook(exc_type, exc, tb)

  def unraisablehook(unraisable):
    if not _closed_loop_noise(unraisable.exc_value):
      previous_unraisable(unraisable)

  sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
  yield
  sys.excepthook, sys.unraisablehook = previous_hook, previous_unraisable


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) to restore a checkpoint into `tree`'s layout."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)


class Checkpointer:
  """Saves and restores train states of one experiment run.

  Args:
    directory: where checkpoints live (created on first save).
    experiment: name stored in each checkpoint; restoring another experiment's is refused.
    config: the resolved config dict, stored with each checkpoint.
    keep: number of most recent checkpoints kept.
  """

  def __init__(self, directory: Path, experiment: str, config: dict[str, Any], keep: int = 2):
    self.directory = Path(directory).absolute()
    self.experiment = experiment
    self.config = config
    self._keep = keep
    self._manager = None

  @property
  def manager(self) -> ocp.CheckpointManager:
    if self._manager is None:
      options = ocp.CheckpointManagerOptions(
          max_to_keep=self._keep, enable_async_checkpointing=False, create=True)
      self._manager = ocp.CheckpointManager(self.directory, options=options)
    return self._manager

  def close(self) -> None:
    """Releases orbax's resources (a later save or restore reopens them)."""
    if self._manager is not None:
      self._manager.close()
      self._manager = None

  def steps(self) -> list[int]:
    """Steps of the checkpoints on disk (ours or not), oldest first."""
    if not self.directory.exists():
      return []
    return sorted(int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Any, data_state: dict[str, Any]) -> None:
    """Writes the checkpoint of `step` (synchronously: donated buffers are safe after)."""
    meta = {"format": FORMAT, "experiment": self.experiment, "step": int(step),
            "data_state": data_state, "config": self.config}
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self.manager.wait_until_finished()

  def restore(self, step: int, like: Any) -> tuple[Any, dict[str, Any]]:
    """Restores the checkpoint of `step` into the layout and shardings of `like`.

    Returns:
      (state, data_state).

    Raises:
      CheckpointError: the checkpoint is foreign, of another experiment, or unreadable.
    """
    path = self.directory / str(step)
    fix = (f"it was left untouched: move {self.directory} away to start fresh, "
           "or pass --overwrite")
    meta_file = path / "meta" / "metadata"
    try:
      meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
      raise CheckpointError(f"{path} is not a jaxpapers checkpoint (no readable meta record); {fix}") from None
    if meta.get("format") != FORMAT:
      raise CheckpointError(f"{path} is not a jaxpapers checkpoint (format {meta.get('format')!r}); {fix}")
    if meta.get("experiment") != self.experiment:
      raise CheckpointError(
          f"{path} belongs to experiment {meta.get('experiment')!r}, not {self.experiment!r}; {fix}")
    try:
      with _quiet_failed_restore():
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_like(like))))
    except Exception as e:  # orbax raises many types for damaged files
      self.close()  # stop orbax's background work before the error ends the program
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      reason = reason if len(reason) <= 300 else reason[:300] + "..."
      raise CheckpointError(f"checkpoint {path} is corrupt or incomplete ({reason}); {fix}") from None
    return restored["state"], meta["data_state"]
