"""K-FAC factor collection for linear layers of Flax NNX models (CrispEdit, arXiv 2602.15823).

For each chosen layer `y = a W` (any module mapping `[..., d_in] -> [..., d_out]` linearly, e.g.
`nnx.Linear` or an MLP projection), on capability batches, as the authors' `layer_stats_kfac`
(`easyeditor/models/rome/layer_stats.py`) collects them:

  A = (1/N) Σ_t m_t a_t a_tᵀ,   G = (1/N) Σ_t m_t g_t g_tᵀ,   N = Σ_t m_t

where `t` runs over the layer's tokens (every leading position), `m_t` is the batch's token
mask, and `g_t = ∂ℓ/∂y_t` of the sum-reduced cross-entropy `ℓ = Σ_t m_t CE(logits_t, label_t)`.
Labels are drawn from the model's own softmax ("sampled", our default: Fisher = Gauss-Newton for
softmax CE, the curvature of the paper's theory) or taken from the batch ("empirical": the authors'
code).

How it is captured: on a clone of the model, each chosen layer is wrapped by a tap. Each traced
forward pass binds one `TapContext` to the taps explicitly (`tapping`; no module-level state):
the taps record their inputs in it and add its zero tensor `δ` to their outputs, and `∂ℓ/∂δ` is
the output gradient. Sums are taken inside one jitted function over global arrays, so a batch
sharded over data devices gives the same factors as on one device (XLA sums across shards).
Batches are streamed: only the sums are kept between batches.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Hashable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.optim._kfac_projector import KroneckerFactors
from jaxpapers.optim._muon import STACKED_PATH_NAMES

LayerPath = tuple[Hashable, ...]
LABEL_MODES = ("sampled", "empirical")


class TapContext:
  """What the taps of one forward pass record and read.

  Attributes:
    deltas: `{key: δ}` added to the outputs of the tapped layers (absent keys: nothing added).
    inputs: `{key: a}`, each tapped layer's input, filled by the forward pass.
    outputs: `{key: y}`, each tapped layer's output before `δ`, filled by the forward pass.
  """

  def __init__(self, deltas: dict[str, jax.Array] | None = None):
    self.deltas = dict(deltas or {})
    self.inputs: dict[str, jax.Array] = {}
    self.outputs: dict[str, jax.Array] = {}


class _Tap(nnx.Module):
  """Wraps a layer: records its input and output in its bound `TapContext`, adds its `δ`.

  Unbound (`context` None) it is the layer itself.
  """

  def __init__(self, layer: nnx.Module, key: str):
    self.layer = layer
    self.key = key
    self.context: TapContext | None = None

  def __call__(self, x, *args, **kwargs):
    y = self.layer(x, *args, **kwargs)
    ctx = self.context
    if ctx is not None:
      ctx.inputs[self.key], ctx.outputs[self.key] = x, y
      if self.key in ctx.deltas:
        y = y + ctx.deltas[self.key].astype(y.dtype)
    return y


def path_key(path: LayerPath) -> str:
  """`("layers", 1, "mlp", "down")` -> `"layers/1/mlp/down"`."""
  return "/".join(str(p) for p in path)


def get_submodule(model: Any, path: LayerPath) -> Any:
  """The submodule at `path` (attribute names and list indices)."""
  node = model
  for part in path:
    node = node[part] if isinstance(part, int) else getattr(node, part)
  return node


def _set_submodule(model: Any, path: LayerPath, value: Any) -> None:
  parent = get_submodule(model, path[:-1])
  if isinstance(path[-1], int):
    parent[path[-1]] = value
  else:
    setattr(parent, path[-1], value)


def tapped_clone(model: nnx.Module, layer_paths: Sequence[LayerPath]) -> nnx.Module:
  """A copy of `model` whose layers at `layer_paths` are wrapped by taps (model is untouched)."""
  for path in layer_paths:
    if any(str(part) in STACKED_PATH_NAMES for part in path):
      raise ValueError(f"kfac factors: {path_key(path)!r} is inside a stack of scanned layers "
                       "(jaxpapers.nn.scan); K-FAC factors are per layer: collect them on the "
                       "unscanned model (scan_layers=False)")
  clone = nnx.clone(model)
  for path in layer_paths:
    _set_submodule(clone, tuple(path), _Tap(get_submodule(clone, tuple(path)), path_key(path)))
  return clone


@contextlib.contextmanager
def tapping(tapped: nnx.Module, layer_paths: Sequence[LayerPath],
            deltas: dict[str, jax.Array] | None = None) -> Iterator[TapContext]:
  """Binds a fresh `TapContext` to the taps of `tapped` (a `tapped_clone`) for one forward pass.

  Args:
    tapped: the tapped model (e.g. merged inside the traced function that runs it).
    layer_paths: the tapped layers' paths.
    deltas: output perturbations by path key (see `TapContext`).

  Yields:
    The context the taps fill; they are unbound again on exit.
  """
  taps = [get_submodule(tapped, tuple(p)) for p in layer_paths]
  for path, tap in zip(layer_paths, taps):
    if not isinstance(tap, _Tap):
      raise TypeError(f"kfac factors: no tap at {path_key(path)!r}; make the model with tapped_clone")
  ctx = TapContext(deltas)
  for tap in taps:
    tap.context = ctx
  try:
    yield ctx
  finally:
    for tap in taps:
      tap.context = None


def _token_weights(mask: jax.Array | None, lead_shape: tuple[int, ...], key: str) -> jax.Array:
  if mask is None:
    return jnp.ones(lead_shape, jnp.float32).reshape(-1)
  if tuple(mask.shape) != tuple(lead_shape):
    raise ValueError(f"kfac factors: batch mask of shape {tuple(mask.shape)} does not match the "
                     f"token axes {tuple(lead_shape)} of layer {key!r}'s input")
  return mask.astype(jnp.float32).reshape(-1)


def _replicated_sum_of_outer(x: jax.Array, w: jax.Array) -> jax.Array:
  """Σ_t w_t x_t x_tᵀ of `x [tokens, d]`; with token-sharded inputs on an Explicit mesh the
  (summed) result is asked for replicated."""
  mesh = jax.sharding.get_abstract_mesh()
  explicit = not mesh.empty and any(
      t == jax.sharding.AxisType.Explicit for t in mesh.axis_types)
  out_sharding = jax.sharding.PartitionSpec() if explicit else None
  return jnp.einsum("ti,tj->ij", x * w[:, None], x, out_sharding=out_sharding)


def _factor_sums(state, batch, rng, *, graphdef, paths, logits_fn, label_mode):
  """`{key: (Σ a aᵀ, Σ g gᵀ)}, N` of one batch for the tapped model `merge(graphdef, state)`."""
  keys = [path_key(p) for p in paths]

  def forward(deltas):
    tapped = nnx.merge(graphdef, state)
    with tapping(tapped, paths, deltas) as ctx:
      logits = logits_fn(tapped, batch)
      return logits, dict(ctx.inputs), dict(ctx.outputs)

  _, _, outputs = jax.eval_shape(forward, None)
  missing = [k for k in keys if k not in outputs]
  if missing:
    raise ValueError(f"kfac factors: layers {missing} were not called by logits_fn")
  zeros = {k: jnp.zeros(outputs[k].shape, jnp.float32) for k in keys}
  mask = batch.get("mask")

  def loss_of(deltas):
    logits, inputs, _ = forward(deltas)
    logits = logits.astype(jnp.float32)
    if label_mode == "sampled":
      labels = jax.random.categorical(rng, jax.lax.stop_gradient(logits))
    else:
      labels = batch["targets"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    weights = jnp.ones_like(ce) if mask is None else mask.astype(jnp.float32)
    return jnp.sum(ce * weights), inputs

  grads, inputs = jax.grad(loss_of, has_aux=True)(zeros)
  sums, count = {}, None
  for k in keys:
    a, g = inputs[k].astype(jnp.float32), grads[k]
    w = _token_weights(mask, a.shape[:-1], k)
    a2, g2 = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
    sums[k] = (_replicated_sum_of_outer(a2, w), _replicated_sum_of_outer(g2, w))
    count = jnp.sum(w)
  return sums, count


# One compiled program per (model structure, layers, logits_fn, label mode, batch shapes): the
# model's state is an argument, so models of one structure (seeds, edit sets) share it.
_factor_sums_jit = jax.jit(_factor_sums, static_argnames=("graphdef", "paths", "logits_fn", "label_mode"))


class _FactorStep:
  """`(batch, rng) -> ({key: (Σ a aᵀ, Σ g gᵀ)}, N)` of one model; `lower` as a jitted function's."""

  def __init__(self, state, static):
    self._state, self._static = state, static

  def __call__(self, batch, rng):
    return _factor_sums_jit(self._state, batch, rng, **self._static)

  def lower(self, batch, rng) -> _StateBound:
    """The lowered program with the model's state bound: `.compile()` gives a `(batch, rng)`
    callable (with the compiled program's `memory_analysis`, `cost_analysis`, ...)."""
    return _StateBound(_factor_sums_jit.lower(self._state, batch, rng, **self._static), self._state)


