"""Checkpointer: the record read through orbax, damaged checkpoints refused, hooks put back."""

import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.core import checkpoint
from jaxpapers.core.checkpoint import Checkpointer
from jaxpapers.core.errors import CheckpointError

STATE = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(4), "step": jnp.int32(7)}


@pytest.fixture
def saved(tmp_path):
  ckpt = Checkpointer(tmp_path / "checkpoints", "exp", {"lr": 0.1})
  ckpt.save(5, STATE, {"position": 3})
  ckpt.save(10, STATE, {"position": 6})
  ckpt.close()
  return tmp_path / "checkpoints"


def test_round_trip_and_record(saved):
  ckpt = Checkpointer(saved, "exp", {"lr": 0.1})
  assert ckpt.steps() == [5, 10] and ckpt.latest_step() == 10
  state, data_state = ckpt.restore(10, STATE)
  assert data_state == {"position": 6}
  for k, v in STATE.items():
    np.testing.assert_array_equal(state[k], v)
  assert ckpt._read_meta(5)["data_state"] == {"position": 3}
  ckpt.close()


def test_other_experiment_is_refused(saved):
  with pytest.raises(CheckpointError, match="belongs to experiment 'exp', not 'other'"):
    Checkpointer(saved, "other", {}).restore(10, STATE)


def test_damaged_arrays_are_refused_and_the_hooks_put_back(saved):
  chunks = [p for p in (saved / "10" / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert chunks
  for path in chunks:
    path.write_bytes(b"")
  hooks = sys.excepthook, sys.unraisablehook
  with pytest.raises(CheckpointError, match="corrupt or incomplete"):
    Checkpointer(saved, "exp", {}).restore(10, STATE)
  assert (sys.excepthook, sys.unraisablehook) == hooks


def test_quiet_restore_drops_only_closed_loop_noise_and_restores_hooks(monkeypatch):
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(str(u.exc_value)))
  monkeypatch.setattr(checkpoint, "_NOISE_QUIET_SECONDS", 0.01)
  previous = sys.unraisablehook

  def unraisable(message):
    return types.SimpleNamespace(exc_value=RuntimeError(message))

  with pytest.raises(ValueError, match="restore failed"):
    with checkpoint._quiet_failed_restore():
      sys.unraisablehook(unraisable("Event loop is closed"))
      sys.unraisablehook(unraisable("something else"))
      raise ValueError("restore failed")
  assert sys.unraisablehook is previous
  assert seen == ["something else"]
  with checkpoint._quiet_failed_restore():
    pass
  assert sys.unraisablehook is previous
