"""Checkpoints of a training run: orbax CheckpointManager in WORKDIR/checkpoints.

A checkpoint holds the train state (model, optimizer, RNG key; arrays, restored with their
shardings) and a JSON record (step, data-iterator position, experiment, config). Both are read
through orbax (steps, the record, the state), never by reading orbax's files. Foreign or
unreadable checkpoints raise `CheckpointError` and are never modified or deleted.
"""

from __future__ import annotations

import contextlib
import gc
import time
from pathlib import Path
from typing import Any, Iterator

import jax
import orbax.checkpoint as ocp

from jaxpapers.core import noise
from jaxpapers.core.errors import CheckpointError

FORMAT = "jaxpapers.checkpoint/1"


# After a failed restore, wait until no callback noise came for this long (at most the limit).
_NOISE_QUIET_SECONDS = 0.25
_NOISE_WAIT_LIMIT_SECONDS = 5.0


@contextlib.contextmanager
def _quiet_failed_restore() -> Iterator[None]:
  """Filters the closed-loop noise of a failed restore (`jaxpapers.core.noise`) while it runs.

  On a failure the filter stays until those callbacks have come (no such noise for
  `_NOISE_QUIET_SECONDS` after the failure, at most `_NOISE_WAIT_LIMIT_SECONDS`); the previous
  hooks are restored in every case. Later stragglers are the CLI's to filter (it does, for the
  whole command).
  """
  with noise.closed_loop_noise_filtered() as last_noise:
    try:
      yield
    except BaseException:
      last_noise[0] = time.monotonic()  # the callbacks come after the failure
      gc.collect()  # and those of futures that only a collection releases
      deadline = time.monotonic() + _NOISE_WAIT_LIMIT_SECONDS
      while time.monotonic() < deadline and time.monotonic() - last_noise[0] < _NOISE_QUIET_SECONDS:
        time.sleep(0.02)
      raise


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
    """Steps of the finalized checkpoints on disk (ours or not), oldest first."""
    return sorted(ocp.path.step.checkpoint_steps(self.directory))

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
    meta = self._read_meta(step)
    if meta is None:
      raise CheckpointError(f"{path} is not a jaxpapers checkpoint (no readable meta record); {fix}")
    if meta.get("format") != FORMAT:
      raise CheckpointError(f"{path} is not a jaxpapers checkpoint (format {meta.get('format')!r}); {fix}")
    if meta.get("experiment") != self.experiment:
      raise CheckpointError(
          f"{path} belongs to experiment {meta.get('experiment')!r}, not {self.experiment!r}; {fix}")
    try:
      with _quiet_failed_restore():
        try:
          restored = self.manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_like(like))))
        except Exception:
          self.close()  # stop orbax's background work before the error ends the program
          raise
    except Exception as e:  # orbax raises many types for damaged files
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      reason = reason if len(reason) <= 300 else reason[:300] + "..."
      raise CheckpointError(f"checkpoint {path} is corrupt or incomplete ({reason}); {fix}") from None
    return restored["state"], meta["data_state"]

  def _read_meta(self, step: int) -> dict[str, Any] | None:
    """The JSON record of checkpoint `step`, through orbax; None when absent or unreadable."""
    try:
      meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception:  # no meta item, not JSON, not an orbax step: not ours  # pylint: disable=broad-except
      return None
    return meta if isinstance(meta, dict) else None