class _StateBound:
  """A lowered or compiled stage of `_factor_sums_jit` called with its first argument bound."""

  def __init__(self, stage, state):
    self._stage, self._state = stage, state

  def compile(self) -> _StateBound:
    return _StateBound(self._stage.compile(), self._state)

  def __call__(self, batch, rng):
    return self._stage(self._state, batch, rng)

  def __getattr__(self, name):
    return getattr(self._stage, name)


def make_factor_step(model: nnx.Module, layer_paths: Sequence[LayerPath],
                     logits_fn: Callable[[nnx.Module, dict], jax.Array],
                     label_mode: str = "sampled"):
  """A jitted `(batch, rng) -> {key: (sum a aᵀ, sum g gᵀ)}, N` for one batch.

  The compiled program takes the model's state as an argument and is shared by every model of
  the same structure with the same `layer_paths`, `logits_fn` (the same function object) and
  `label_mode`.

  Args:
    model: the (frozen) model.
    layer_paths: paths of the linear layers to collect.
    logits_fn: `(model, batch) -> logits [..., classes]`.
    label_mode: "sampled" (labels from the model's softmax) or "empirical" (`batch["targets"]`).

  Returns:
    The step function (with `.lower(batch, rng)`); factors are the sums divided by N (see
    `collect_kfac_factors`).
  """
  if label_mode not in LABEL_MODES:
    raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
  paths = tuple(tuple(p) for p in layer_paths)
  graphdef, state = nnx.split(tapped_clone(model, paths))
  return _FactorStep(state, dict(graphdef=graphdef, paths=paths, logits_fn=logits_fn,
                                 label_mode=label_mode))


