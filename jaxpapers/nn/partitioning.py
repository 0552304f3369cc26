"""Logical axis names on parameters, the way MaxText and Flax annotate them.

A parameter says what its axes mean (`("embed", "mlp")` for an MLP's input kernel), not how
they are split; `jaxpapers.core.mesh` maps the names to mesh axes with the run's rules
(`MeshConfig.rules`) when the training state is created. The names are flax sharding metadata
(`out_sharding`), so `nnx.scan`/`nnx.vmap` with `transform_metadata={nnx.PARTITION_NAME:
"layers"}` insert the stacked axis's name, and optimizer states built from the parameters
(`nnx.Optimizer`) carry the same names.

Annotated variables are created with `eager_sharding=False`: modules construct anywhere,
inside or outside a `jax.set_mesh` block (tests, notebooks, users' code), without flax trying
to place logical names on a mesh; the trainer places the state once, born sharded.

Names used in `jaxpapers.nn`:
  embed   the model width d
  mlp     an MLP's or expert's hidden width
  heads   query (and gate/output) head channels, `num_heads * head_dim`
  kv      key/value head channels, `num_kv_heads * head_dim`
  vocab   the vocabulary
  expert  routed experts
  layers  the stacked axis of scanned layers
  state   recurrent state channels of a sequence mixer
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

EMBED, MLP, HEADS, KV, VOCAB, EXPERT, LAYERS, STATE = (
    "embed", "mlp", "heads", "kv", "vocab", "expert", "layers", "state")

Names = tuple[str | None, ...]


def metadata(names: Names) -> dict[str, Any]:
  """Variable metadata giving logical axis `names` (for `nnx.Linear(kernel_metadata=...)`)."""
  return {"out_sharding": tuple(names), "eager_sharding": False}


def param(value: jax.Array, names: Names) -> nnx.Param:
  """An `nnx.Param` holding `value` whose axes are called `names` (one per axis)."""
  if len(names) != value.ndim:
    raise ValueError(f"param: {len(names)} axis names {names} for a value of shape {value.shape}")
  return nnx.Param(value, **metadata(names))


def names_of(variable: Any) -> Names | None:
  """The logical axis names of an `nnx.Variable` (None when it has none)."""
  if not isinstance(variable, nnx.Variable):
    return None
  names = variable.get_metadata().get("out_sharding")
  return tuple(names) if names else None


def unsplit(x: jax.Array) -> jax.Array:
  """`x` gathered over the Explicit mesh axes its type splits it on (else `x` itself).

  For computations that need whole arrays under an Explicit mesh (e.g. every expert's kernel
  on every token in the dense MoE dispatch); Auto axes are left to the compiler.
  """
  spec = jax.typeof(x).sharding.spec
  if all(entry is None for entry in spec):
    return x
  return jax.sharding.reshard(x, jax.sharding.PartitionSpec())
