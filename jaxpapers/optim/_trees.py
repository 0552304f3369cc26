"""Tree markers of optax's wrappers that the transforms must recognise.

`optax.masked` / `optax.partition` hand their inner transform trees whose masked-out leaves are
`optax.MaskedNode` (a leafless node), and `optax.tree.map_params` calls `init` with a leafless
placeholder to find the params-shaped buffers of a state. A transform that maps a pytree given
at construction (labels, K-FAC factors) over its inputs must let both through.
"""

from __future__ import annotations

from typing import Any

import optax


def is_masked(x: Any) -> bool:
  """Whether `x` is the `optax.MaskedNode` of a leaf masked out by `optax.masked`/`partition`."""
  return isinstance(x, optax.MaskedNode)


def is_params_placeholder(params: Any) -> bool:
  """Whether `params` is the leafless placeholder that `optax.tree.map_params` inits with.

  `optax.masked` tests for the same (private) class; matched by name to survive its moves.
  """
  return type(params).__name__ == "_ParamsPlaceholder"
