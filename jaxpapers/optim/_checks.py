"""Static checks at the optimizer transforms' public boundary (their `update` functions).

They read tree structures, shapes and dtypes only, so inside `jax.jit` they run once, at trace
time, and cost nothing per step. A failure is a `ValueError` that names the transform.
"""

from __future__ import annotations

from typing import Any

import chex
import jax


def check_like(transform: str, updates: Any, reference: Any, what: str = "params") -> None:
  """Raises ValueError unless `updates` has the tree structure and leaf shapes of `reference`.

  Args:
    transform: the transform's name, for the message.
    updates: the `updates` argument of `update`.
    reference: the tree they must match (the params, or a state buffer); None skips the check.
    what: how the message calls `reference`.
  """
  if reference is None:
    return
  chex.assert_trees_all_equal_shapes(
      updates, reference, exception_type=ValueError,
      custom_message=f"{transform}: updates must have the tree structure and leaf shapes of the {what}")


def check_expert_axis(transform: str, tree: Any) -> None:
  """Raises ValueError unless every leaf has a last (expert) axis of size >= 1."""
  for leaf in jax.tree.leaves(tree):
    chex.assert_axis_dimension_gt(
        leaf, axis=-1, val=0, exception_type=ValueError,
        custom_message=f"{transform}: every leaf needs experts on its last axis ([..., num_experts])")
