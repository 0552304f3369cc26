"""Activation taps on the feed-forward neurons of any NNX model (NeST, arXiv 2602.16835).

NeST (Sec. 3, safety-neuron detection) probes the intermediate activations of every FFN layer and
max-pools them over token positions. A gated FFN is `FFN(x) = (silu(x W_g) * (x W_u)) W_d`
(`W_g, W_u: [d, f]`, `W_d: [f, d]`, Flax's input-first layout); neuron `j` owns column `j` of the
input matrices and row `j` of the output matrix. The tap point is configurable: the output of
`W_g` (the authors' predecessor NeuroStrike hooks the gate and up projections), of `W_u`, or the
hidden product itself (the input of `W_d`).

A tap swaps the module at a path (a tuple of attribute names and list indices, e.g.
`("layers", 0, "mlp", "down")`) for a recorder while one forward pass runs, then puts the module
back, so it works on any NNX model, under `jax.jit`, without changing its code.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Path = tuple[str | int, ...]
TAPS = ("gate", "up", "hidden")


def get_module(model: Any, path: Path) -> Any:
  """The submodule (or attribute) of `model` at `path`."""
  for key in path:
    model = model[key] if isinstance(key, int) else getattr(model, key)
  return model


def set_module(model: Any, path: Path, value: Any) -> None:
  """Replaces the submodule of `model` at `path` by `value` (in place)."""
  parent, key = get_module(model, path[:-1]), path[-1]
  if isinstance(key, int):
    parent[key] = value
  else:
    setattr(parent, key, value)


@dataclasses.dataclass(frozen=True)
class TapSite:
  """A recorded array: the `input` (first argument) or `output` of the module at `path`."""

  path: Path
  where: str = "output"

  def __post_init__(self):
    if self.where not in ("input", "output"):
      raise ValueError(f"TapSite.where must be 'input' or 'output', got {self.where!r}")


@dataclasses.dataclass(frozen=True)
class FFNLayer:
  """Where one FFN layer's neurons live: their input and output projections, and the tap.

  Attributes:
    inputs: paths of the `nnx.Linear`s whose kernel columns are the neurons (gate, up).
    output: path of the `nnx.Linear` whose kernel rows are the neurons (down).
    tap: the activation recorded for probing and clustering.
  """

  inputs: tuple[Path, ...]
  output: Path
  tap: TapSite

  @property
  def input_names(self) -> tuple[str, ...]:
    return tuple(str(p[-1]) for p in self.inputs)


def gated_ffn(prefix: Path, tap: str = "gate", names: tuple[str, str, str] = ("gate", "up", "down")) -> FFNLayer:
  """A gated (SwiGLU) FFN at `prefix` with projections `gate`, `up`, `down`.

  Args:
    prefix: path of the FFN module.
    tap: "gate" (output of `W_g`, the default), "up" (output of `W_u`) or "hidden" (input of `W_d`).
    names: attribute names of the gate, up and down projections.
  """
  if tap not in TAPS:
    raise ValueError(f"tap must be one of {', '.join(TAPS)}, got {tap!r}")
  gate, up, down = (prefix + (n,) for n in names)
  site = {"gate": TapSite(gate), "up": TapSite(up), "hidden": TapSite(down, "input")}[tap]
  return FFNLayer((gate, up), down, site)


def plain_ffn(up: Path, down: Path, tap: str = "hidden") -> FFNLayer:
  """An ungated FFN `act(x W_up) W_down`; tap "hidden" (after the activation) or "up" (before)."""
  if tap not in ("hidden", "up"):
    raise ValueError(f"tap of an ungated FFN must be 'hidden' or 'up', got {tap!r}")
  return FFNLayer((up,), down, TapSite(down, "input") if tap == "hidden" else TapSite(up))


class _Recorder:
  """Stands in for a module during one forward pass and records its input or output."""

  def __init__(self, inner: Any, records: dict, key: Any, where: str):
    self.inner, self.records, self.key, self.where = inner, records, key, where

  def __call__(self, x, *args, **kwargs):
    y = self.inner(x, *args, **kwargs)
    self.records[self.key] = x if self.where == "input" else y
    return y


@contextlib.contextmanager
def tapped(model: nnx.Module, sites: Mapping[Any, TapSite]) -> Iterator[dict]:
  """Within the block, calls of the modules at `sites` record into the yielded dict (by key)."""
  records: dict = {}
  originals = {}
  try:
    for key, site in sites.items():
      inner = get_module(model, site.path)
      originals[key] = (site.path, inner)
      set_module(model, site.path, _Recorder(inner, records, key, site.where))
    yield records
  finally:  # last in, first out: two sites on one path nest, and unwind in order
    for path, inner in reversed(list(originals.values())):
      set_module(model, path, inner)


def record(model: nnx.Module, forward: Callable[[nnx.Module], Any],
           sites: Mapping[Any, TapSite]) -> dict:
  """Runs `forward(model)` once and returns the arrays recorded at `sites` (by key)."""
  with tapped(model, sites) as records:
    forward(model)
  missing = [k for k in sites if k not in records]
  if missing:
    raise ValueError(f"the forward pass never called the modules tapped as {missing}")
  return dict(records)


def max_pool(act: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Max over token positions: `[B, T, f] -> [B, f]` (masked positions ignored); `[B, f]` as is."""
  if act.ndim == 2:
    return act
  if mask is not None:
    act = jnp.where(mask[..., None] > 0, act, -jnp.inf)
  return jnp.max(act, axis=1)


def pooled_activations(model: nnx.Module, layers: Sequence[FFNLayer],
                       forward: Callable[[nnx.Module, Any], Any], inputs: Any,
                       mask: np.ndarray | None = None, batch_size: int = 256) -> list[np.ndarray]:
  """Per layer, the max-pooled tap activations `F_l [P, f]` of the prompts `inputs` (NeST Sec. 3).

  Args:
    model: the model (not changed).
    layers: its FFN layers.
    forward: `forward(model, inputs_batch)` runs the model on a batch of prompts.
    inputs: an array (or pytree of arrays) with the prompts on the leading axis.
    mask: `[P, T]` 1 on real tokens (padding is left out of the max), or None.
    batch_size: prompts per jitted call.
  """
  graphdef, state = nnx.split(model)
  sites = dict(enumerate(layer.tap for layer in layers))

  @jax.jit
  def pooled(state, x, m):
    records = record(nnx.merge(graphdef, state), lambda mod: forward(mod, x), sites)
    return [max_pool(records[i], m) for i in range(len(layers))]

  n = len(jax.tree.leaves(inputs)[0])
  batch_size = min(batch_size, n)
  out = []
  for start in range(0, n, batch_size):  # the last batch is padded: one compiled shape
    rows = min(batch_size, n - start)
    x = jax.tree.map(lambda a: _pad(np.asarray(a)[start:start + rows], batch_size), inputs)
    m = None if mask is None else _pad(np.asarray(mask)[start:start + rows], batch_size)
    out.append([np.asarray(a)[:rows] for a in pooled(state, x, m)])
  return [np.concatenate([o[i] for o in out]) for i in range(len(layers))]


def _pad(a: np.ndarray, rows: int) -> np.ndarray:
  """`a` with its leading axis padded to `rows` by repeating its last row."""
  return a if len(a) == rows else np.concatenate([a, np.repeat(a[-1:], rows - len(a), 0)])
