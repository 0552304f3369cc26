"""Running a Pallas op on arrays sharded over batch and heads (Explicit meshes).

A `pallas_call` sees whole arrays: traced on arrays that an Explicit mesh shards (the batch split
over `data`/`fsdp`, say), its kernel's refs carry that sharding and Pallas refuses to slice them
("sharded ref ... can only be sliced along unsharded axes"). Attention is independent per batch
row and per head, so `per_shard` runs the op under `jax.shard_map` on each device's rows and
heads, as MaxText and JAX's splash attention are run, after resharding every other axis
(sequence, features) to whole. Under a mesh of Auto axes, where the arrays carry no sharding to
follow, the batch is split over the Auto axes of more than one device whose sizes divide it (a
Mosaic kernel cannot be partitioned by XLA, and a Triton one only replicated). On one device, or
with no axis to split, it calls the op as is.
The kernels declare their outputs without varying mesh axes, so `check_vma` is off.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax.sharding import PartitionSpec as P


def _axes(spec: P, dim: int) -> Any:
  return spec[dim] if dim < len(spec) else None


def _auto_batch_axes(mesh: Any, batch: int) -> tuple[str, ...] | None:
  """The mesh's Auto axes of more than one device, in order, while their product divides batch."""
  axes, size = [], 1
  for name, kind in zip(mesh.axis_names, mesh.axis_types):
    n = mesh.shape[name]
    if kind == jax.sharding.AxisType.Auto and n > 1 and batch % (size * n) == 0:
      axes.append(name)
      size *= n
  return tuple(axes) or None


def per_shard(fn: Callable[..., jax.Array], args: Sequence[jax.Array], layouts: Sequence[str],
              out_layout: str) -> jax.Array:
  """`fn(*args)`, per shard of the batch ("b") and head ("h") axes of `args[0]`.

  Args:
    fn: the op on local arrays.
    args: its array arguments; `args[0]` decides the split (its "b" and "h" dimensions' mesh axes).
    layouts: one string per argument naming its dimensions, e.g. "bshd" or "bhs": "b" and "h"
      are split as in `args[0]`, every other letter is made whole.
    out_layout: the same for the result.
  """
  spec = getattr(jax.typeof(args[0]).sharding, "spec", None)
  mesh = jax.sharding.get_abstract_mesh()
  lead = layouts[0]
  split = {} if spec is None else {c: _axes(spec, lead.index(c)) for c in "bh" if c in lead}
  explicit = any(split.values())
  if not mesh.empty and not explicit:
    split = {"b": _auto_batch_axes(mesh, args[0].shape[lead.index("b")])}
  if mesh.empty or not any(split.values()):
    return fn(*args)
  to_spec = lambda layout: P(*(split.get(c) for c in layout))
  specs = tuple(to_spec(layout) for layout in layouts)
  if explicit:  # Auto axes: shard_map moves the data itself
    args = [jax.sharding.reshard(a, s) for a, s in zip(args, specs)]
  return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=to_spec(out_layout),
                       check_vma=False)(*args)
