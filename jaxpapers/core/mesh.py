"""Device mesh and shardings built from `MeshConfig`.

Three mesh axes: `data` (batch split, parameters replicated), `fsdp` (batch and parameters
split) and `expert` (batch split; per-expert weights split on their expert axis). Axis types
are always passed explicitly (jax.make_mesh defaults to Explicit since jax 0.10). Parameters
are sharded FSDP-style by default: the largest dimension divisible by the `fsdp` size is split
over `fsdp`; a task's `shard_rule` may place chosen leaves (expert kernels) differently.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers.core.config import MeshConfig
from jaxpapers.core.errors import ConfigError

AXES = ("data", "fsdp", "expert")
DATA_AXES = AXES  # the batch is split over every axis

ShardRule = Callable[[str, tuple[int, ...]], P | None]


def make_mesh(config: MeshConfig, devices: list | None = None) -> jax.sharding.Mesh:
  """Builds the (data, fsdp, expert) mesh over the first data x fsdp x expert `devices`."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  model_parallel = config.fsdp * config.expert
  if n % model_parallel:
    raise ConfigError(f"config fields mesh.fsdp={config.fsdp} x mesh.expert={config.expert} are "
                      f"invalid: their product must divide the {n} devices")
  data = n // model_parallel if config.data == -1 else config.data
  if data * model_parallel > n:
    raise ConfigError(
        f"config field mesh.data={config.data} is invalid: mesh.data x mesh.fsdp x mesh.expert must "
        f"be at most the {n} devices (use mesh.data=-1 to take all)")
  devices = devices[:data * model_parallel]
  axis_type = AxisType.Explicit if config.axis_types == "explicit" else AxisType.Auto
  return jax.make_mesh((data, config.fsdp, config.expert), AXES, axis_types=(axis_type,) * 3,
                       devices=devices)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over all mesh axes."""
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


def expert_spec(shape: tuple[int, ...], mesh: jax.sharding.Mesh) -> P | None:
  """Expert kernels [E, ...] split on `expert` (and FSDP on a later dimension when possible)."""
  experts, fsdp = mesh.shape["expert"], mesh.shape["fsdp"]
  if len(shape) < 3 or shape[0] % experts:
    return None
  rest = fsdp_spec(shape[1:], fsdp)
  return P("expert", *rest)


def state_shardings(state: Any, mesh: jax.sharding.Mesh, rule: ShardRule | None = None):
  """Shardings of every array leaf: `rule(path, shape)` where it returns a spec, else FSDP."""
  size = mesh.shape["fsdp"]

  def one(path, x):
    shape = tuple(np.shape(x))
    spec = rule(jax.tree_util.keystr(path), shape) if rule is not None else None
    return NamedSharding(mesh, fsdp_spec(shape, size) if spec is None else spec)

  return jax.tree_util.tree_map_with_path(one, state)


def global_batch(local_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assembles each process's slice of the batch into one global array sharded over the mesh."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def is_explicit(mesh: jax.sharding.Mesh) -> bool:
  return all(t == AxisType.Explicit for t in mesh.axis_types)
