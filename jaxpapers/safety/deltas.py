"""Cluster-shared neuron updates, folded into the FFN weights (NeST, arXiv 2602.16835).

NeST trains only small updates shared by the neurons of each cluster, with the rest of the model
frozen, and adds them into the original projection matrices after training (no inference
overhead). The exact parametrization is not stated in what we could read; ours (consistent with
the paper's ~0.4M trainable parameters on 1-8B models): for cluster `c` of layer `l` with members
`S_c`, one vector per matrix,

    W_g[:, j] += delta^g_c,   W_u[:, j] += delta^u_c   (input weights, delta in R^d)
    W_d[j, :] += delta^d_c                             (output weights, delta in R^d)

for every `j` in `S_c`. Variants: `in_out` (all of them, the default), `in_only` (gate and up),
`out_only` (down); `per_neuron` makes every selected neuron its own cluster (no sharing).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.safety.taps import FFNLayer, Path, get_module

VARIANTS = ("in_out", "in_only", "out_only")


class DeltaParam(nnx.Param):
  """A trainable neuron update (train with `wrt=DeltaParam`; the base model's Params stay frozen)."""


@dataclasses.dataclass(frozen=True)
class LayerClusters:
  """The selected neurons of one FFN layer and the cluster of each.

  Stored as tuples of ints (hashable: a model holding a plan is a static part of its graph).

  Attributes:
    neurons: the `n` neuron indices (columns of the input kernels, rows of the output kernel).
    clusters: the cluster id of each neuron, in `0 .. n_clusters - 1`.
  """

  neurons: tuple[int, ...]
  clusters: tuple[int, ...]

  def __post_init__(self):
    n, c = np.asarray(self.neurons, int).reshape(-1), np.asarray(self.clusters, int).reshape(-1)
    object.__setattr__(self, "neurons", tuple(int(i) for i in n))
    object.__setattr__(self, "clusters", tuple(int(i) for i in c))
    if n.shape != c.shape or n.ndim != 1:
      raise ValueError(f"neurons and clusters must be equal-length vectors; got {n.shape}, {c.shape}")
    if len(np.unique(n)) != len(n):
      raise ValueError("a neuron is listed twice")
    if len(c) and sorted(set(c.tolist())) != list(range(int(c.max()) + 1)):
      raise ValueError(f"cluster ids must be 0 .. k-1 with none empty; got {sorted(set(c.tolist()))}")

  @property
  def n_clusters(self) -> int:
    return int(np.max(self.clusters)) + 1 if len(self.clusters) else 0

  def sizes(self) -> list[int]:
    return np.bincount(np.asarray(self.clusters, int), minlength=self.n_clusters).tolist()


def per_neuron(plan: Sequence[LayerClusters]) -> list[LayerClusters]:
  """The same neurons, each its own cluster (unshared updates)."""
  return [LayerClusters(p.neurons, np.arange(len(p.neurons))) for p in plan]


def random_plan(plan: Sequence[LayerClusters], widths: Sequence[int], seed: int) -> list[LayerClusters]:
  """The random-neuron control: per layer, as many neurons with the same cluster sizes, drawn
  uniformly from the layer's other (unselected) neurons."""
  rng = np.random.default_rng(seed)
  out = []
  for p, f in zip(plan, widths):
    pool = np.setdiff1d(np.arange(f), p.neurons)
    if len(pool) < len(p.neurons):
      pool = np.arange(f)
    out.append(LayerClusters(np.sort(rng.choice(pool, len(p.neurons), replace=False)), p.clusters))
  return out


def _uses(variant: str) -> tuple[bool, bool]:
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
  return variant != "out_only", variant != "in_only"


def _state_at(state: Any, path: Path) -> Any:
  for key in path:
    state = state[key]
  return state


def apply_deltas(state: Any, layers: Sequence[FFNLayer], plan: Sequence[LayerClusters],
                 deltas: Sequence[dict[str, jax.Array]]) -> Any:
  """A copy of a model state with the neuron updates added into its kernels (pure).

  `deltas[l]` maps an input projection's name (`FFNLayer.input_names`) or "out" to a
  `[n_clusters, d]` array; the kernel of an input projection is `[d, f]` (neurons are columns),
  that of the output projection `[f, d]` (neurons are rows).
  """
  state = jax.tree.map(lambda v: v, state)  # new Variable objects: the input stays as it was
  for layer, p, d in zip(layers, plan, deltas):
    if not len(p.neurons):
      continue
    idx, member = jnp.asarray(p.neurons), jnp.asarray(p.clusters)
    for name, path in zip(layer.input_names, layer.inputs):
      if name in d:
        var = _state_at(state, path)["kernel"]
        var.set_value(var.get_value().at[:, idx].add(d[name][member].T.astype(var.dtype)))
    if "out" in d:
      var = _state_at(state, layer.output)["kernel"]
      var.set_value(var.get_value().at[idx, :].add(d["out"][member].astype(var.dtype)))
  return state


class NeuronDeltas(nnx.Module):
  """A frozen base model plus cluster-shared updates of its selected FFN neurons.

  Calling it runs the base model with the updated kernels; `fold()` returns a plain model of
  the base's class with the updates added in (the deployed model). The deltas start at zero, so
  before training the wrapper computes the base model's function exactly.

  Args:
    base: the model (its Params are left untouched; train `wrt=DeltaParam`).
    layers: where its FFN neurons live.
    plan: per layer, the selected neurons and their clusters.
    variant: "in_out", "in_only" or "out_only".
  """

  def __init__(self, base: nnx.Module, layers: Sequence[FFNLayer], plan: Sequence[LayerClusters],
               variant: str = "in_out"):
    if len(layers) != len(plan):
      raise ValueError(f"one plan entry per FFN layer: {len(layers)} layers, {len(plan)} entries")
    use_in, use_out = _uses(variant)
    self.base, self.variant = base, variant
    self.layers, self.plan = tuple(layers), tuple(plan)
    deltas = []
    for layer, p in zip(layers, plan):
      d_model = get_module(base, layer.output).kernel.shape[1]
      entry = {}
      if p.n_clusters:
        shape = (p.n_clusters, d_model)
        if use_in:
          for name, path in zip(layer.input_names, layer.inputs):
            if get_module(base, path).kernel.shape[0] != d_model:
              raise ValueError(f"input projection {path} does not read the model width {d_model}")
            entry[name] = DeltaParam(jnp.zeros(shape, jnp.float32))
        if use_out:
          entry["out"] = DeltaParam(jnp.zeros(shape, jnp.float32))
      deltas.append(nnx.Dict(entry))
    self.deltas = nnx.List(deltas)

  def delta_arrays(self) -> list[dict[str, jax.Array]]:
    return [{k: v[...] for k, v in d.items()} for d in self.deltas]

  def fold(self) -> nnx.Module:
    """The base model with the updates added into its kernels (same class, no wrapper)."""
    graphdef, state = nnx.split(self.base)
    return nnx.merge(graphdef, apply_deltas(state, self.layers, self.plan, self.delta_arrays()))

  def __call__(self, *args, **kwargs):
    return self.fold()(*args, **kwargs)


def count_params(model: nnx.Module, kind: Any = nnx.Param) -> int:
  """Number of scalars in `model`'s variables of type `kind` (e.g. DeltaParam, nnx.LoRAParam);
  works on an abstract model (`nnx.eval_shape`) too."""
  return int(sum(math.prod(np.shape(x)) for x in jax.tree.leaves(nnx.state(model, kind))))
