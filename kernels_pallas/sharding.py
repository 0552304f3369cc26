"""Running a Pallas op on arrays sharded over batch and heads (Explicit meshes).

A `pallas_call` sees whole arrays: traced on arrays that an Explicit mesh shards (the batch split
over `data`/`fsdp`, say), its kernel's refs carry that sharding and Pallas refuses to slice them
("sharded ref ... can only be sliced along unsharded axes"). Attention is independent per batch
row and per head, so `per_shard` runs the op under `jax.shard_map` on each device's rows and
heads, as MaxText and JAX's splash attention are run, after resharding every other axis
(sequence, features) to whole. On unsharded arrays (one device, Auto meshes) it calls the op as is.
The kernels declare their outputs without varying mesh axes, so `check_vma` is off.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax.sharding import PartitionSpec as P


def _axes(spec: P, dim: int) -> Any:
  return spec[dim] if dim < len(spec) else None


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
  if mesh.empty or not any(split.values()):
    return fn(*args)
  to_spec = lambda layout: P(*(split.get(c) for c in layout))
  specs = tuple(to_spec(layout) for layout in layouts)
  args = [jax.sharding.reshard(a, s) for a, s in zip(args, specs)]
  return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=to_spec(out_layout),
                       check_vma=False)(*args)