def collect_kfac_factors(model: nnx.Module, layer_paths: Sequence[LayerPath],
                         batches: Iterable[dict[str, Any]],
                         logits_fn: Callable[[nnx.Module, dict], jax.Array], *,
                         label_mode: str = "sampled",
                         rng: jax.Array | None = None) -> tuple[dict[str, KroneckerFactors], float]:
  """K-FAC factors of `layer_paths` on capability `batches`, streamed.

  Args:
    model: the model (not modified).
    layer_paths: paths to linear layers (e.g. `("layers", 1, "mlp", "down")`).
    batches: dicts with whatever `logits_fn` reads, plus optional `"mask"` (token weights with
      the shape of the logits' leading axes) and `"targets"` (empirical labels).
    logits_fn: `(model, batch) -> logits [..., classes]`.
    label_mode: "sampled" (default) or "empirical".
    rng: key for sampled labels (default key 0); batch i uses `fold_in(rng, i)`.

  Returns:
    ({"a/b/c": KroneckerFactors(A, G)}, N tokens).
  """
  step = make_factor_step(model, layer_paths, logits_fn, label_mode)
  rng = jax.random.key(0) if rng is None else rng
  totals, count = None, 0.0
  for i, batch in enumerate(batches):
    sums, n = step(batch, jax.random.fold_in(rng, i))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    count += float(n)
  if totals is None or count <= 0:
    raise ValueError("kfac factors: no batches (or only masked tokens) were given")
  factors = {k: KroneckerFactors(a / count, g / count) for k, (a, g) in totals.items()}
  return factors, count


def merge_kfac_factors(parts: Sequence[tuple[dict[str, KroneckerFactors], float]]
                       ) -> tuple[dict[str, KroneckerFactors], float]:
  """Token-count-weighted average of A's and of G's separately (the authors'
  sequential editing, `crispedit.py --sequential_edit`).

  Args:
    parts: `(factors, N)` pairs over the same layers.

  Returns:
    `({k: (Σ N_i A_i / Σ N_i, Σ N_i G_i / Σ N_i)}, Σ N_i)`.
  """
  total = float(sum(n for _, n in parts))
  keys = parts[0][0].keys()
  merged = {k: KroneckerFactors(sum(n * f[k].a for f, n in parts) / total,
                                sum(n * f[k].g for f, n in parts) / total) for k in keys}
  return merged, total


def factor_tree(params: nnx.State, factors: dict[str, KroneckerFactors],
                param_name: str = "kernel") -> nnx.State:
  """The `factors` argument of `kfac_projector` for an `nnx.Optimizer` over `params`.

  Args:
    params: e.g. `nnx.state(model, nnx.Param)`.
    factors: `{path_key: KroneckerFactors}` from `collect_kfac_factors`.
    param_name: the weight of each layer that the factors belong to.

  Returns:
    A state of the structure of `params` holding each layer's factors at its weight and None
    at every other leaf (passed through by the projector).
  """
  flat = nnx.to_flat_state(params)
  where = {path_key(p[:-1]): p for p, _ in flat if p and p[-1] == param_name}
  missing = sorted(set(factors) - set(where))
  if missing:
    raise ValueError(f"factor_tree: no {param_name!r} parameter under {missing}")
  placed = {where[k]: f for k, f in factors.items()}
  return nnx.from_flat_state([(p, v.replace(placed.get(p))) for p, v in flat])


def as_numpy(factors: dict[str, KroneckerFactors]) -> dict[str, KroneckerFactors]:
  """Host copies of the factors (e.g. to save or compare)."""
  return {k: KroneckerFactors(np.asarray(f.a), np.asarray(f.g)) for k, f in factors.items()}
