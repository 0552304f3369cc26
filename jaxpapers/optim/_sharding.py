"""Explicit-sharding helpers of the optimizer transforms.

On a mesh with `AxisType.Explicit` axes an array's sharding is part of its type: a matmul whose
contracting dimension is split raises (it cannot infer the output sharding), and a state leaf
whose sharding changes in `update` changes the state's type (a jitted step compiles again,
`lax.scan` over steps refuses it). The transforms gather the few leaves whose math needs whole
matrices (:func:`gather`) and give every output the type of its input (:func:`restore_like`).
Leaves that are not split over an Explicit axis (Auto meshes, one device, numpy arrays) are
returned unchanged, so the helpers add nothing to those programs.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P


def _axis_names(entry: Any) -> tuple[str, ...]:
  if entry is None:
    return ()
  if isinstance(entry, (tuple, list)):
    return tuple(entry)
  return (entry,)


def explicit_sharding(x: Any) -> NamedSharding | None:
  """The sharding of `x`'s type when it splits `x` over an Explicit mesh axis, else None."""
  try:
    sharding = jax.typeof(x).sharding
  except TypeError:  # not an array-like leaf
    return None
  if not isinstance(sharding, NamedSharding) or sharding.mesh.empty:
    return None
  mesh = sharding.mesh
  explicit = {name for name, kind in zip(mesh.axis_names, mesh.axis_types)
              if kind == AxisType.Explicit}
  used = {name for entry in sharding.spec for name in _axis_names(entry)}
  return sharding if used & explicit else None


def any_explicit(*trees: Any) -> bool:
  """Whether a leaf of `trees` is split over an Explicit mesh axis."""
  return any(explicit_sharding(x) is not None for tree in trees for x in jax.tree.leaves(tree))


def gather(x: Any) -> Any:
  """`x` replicated over its mesh when it is split over an Explicit axis, else `x` itself."""
  sharding = explicit_sharding(x)
  if sharding is None:
    return x
  return jax.sharding.reshard(x, NamedSharding(sharding.mesh, P()))


def _typed_sharding(x: Any) -> NamedSharding | None:
  """The sharding of `x`'s type when its mesh has an Explicit axis (None otherwise)."""
  try:
    sharding = jax.typeof(x).sharding
  except TypeError:
    return None
  if not isinstance(sharding, NamedSharding) or sharding.mesh.empty:
    return None
  if not any(kind == AxisType.Explicit for kind in sharding.mesh.axis_types):
    return None
  return sharding


def restore_like(tree: Any, like: Any) -> Any:
  """`tree` with each leaf resharded to the sharding of the matching leaf of `like`.

  A leaf is resharded only where the leaf of `like` lives on a mesh with Explicit axes and the
  two shardings differ; `tree` and `like` have the same structure (e.g. a state after and
  before `update`), so the result has the type of `like`.
  """

  def one(new, old):
    sharding = _typed_sharding(old)
    if sharding is None or jax.typeof(new).sharding == sharding:
      return new
    return jax.sharding.reshard(new, sharding)

  return jax.tree.map(one, tree, like)
