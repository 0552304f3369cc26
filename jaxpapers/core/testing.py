"""Helpers for tests that run the `jaxpapers` command in subprocesses."""

from __future__ import annotations

import os


def cli_env(devices: int = 1) -> dict[str, str]:
  """Environment of a CPU-only `jaxpapers` subprocess with `devices` fake devices.

  Clears inherited XLA flags and multi-host variables. NPROC sizes XLA's CPU thread pool: with
  several in-process devices on a machine of <= 2 cores, a jitted all-reduce can wait forever
  for a device thread (jax 0.10.2), and the pool size also changes float summation order, so
  every subprocess gets the same, sufficient value.
  """
  env = dict(os.environ)
  for key in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    env.pop(key, None)
  env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), PYTHONUNBUFFERED="1",
             NPROC=str(max(4, os.cpu_count() or 1)))
  return env
