"""Helpers for tests that run the `jaxpapers` command in subprocesses."""

from __future__ import annotations

import os


def cli_env(devices: int = 1) -> dict[str, str]:
  """Environment of a CPU-only `jaxpapers` subprocess with `devices` fake devices.

  Clears inherited XLA flags and multi-host variables. Nothing else is set for the test: XLA's
  CPU thread pool is sized by `import jaxpapers` in the subprocess, as for a user (a pool size
  inherited from this process is recomputed there; one the user exported is kept).
  """
  env = dict(os.environ)
  for key in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(key, None)
  env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), PYTHONUNBUFFERED="1")
  return env
