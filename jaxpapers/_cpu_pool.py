"""Sizes XLA's CPU thread pool for the local device count, before jax creates its CPU client.

XLA's CPU client runs every local device's part of a program on one shared pool of
`max(NPROC or the schedulable CPUs, local devices)` threads (`GetPjRtCpuClient` in
xla/pjrt/cpu/cpu_client.cc; jax reads `NPROC` when it first creates the client, not at import).
A launch that waits for its device's in-flight limit holds a pool thread, so with fake CPU
devices (`XLA_FLAGS=--xla_force_host_platform_device_count=N`, `JAX_NUM_CPU_DEVICES`) on a
machine with few cores the participants of an all-reduce may never all get a thread: jax 0.10.2
then aborts after 40 s in the rendezvous (2 devices on 2 cores: pools of 2 and 3 threads hang,
4 run). One thread per device for its part of a collective and one for its next launch avoid it.

The pool size also decides how XLA splits work between threads, and so the float summation order
(a 1-device smoke run's parameters differ bit-wise between pools of 2, 4 and 8 threads). The rule
therefore depends only on the machine and on the local device count, and gives every count up to
4 the same pool: a 1-process-2-device run and each process of a 2-process run sum alike. A value
the user set is kept; a value jaxpapers set in a parent process is recomputed in the child (its
device count may differ), which `JAXPAPERS_AUTO_NPROC` tells apart.

This module must not import jax.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Mapping, MutableMapping

NPROC = "NPROC"
AUTO_NPROC = "JAXPAPERS_AUTO_NPROC"
MIN_THREADS = 8
_DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def schedulable_cpus() -> int:
  """The CPUs this process may run on (what XLA uses without NPROC)."""
  try:
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return os.cpu_count() or 1


def pool_size(local_devices: int, cpus: int) -> int:
  """Threads for `local_devices` CPU devices: at least 2 per device, 8, and the CPUs."""
  return max(cpus, MIN_THREADS, 2 * local_devices)


def _configured_devices(environ: Mapping[str, str]) -> int | None:
  """`jax_num_cpu_devices` (jax's config once jax is imported, else its environment variable)."""
  jax = sys.modules.get("jax")
  config = getattr(jax, "config", None)
  if config is not None:
    try:
      return int(config.jax_num_cpu_devices)
    except (AttributeError, TypeError, ValueError):
      return None
  try:
    return int(environ["JAX_NUM_CPU_DEVICES"])
  except (KeyError, ValueError):
    return None


def local_cpu_devices(environ: Mapping[str, str]) -> int:
  """The CPU device count jax will create in this process.

  jax passes `jax_num_cpu_devices` to XLA when it is >= 0; otherwise XLA takes the last
  `--xla_force_host_platform_device_count` of `XLA_FLAGS`; otherwise one device.
  """
  configured = _configured_devices(environ)
  if configured is not None and configured >= 0:
    return max(configured, 1)
  flags = _DEVICE_COUNT_FLAG.findall(environ.get("XLA_FLAGS", ""))
  return max(int(flags[-1]), 1) if flags else 1


def size_cpu_thread_pool(environ: MutableMapping[str, str] | None = None) -> int | None:
  """Sets `NPROC` for this process's CPU devices unless the user set it.

  Args:
    environ: the environment to read and update (default `os.environ`, which jax reads).

  Returns:
    The pool size set, or None when the user's `NPROC` was kept.
  """
  environ = os.environ if environ is None else environ
  current = environ.get(NPROC)
  if current is not None and current != environ.get(AUTO_NPROC):
    return None
  size = pool_size(local_cpu_devices(environ), schedulable_cpus())
  environ[NPROC] = environ[AUTO_NPROC] = str(size)
  return size
