"""Device mesh and shardings built from `MeshConfig`.

Two mesh axes: `data` (batch split, parameters replicated) and `fsdp` (batch and parameters
split). Axis types are always passed explicitly (jax.make_mesh defaults to Explicit since
jax 0.10). Parameters are sharded FSDP-style: the largest dimension divisible by the `fsdp`
size is split over `fsdp`; everything else is replicated.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jaxpapers.core.config import MeshConfig
from jaxpapers.core.errors import ConfigError

DATA_AXES = ("data", "fsdp")


def make_mesh(config: MeshConfig, devices: list | None = None) -> jax.sharding.Mesh:
  """Builds the (data, fsdp) mesh over the first data x fsdp of `devices` (default: all)."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if n % config.fsdp:
    raise ConfigError(f"config field mesh.fsdp={config.fsdp} is invalid: must divide the {n} devices")
  data = n // config.fsdp if config.data == -1 else config.data
  if data * config.fsdp > n:
    raise ConfigError(
        f"config field mesh.data={config.data} is invalid: mesh.data x mesh.fsdp must be at most "
        f"the {n} devices (use mesh.data=-1 to take all)")
  devices = devices[:data * config.fsdp]
  axis_type = AxisType.Explicit if config.axis_types == "explicit" else AxisType.Auto
  return jax.make_mesh((data, config.fsdp), DATA_AXES, axis_types=(axis_type, axis_type),
                       devices=devices)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over both mesh axes."""
  return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int) -> P:
  """Splits the largest dimension divisible by `fsdp_size` of a matrix or higher-rank array.

  Vectors and scalars (biases, norms, RNG keys, counters) and arrays with no divisible
  dimension are replicated.
  """
  if fsdp_size == 1 or len(shape) < 2:
    return P()
  candidates = [i for i, d in enumerate(shape) if d % fsdp_size == 0]
  if not candidates:
    return P()
  axis = max(candidates, key=lambda i: shape[i])
  return P(*([None] * axis + ["fsdp"]))


def state_shardings(state, mesh: jax.sharding.Mesh):
  """FSDP shardings for every array leaf of a pytree (scalars replicated)."""
  size = mesh.shape["fsdp"]

  def one(x):
    shape = np.shape(x)
    return NamedSharding(mesh, fsdp_spec(shape, size))

  return jax.tree.map(one, state)


def global_batch(local_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assembles each process's slice of the batch into one global array sharded over the mesh."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def is_explicit(mesh: jax.sharding.Mesh) -> bool:
  return all(t == AxisType.Explicit for t in mesh.axis_types)
