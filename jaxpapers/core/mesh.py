"""Device mesh, logical axis rules and shardings built from `MeshConfig`.

Four mesh axes, MaxText's names:
  data    batch split, parameters replicated
  fsdp    batch and parameters split (gathered before use, gradients reduce-scattered)
  expert  batch split; routed experts split by expert (expert-parallel dispatch)
  tensor  attention heads and MLP hidden units split (Megatron-style); never the batch

Parameters carry logical axis names (`jaxpapers.nn.partitioning`, flax's `out_sharding`
metadata); `logical_rules` maps each
name to mesh axes (MaxText's `logical_axis_rules`), defaults in `DEFAULT_RULES`, overridden
per run by `MeshConfig.rules`. A dimension whose size the mapped mesh axes do not divide is
replicated, and a mesh axis is used at most once per array. Leaves without names (optimizer
counters, RNG keys, factor matrices) are replicated.

Axis types: `data`, `fsdp` and `expert` have the config's type (Explicit by default: the
batch and parameter shardings are part of the arrays' types); `tensor` is always Auto, so the
compiler (GSPMD) partitions the head and MLP contractions and inserts their all-reduces
without an `out_sharding` on every matmul.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers.core.config import MeshConfig
from jaxpapers.core.errors import ConfigError

AXES = ("data", "fsdp", "expert", "tensor")
BATCH_AXES = ("data", "fsdp", "expert")  # the batch is never split over `tensor`

Rules = tuple[tuple[str, tuple[str, ...]], ...]

DEFAULT_RULES: Rules = (
    ("batch", BATCH_AXES),
    ("embed", ("fsdp",)),
    ("mlp", ("tensor",)),
    ("heads", ("tensor",)),
    ("kv", ("tensor",)),
    ("vocab", ("tensor",)),
    ("expert", ("expert",)),
    ("state", ()),
    ("layers", ()),
)


def logical_rules(config: MeshConfig) -> Rules:
  """`DEFAULT_RULES` with `config.rules` ("name=axis+axis", "name=" for replicated) applied."""
  rules = dict(DEFAULT_RULES)
  for rule in config.rules:
    name, _, axes = rule.partition("=")
    rules[name.strip()] = tuple(a.strip() for a in axes.split("+") if a.strip())
  return tuple(rules.items())


def make_mesh(config: MeshConfig, devices: list | None = None) -> jax.sharding.Mesh:
  """The (data, fsdp, expert, tensor) mesh over the first data x fsdp x expert x tensor devices."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  model_parallel = config.fsdp * config.expert * config.tensor
  if n % model_parallel:
    raise ConfigError(
        f"config fields mesh.fsdp={config.fsdp} x mesh.expert={config.expert} x "
        f"mesh.tensor={config.tensor} are invalid: their product must divide the {n} devices")
  data = n // model_parallel if config.data == -1 else config.data
  if data * model_parallel > n:
    raise ConfigError(
        f"config field mesh.data={config.data} is invalid: mesh.data x mesh.fsdp x mesh.expert x "
        f"mesh.tensor must be at most the {n} devices (use mesh.data=-1 to take all)")
  devices = devices[:data * model_parallel]
  kind = AxisType.Explicit if config.axis_types == "explicit" else AxisType.Auto
  shape, types = (data, config.fsdp, config.expert, config.tensor), (kind, kind, kind, AxisType.Auto)
  try:
    return jax.make_mesh(shape, AXES, axis_types=types, devices=devices)
  except NotImplementedError:  # TPU: an axis is not a product of whole physical axes (8 on 4x4x4)
    grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    return jax.sharding.Mesh(grid, AXES, axis_types=types)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, `fsdp` and `expert`."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def logical_spec(names: tuple[str | None, ...] | None, shape: tuple[int, ...],
                 mesh: jax.sharding.Mesh, rules: Rules = DEFAULT_RULES) -> P:
  """The PartitionSpec of an array of `shape` whose axes are called `names`.

  Each name maps to its rule's mesh axes, less axes already used by an earlier dimension;
  a dimension the product of those axes' sizes does not divide is replicated.
  """
  if not names:
    return P()
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, size in zip(names, shape):
    axes = tuple(a for a in table.get(name, ()) if a not in used and mesh.shape.get(a, 1) > 1)
    if not axes or size % int(np.prod([mesh.shape[a] for a in axes])):
      spec.append(None)
      continue
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else axes)
  return P(*spec)


def state_shardings(state: Any, mesh: jax.sharding.Mesh, rules: Rules = DEFAULT_RULES) -> Any:
  """NamedShardings of every array leaf of an (abstract) nnx state, from its logical names."""

  def one(leaf):
    if isinstance(leaf, nnx.Variable):
      value = leaf.get_value()
      return leaf.replace(NamedSharding(
          mesh, logical_spec(leaf.get_metadata().get("out_sharding"), tuple(np.shape(value)), mesh, rules)))
    return NamedSharding(mesh, P())

  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def without_axes(spec: P, axes: tuple[str, ...]) -> P:
  """`spec` with the mesh `axes` removed (the layout after gathering over them)."""
  def keep(entry):
    if entry is None:
      return None
    kept = tuple(a for a in (entry if isinstance(entry, tuple) else (entry,)) if a not in axes)
    return None if not kept else kept[0] if len(kept) == 1 else kept
  return P(*(keep(e) for e in spec))


@contextlib.contextmanager
def use_mesh(mesh: jax.sharding.Mesh, rules: Rules = DEFAULT_RULES):
  """`jax.set_mesh(mesh)` with flax's logical axis rules set to `rules` (MaxText's pairing).

  Inside it, flax maps logical names to mesh axes wherever it reads them itself (e.g.
  `nnx.eval_shape` of an annotated module gives abstract arrays with their NamedShardings).
  """
  flax_rules = tuple((name, None if not axes else axes[0] if len(axes) == 1 else axes)
                     for name, axes in rules)
  with jax.set_mesh(mesh), nnx.logical_axis_rules(flax_rules):
    yield


def global_batch(local_batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Assembles each process's slice of the batch into one global array sharded over the mesh."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def is_explicit(mesh: jax.sharding.Mesh) -> bool:
  """Whether the batch axes are Explicit (`tensor` is always Auto)."""
  return all(t == AxisType.Explicit for name, t in zip(mesh.axis_names, mesh.axis_types)
             if name != "tensor")
