"""TPU topologies from a CPU host: abstract TPU devices for ahead-of-time compiles.

With libtpu installed (`pip install 'jaxpapers[tpu]'`), `get_topology_desc(name, "tpu")` gives
the devices of a TPU slice without any TPU attached, and `jax.jit(f).lower(...).compile()` on a
mesh of them runs the real TPU compiler (MaxText's `train_compile.py` plans pod runs this way).
`jaxpapers plan --topology NAME` uses it (`jaxpapers.core.plan`).
"""

from __future__ import annotations

import importlib.util
from typing import Any, NamedTuple

from jaxpapers.core.errors import UsageError

GiB = 2**30
# HBM per chip, by the device_kind jax reports. Public sources (Google Cloud TPU documentation,
# "System architecture" of each version):
HBM_PER_CHIP = {
    "TPU v2": 16 * GiB,  # cloud.google.com/tpu/docs/v2: 16 GiB per chip (8 per TensorCore)
    "TPU v3": 32 * GiB,  # cloud.google.com/tpu/docs/v3: 32 GiB per chip (16 per TensorCore)
    "TPU v4": 32 * GiB,  # cloud.google.com/tpu/docs/v4: 32 GiB HBM2 per chip
    "TPU v5 lite": 16 * GiB,  # cloud.google.com/tpu/docs/v5e: 16 GiB HBM2 per chip
    "TPU v5": 95 * GiB,  # cloud.google.com/tpu/docs/v5p: 95 GiB HBM2e per chip (v5p)
    "TPU v5p": 95 * GiB,  # the same chip under its marketing name
    "TPU v6 lite": 32 * GiB,  # cloud.google.com/tpu/docs/v6e: 32 GiB HBM per chip (Trillium)
}


class Topology(NamedTuple):
  """A TPU slice's abstract devices.

  Attributes:
    name: the topology name given (e.g. "v5e:4x4").
    devices: its JAX devices (one per TensorCore, or per chip in megacore mode).
    device_kind: e.g. "TPU v5 lite".
    chips: chips in the slice (distinct chip coordinates).
    device_memory: HBM bytes per JAX device (the chip's HBM over its devices), or None when the
      generation is not in `HBM_PER_CHIP`.
  """

  name: str
  devices: list[Any]
  device_kind: str
  chips: int
  device_memory: int | None


def libtpu_installed() -> bool:
  return importlib.util.find_spec("libtpu") is not None


def topology(name: str) -> Topology:
  """The TPU slice `name` (any name libtpu accepts: "v4:2x2x2", "v5e:4x4", "v5p:2x2x1", ...).

  Raises:
    UsageError: libtpu is missing, or libtpu does not know the name.
  """
  if not libtpu_installed():
    raise UsageError(f"--topology {name} needs libtpu, the TPU compiler: pip install "
                     "'jaxpapers[tpu]' (it runs on a CPU host)")
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    desc = topologies.get_topology_desc(name, "tpu")
  except Exception as e:  # pylint: disable=broad-except  # libtpu raises XlaRuntimeError etc.
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise UsageError(f"--topology {name!r} is not a TPU topology libtpu knows ({first}); write "
                     "GENERATION:SHAPE, e.g. v5e:4x4, v4:2x2x2, v5p:2x2x1, v6e:2x2") from None
  devices = list(desc.devices)
  kind = devices[0].device_kind
  chips = len({tuple(d.coords) for d in devices})
  per_chip = HBM_PER_CHIP.get(kind)
  memory = None if per_chip is None else per_chip * chips // len(devices)
  return Topology(name, devices, kind, chips, memory)
