"""Keeps libtpu quiet on a host without TPU chips, before jax loads it.

With libtpu installed (the `tpu` extra, for ahead-of-time TPU compiles from a CPU host) and
`JAX_PLATFORMS` unset, jax initialises the TPU plugin when it first looks for devices. On a host
with no TPU chips libtpu cannot learn its accelerator type or worker hostnames (there is no TPU
metadata server) and prints five lines of warnings and errors before falling back to the CPU,
ahead of any one-line error of ours. Telling it a single local worker of a one-chip v5e slice
silences that; it changes nothing else here: the plugin still finds no chips, jax still runs on
the CPU, and `jax.experimental.topologies.get_topology_desc(name, "tpu")` still builds the
topology it is asked for (checked for v4, v5e, v5p and v6e shapes).

libtpu also lets one process at a time load it (a lock file in /tmp, meant to keep two programs
off the same chips): a second `jaxpapers plan --topology`, or a subprocess of a process that
compiled for a topology, would fail. With no chip to guard, `ALLOW_MULTIPLE_LIBTPU_LOAD=1` lifts it.

Nothing is set on a host with TPU chips (the PCI check of `jax._src.hardware_utils`) or when
libtpu is not installed, and no variable the user set is changed. This module must not import jax.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pathlib
from typing import MutableMapping

GOOGLE_PCI_VENDOR = "0x1ae0"
QUIET_DEFAULTS = {"TPU_ACCELERATOR_TYPE": "v5litepod-1", "TPU_WORKER_HOSTNAMES": "localhost"}
MULTIPLE_LOADS = {"ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}


def tpu_chips_attached() -> bool:
  """Whether a Google PCI device (a TPU chip) is attached to this host."""
  for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      if pathlib.Path(vendor).read_text().strip() == GOOGLE_PCI_VENDOR:
        return True
    except OSError:
      continue
  return False


def libtpu_installed() -> bool:
  return importlib.util.find_spec("libtpu") is not None


def quiet_libtpu(environ: MutableMapping[str, str] | None = None, *,
                 chips: bool | None = None, installed: bool | None = None) -> dict[str, str]:
  """Where libtpu is installed and no chip is attached: sets `QUIET_DEFAULTS` unless the user set
  either of them, and `MULTIPLE_LOADS` unless set.

  Args:
    environ: the environment to update (default `os.environ`, which libtpu reads).
    chips, installed: overrides of the two checks (for tests).

  Returns:
    The variables set.
  """
  environ = os.environ if environ is None else environ
  if (tpu_chips_attached() if chips is None else chips):
    return {}
  if not (libtpu_installed() if installed is None else installed):
    return {}
  added = {} if any(k in environ for k in QUIET_DEFAULTS) else dict(QUIET_DEFAULTS)
  added.update({k: v for k, v in MULTIPLE_LOADS.items() if k not in environ})
  environ.update(added)
  return added
