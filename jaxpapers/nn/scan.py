"""Scanned layers: a stack of identical modules run by one scan, with rematerialization.

A model with L identical blocks traced one by one compiles L copies of the block, so its
compile time grows with depth. Stacking their parameters on a leading axis and looping with
`jax.lax.scan` compiles the block once: the layer stacking of MaxText and praxis, and the
`nn.scan` over layers of the Flax examples. The backward pass of a scan keeps every step's
residuals; `remat` recomputes them instead (gradient checkpointing, Chen et al., arXiv
1604.06174): "full" saves only each step's carry, "dots" also saves the outputs of the matrix
products without batch dimensions (projections; attention scores are recomputed), with
`jax.checkpoint_policies.dots_with_no_batch_dims_saveable`.

`Scanned(make, length, rngs=...)` builds `length` modules with `make(rngs)` under `nnx.vmap`
(`nnx.split_rngs` gives each its own keys) and keeps them as one module, `scanned`, whose
variables are `[length, ...]`; calling it runs `jax.lax.scan` over them (a pure JAX scan over
the split state rather than `nnx.scan`, see `Scanned.__call__`). The stacked axis gets the
logical name `layers` (`transform_metadata={nnx.PARTITION_NAME: "layers"}`: annotated
parameters' names become `("layers", *names)`, see `jaxpapers.nn.partitioning`). The attribute
name `scanned` is part of the contract with the optimizers: a key path through a component
named `scanned` has one stacked leading axis (`jaxpapers.optim.muon` reads it from pure
arrays, where no logical names are left).

Example (12 MLP blocks, compiled once)::

  stack = Scanned(lambda r: Block(d, rngs=r), 12, rngs=nnx.Rngs(0), remat="dots")
  x, _ = stack(x, body=lambda block, x: (block(x), None))

Layer `i` of a stack reads and writes through `layer_view(stack, i)` (e.g. an MoE layer's
router state, updated outside autodiff); `stack(per_layer_states)` puts an unscanned model's
layers in the stacked layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn import partitioning as pt

REMAT = ("none", "full", "dots")
STACKED = "scanned"  # attribute holding the stacked module (read by the optimizers)

Body = Callable[..., tuple[Any, Any]]  # (module, carry, *args) -> (carry, per-layer output)


def check_remat(remat: str) -> None:
  """Raises ValueError unless `remat` is one of `REMAT`."""
  if remat not in REMAT:
    raise ValueError(f"remat={remat!r} is invalid: use one of {REMAT}")


def remat_policy(remat: str) -> Callable[..., bool] | None:
  """The `jax.checkpoint` policy of `remat` ("full": save nothing; "none" also gives None)."""
  check_remat(remat)
  return jax.checkpoint_policies.dots_with_no_batch_dims_saveable if remat == "dots" else None


def checkpointed(fn: Callable[..., Any], remat: str, *,
                 prevent_cse: bool = True) -> Callable[..., Any]:
  """`fn(module, *args)` under `jax.checkpoint` with the policy of `remat` (`fn` for "none").

  The module goes in as its split state and is merged again inside the checkpointed function
  (a pure JAX transform, so this works where the module's variables come from an outer trace,
  as in a trainer that merges the model inside `jax.value_and_grad`). Writes of `fn` to the
  module's variables are not kept.
  """
  check_remat(remat)
  if remat == "none":
    return fn
  policy = remat_policy(remat)

  def wrapped(module: nnx.Module, *args: Any) -> Any:
    graphdef, state = nnx.split(module)
    pure = lambda state, *args: fn(nnx.merge(graphdef, state), *args)
    return jax.checkpoint(pure, policy=policy, prevent_cse=prevent_cse)(nnx.as_pure(state), *args)

  return wrapped


def _call(module: nnx.Module, carry: Any, *args: Any) -> tuple[Any, Any]:
  return module(carry, *args)


class Scanned(nnx.Module):
  """`length` copies of a module, stacked on a leading `layers` axis and run by a scan.

  Args:
    make: `make(rngs)` builds one layer (called once, under `nnx.vmap`).
    length: number of stacked layers.
    rngs: initialization; split into `length` streams.
    remat: rematerialization of each scan step: "none", "full" or "dots" (see module doc).

  Attributes:
    scanned: the stacked module (its variables are `[length, ...]`).
    layer_def: the graph definition of one layer (names without `layers`).
  """

  def __init__(self, make: Callable[[nnx.Rngs], nnx.Module], length: int, *, rngs: nnx.Rngs,
               remat: str = "none"):
    if length < 1:
      raise ValueError(f"Scanned: length={length} must be >= 1")
    check_remat(remat)
    layer_defs = []

    @nnx.split_rngs(splits=length)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: pt.LAYERS})
    def build(rngs):
      layer = make(rngs)
      layer_defs.append(nnx.graphdef(layer))
      return layer

    self.scanned = build(rngs)
    self.layer_def = layer_defs[-1]
    self.length, self.remat = length, remat

  def __call__(self, carry: Any, *args: Any, body: Body = _call) -> tuple[Any, Any]:
    """Runs the layers in order: `carry, y_l = body(layer_l, carry, *args)`.

    The scan is `jax.lax.scan` over the stacked state, each step merging layer `l` from its
    slice with `layer_def` (the way `nnx.scan` works inside, without its checks that every
    variable belongs to the current trace, which a model merged inside `jax.value_and_grad`
    from outer-trace variables fails). Writes of `body` to the layers' variables are not kept.

    Args:
      carry: the running state (e.g. the residual stream `[B, T, d]`).
      *args: broadcast to every layer (e.g. segment ids, a mask; None is allowed).
      body: `body(module, carry, *args) -> (carry, y)`; default `module(carry, *args)`, which
        must return such a pair.

    Returns:
      The last carry and the per-layer outputs stacked on a leading `[length]` axis.
    """
    layer_def = self.layer_def

    def step(carry, layer_state):
      return body(nnx.merge(layer_def, layer_state), carry, *args)

    if self.remat != "none":
      step = jax.checkpoint(step, policy=remat_policy(self.remat), prevent_cse=False)
    _, state = nnx.split(self.scanned)
    return jax.lax.scan(step, carry, nnx.as_pure(state))


class VariableSlice:
  """Entry `index` of a stacked `nnx.Variable`: `view[...]` reads it, `view[...] = v` writes it."""

  def __init__(self, variable: nnx.Variable, index: int):
    self._variable, self._index = variable, index

  def _key(self, key: Any) -> tuple[Any, ...]:
    return (self._index, *key) if isinstance(key, tuple) else (self._index, key)

  def __getitem__(self, key: Any) -> jax.Array:
    return self._variable[...][self._key(key)]

  def __setitem__(self, key: Any, value: Any) -> None:
    self._variable[...] = self._variable[...].at[self._key(key)].set(value)

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self._variable.shape[1:])


class LayerView:
  """Layer `index` of a stacked module: sub-modules are views, variables `VariableSlice`s.

  Reading and writing variables goes through the stack (`view.mlp.expert_bias[...] = b`
  updates row `index` of the stacked `[length, E]` bias); calling the view is not supported.
  """

  def __init__(self, module: nnx.Module, index: int):
    self._module, self._index = module, index

  def __getattr__(self, name: str) -> Any:
    value = getattr(self._module, name)
    if isinstance(value, nnx.Variable):
      return VariableSlice(value, self._index)
    if isinstance(value, (nnx.Module, nnx.List)):
      return LayerView(value, self._index)
    return value

  def __getitem__(self, key: Any) -> Any:  # an nnx.List inside the stacked module
    value = self._module[key]
    if isinstance(value, nnx.Variable):
      return VariableSlice(value, self._index)
    return LayerView(value, self._index)


def stack(trees: Sequence[Any]) -> Any:
  """Per-layer pytrees (e.g. `nnx.to_pure_dict` states of identical layers) stacked leaf by
  leaf on a new leading axis: an unscanned model's layers in the layout of `Scanned`."""
  if not trees:
    raise ValueError("stack: no layers to stack")
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def layer_view(stack: Scanned, index: int) -> LayerView:
  """A view of layer `index` (0-based, `< stack.length`) of `stack`."""
  if not 0 <= index < stack.length:
    raise IndexError(f"layer_view: index {index} outside the {stack.length} stacked layers")
  return LayerView(stack.scanned, index)
