"""Embedding lookup that also works under an Explicit-sharding mesh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P


def embed_lookup(table: jax.Array, ids: jax.Array) -> jax.Array:
  """table [V, d] gathered at integer ids [...] -> [..., d].

  Under an Explicit mesh a gather with sharded indices is ambiguous; the output takes the ids'
  sharding (batch-sharded tokens give batch-sharded activations).
  """
  spec = jax.typeof(ids).sharding.spec
  if all(axis is None for axis in spec):
    return jnp.take(table, ids, axis=0)
  return table.at[ids].get(out_sharding=P(*spec, None))
