"""Trinity's optimizer split: Muon for hidden matrices, AdamW for everything else.

Arcee Trinity (arXiv 2602.17004) trains hidden-layer weight matrices with Muon and the token
embedding, the LM head and all 1-D parameters with AdamW; rank-3 expert kernels `[E, in, out]`
are orthogonalized per expert in batched form. This module builds that split on top of
`optax.contrib.muon`, whose own default partition sends EVERY 2-D leaf to Muon (embeddings, LM
head and router included) and everything else to Adam.

Muon update of a `(in, out)` matrix (optax `scale_by_muon` → `scale_by_shape`)::

  μ ← β μ + (1 − β) G                              (β = 0.95)
  U = β μ̂ + (1 − β) Ĝ   (Nesterov; ^ = bias correction),  or U = μ̂
  X = U / (‖U‖_F + ε);  transpose if rows > cols
  repeat: A = X Xᵀ;  X = a X + (b A + c A²) X         (per-step (a, b, c) for "dion")
  ΔW = −lr · sqrt(max(1, fan_out / fan_in)) · X − lr · wd · W

An expert kernel `[E, in, out]` uses `MuonDimensionNumbers(reduction_axis=1, output_axis=2)`:
the expert axis is a batch axis, so each expert's `[in, out]` slice is orthogonalized (and
width-scaled) on its own.

Stacked (scanned) layers: a model whose layers run in one scan (`jaxpapers.nn.scan`) keeps
each parameter of its L layers as one leaf with a leading stacked axis: attention `[L, d, h]`,
experts `[L, E, d, F]`, norm scales and biases `[L, d]`. Such leading axes are batch axes here,
never part of a matrix: after dropping the S stacked axes of a leaf, the rank rule above
applies to what is left, so `[L, d, h]` is orthogonalized layer by layer with `(S, S + 1)`,
`[L, E, d, F]` per layer and expert with `(S + 1, S + 2)`, and a stacked vector `[L, d]` goes
to Adam. A leaf's stacked axes are counted on its key path: one per component named `scanned`
(`STACKED_PATH_NAMES`, the attribute `jaxpapers.nn.scan.Scanned` keeps its stack in), because
optax computes the labels and dimension numbers again on the pure arrays of every update, where
no other trace of the stacking is left. Where a leaf carries logical axis names (an annotated
`nnx.Variable`, as `nnx.Optimizer` passes to `tx.init`), its leading `layers` axes must agree
with that count, else a ValueError says so: init and update can never split the model
differently.

The Adam branch is `optax.adamw(..., nesterov=nesterov)`, i.e. NAdamW when Muon uses Nesterov
momentum, unless `adam_nesterov` says otherwise.

Example::

  tx = muon(8e-4, adam_learning_rate=2e-4)          # Trinity Large peak LRs
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal

import jax
import numpy as np
import optax
from flax import nnx
from optax.contrib import MuonDimensionNumbers

from jaxpapers.optim import _checks, _sharding, _trees

ADAM_NAMES = ("embed", "head", "router", "norm", "bias", "scale")
"""Path components containing one of these (case-insensitive) go to Adam in :func:`muon_labels`."""

STACKED_PATH_NAMES = ("scanned",)
"""A path component equal to one of these marks one leading stacked (scanned-layers) axis."""

STACKED_AXIS_NAME = "layers"
"""The logical name of a stacked axis (`jaxpapers.nn.partitioning.LAYERS`)."""

Labels = Any  # a pytree of "muon" | "adam" with the structure of the params
LabelsOrFn = Labels | Callable[[optax.Params], Labels]


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _ndim(leaf: Any) -> int:
  return leaf.ndim if hasattr(leaf, "ndim") else np.ndim(leaf)


def _is_variable(x: Any) -> bool:
  return isinstance(x, nnx.Variable)


def _stacked_axes(path: tuple[Any, ...], names: Any) -> int:
  """Leading stacked axes of a leaf: counted on `path`, checked against logical `names`."""
  count = sum(_key_name(key) in STACKED_PATH_NAMES for key in path)
  if names:
    names = tuple(names)
    named = next((i for i, name in enumerate(names) if name != STACKED_AXIS_NAME), len(names))
    if named != count or STACKED_AXIS_NAME in names[named:]:
      where = "/".join(_key_name(key) for key in path)
      raise ValueError(
          f"muon: {where} has logical axes {names} but {count} stacked axes by its path (one "
          f"per component named {STACKED_PATH_NAMES}); optax labels the pure arrays of every "
          "update by their paths, so keep stacked layers under a `scanned` attribute "
          "(jaxpapers.nn.scan.Scanned) and their 'layers' axes leading")
  return count


def _map_leaves(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
  """`jax.tree.map(fn', tree, *rest)` with `fn'(leaf, *others) = fn(path, stacked, leaf,
  *others)`: `path` the leaf's key path, `stacked` its stacked axes (names of the enclosing
  `nnx.Variable` checked where present). Same output structure as `jax.tree.map`."""

  def outer(path, x, *others):
    if _is_variable(x):
      stacked = _stacked_axes(path, x.get_metadata().get("out_sharding"))
      return jax.tree.map(lambda leaf, *o: fn(path, stacked, leaf, *o), x, *others)
    return fn(path, _stacked_axes(path, None), x, *others)

  return jax.tree_util.tree_map_with_path(outer, tree, *rest, is_leaf=_is_variable)


def muon_labels(
    params: optax.Params,
    *,
    adam_names: tuple[str, ...] = ADAM_NAMES,
) -> Labels:
  """Labels each parameter "muon" or "adam" by its key path and rank (Trinity's split).

  A leaf goes to Adam when its rank, less its stacked axes (see the module docstring: one per
  path component named `scanned`), is not 2 or 3, or when one of its path components (dict
  keys, attribute names; lower-cased) contains one of `adam_names` as a substring, e.g.
  `embed_tokens`, `lm_head`, `router`, `q_norm`, `expert_bias`. Remaining `(in, out)`
  matrices and `[E, in, out]` expert kernels (each possibly behind stacked axes) go to Muon.

  Args:
    params: A pytree of arrays (a dict, or the `nnx.State` that `nnx.Optimizer` passes).
    adam_names: Name fragments that send a leaf to Adam. Override with
      `functools.partial(muon_labels, adam_names=(...))`, e.g. dropping "router" to put the
      router on Muon.

  Returns:
    A pytree with the structure of `params` and leaves "muon" or "adam".

  Raises:
    ValueError: a leaf's leading `layers` logical axes disagree with its path's count.
  """
  adam_names = tuple(name.lower() for name in adam_names)

  def label(path, stacked, leaf) -> str:
    if _ndim(leaf) - stacked not in (2, 3):
      return "adam"
    parts = [_key_name(key).lower() for key in path]
    if any(name in part for part in parts for name in adam_names):
      return "adam"
    return "muon"

  return _map_leaves(label, params)


def _dims_for(label: str, leaf: Any, stacked: int = 0) -> MuonDimensionNumbers | None:
  if label == "adam":
    return None
  if label != "muon":
    raise ValueError(f'muon: labels must be "muon" or "adam", got {label!r}')
  ndim = _ndim(leaf) - stacked
  if ndim == 2:
    return MuonDimensionNumbers(reduction_axis=stacked, output_axis=stacked + 1)
  if ndim == 3:
    return MuonDimensionNumbers(reduction_axis=stacked + 1, output_axis=stacked + 2)
  raise ValueError(f"muon: a leaf labelled 'muon' must be 2-D (in, out) or 3-D (experts, in, "
                   f"out) after its {stacked} stacked axes, got shape {np.shape(leaf)}; label "
                   "it 'adam'")


def _resolve_labels(labels: LabelsOrFn, tree: Any) -> Labels:
  """The labels of `tree`, a params-like tree as optax passes it to our callables.

  A callable is applied to `tree`. A labels pytree (given for the full params, or a prefix of
  them, as `optax.masked` masks are) is matched to `tree`'s leaves by key path, so the
  container types may differ (a dict of labels for the `nnx.State` that `nnx.Optimizer`
  passes): where `tree` has an `optax.MaskedNode` (the Adam leaves, as `optax.contrib.muon`
  masks them before calling its dimension numbers; leaves masked by an enclosing
  `optax.masked`) so has the result, `optax.tree.map_params`' placeholder is returned as it
  is, and the label of an `nnx.Variable` leaf is wrapped like it.

  Raises:
    ValueError: a leaf of `tree` has no label.
  """
  if callable(labels):
    return labels(tree)
  if _trees.is_params_placeholder(tree):
    return tree
  by_path = {}
  for path, label in jax.tree_util.tree_flatten_with_path(labels, is_leaf=_is_variable)[0]:
    if _is_variable(label):
      (label,) = jax.tree.leaves(label)
    by_path[tuple(_key_name(key) for key in path)] = label

  def label_of(path, x):
    if _trees.is_masked(x):
      return x
    names = tuple(_key_name(key) for key in path)
    found = next((by_path[names[:n]] for n in range(len(names), -1, -1) if names[:n] in by_path),
                 None)
    if found is None:
      raise ValueError(f"muon: labels have no label for the parameter {'/'.join(names)}")
    return jax.tree.map(lambda _: found, x) if _is_variable(x) else found

  return jax.tree_util.tree_map_with_path(
      label_of, tree, is_leaf=lambda x: _trees.is_masked(x) or _is_variable(x))


def _muon_dimension_numbers(labels: LabelsOrFn = muon_labels) -> Callable[[optax.Params], Any]:
  """The `muon_weight_dimension_numbers` callable of `optax.contrib.muon` for `labels`.

  Args:
    labels: A callable `params -> labels` or a pytree of "muon" | "adam".

  Returns:
    A function mapping params to a pytree of `MuonDimensionNumbers` (None for Adam leaves):
    `(0, 1)` for 2-D `(in, out)` kernels, `(1, 2)` for 3-D `[E, in, out]` expert kernels,
    both shifted by the leaf's S stacked axes (which become batch axes).
  """

  def dimension_numbers(params):
    resolved = _resolve_labels(labels, params)
    return _map_leaves(lambda _, stacked, leaf, label: _dims_for(label, leaf, stacked),
                       params, resolved)

  return dimension_numbers


def _all_muon_dimension_numbers(params):
  return _map_leaves(lambda _, stacked, leaf: _dims_for("muon", leaf, stacked), params)


def _wrapped(tx: optax.GradientTransformation,
             labels: LabelsOrFn) -> optax.GradientTransformationExtraArgs:
  """`tx` with the update-like-params check and Newton–Schulz on gathered Muon leaves.

  `optax.contrib.muon`'s Newton–Schulz multiplies `X Xᵀ`: on an Explicit mesh a Muon leaf split
  over a mesh axis (FSDP) is a sharded contracting dimension, which JAX refuses. So when a leaf
  of the updates or the state is split over an Explicit axis, the Muon leaves' updates and the
  Muon leaves of every params-shaped buffer of the state (their momentum, found with
  `optax.tree.map_params`) are gathered (replicated) for the step, and every output gets back
  the sharding of its input. Adam leaves stay sharded. Anywhere else `tx` runs as it is.
  """

  def update_fn(updates, state, params=None, **extra_args):
    _checks.check_like("muon", updates, params)
    if not _sharding.any_explicit(updates, state):
      return tx.update(updates, state, params, **extra_args)
    resolved = _resolve_labels(labels, updates)
    full = jax.tree.map(lambda label, sub: jax.tree.map(lambda _: label, sub), resolved, updates)
    gather = lambda x, label: x if _trees.is_masked(x) or label != "muon" else _sharding.gather(x)
    gathered_updates = jax.tree.map(lambda u, label: gather(u, label), updates, full)
    gathered_state = optax.tree.map_params(tx, gather, state, full, is_leaf=_trees.is_masked)
    new_updates, new_state = tx.update(gathered_updates, gathered_state, params, **extra_args)
    return (_sharding.restore_like(new_updates, updates),
            _sharding.restore_like(new_state, state))

  return optax.GradientTransformationExtraArgs(tx.init, update_fn)


def muon(
    learning_rate: optax.ScalarOrSchedule,
    *,
    adam_learning_rate: optax.ScalarOrSchedule | None = None,
    ns_coeffs: str | tuple[Any, ...] = "dion",
    ns_steps: int = 5,
    beta: float = 0.95,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    adam_weight_decay: float = 0.0,
    labels: LabelsOrFn | None = None,
    adam_nesterov: bool | None = None,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    weight_decay_mask: Any = None,
    preconditioning: Literal["frobenius", "spectral", "aol", "schatten"] = "frobenius",
    consistent_rms: float | None = None,
) -> optax.GradientTransformationExtraArgs:
  """Muon on hidden matrices and expert kernels, AdamW on the rest (Trinity's split).

  Works as optax's own transforms do under `jax.jit`, `optax.inject_hyperparams` (schedule any
  numeric argument; declare `ns_steps` static, as optax's own tests do for
  `optax.contrib.muon`, and a custom callable `labels` too, since `inject_hyperparams` takes
  every callable argument for a schedule: `static_args=("ns_steps", "labels")`),
  `optax.MultiSteps`, `optax.chain`, `optax.masked` and `optax.tree.map_params`.

  Explicit meshes: `optax.contrib.muon` (optax 0.2.8) fails there on a Muon leaf split over a
  mesh axis (FSDP): its Newton–Schulz `X Xᵀ` contracts a sharded dimension, which JAX refuses
  under Explicit sharding. This is inherited from optax and fixed on our side: the Muon
  leaves' gradients and momentum are gathered (replicated) for the step, as distributed Muon
  implementations gather each matrix for Newton–Schulz, and every updated buffer gets back its
  input sharding, so the state's type does not change. Adam leaves stay sharded; without
  Explicit-split leaves (Auto meshes, one device) the program is `optax.contrib.muon`'s.

  Args:
    learning_rate: Muon learning rate (Trinity Large peak: 8e-4); scaled per matrix by
      `sqrt(max(1, fan_out / fan_in))` (Keller Jordan's width rule).
    adam_learning_rate: Learning rate of the Adam branch (Trinity Large peak: 2e-4); None uses
      `learning_rate`.
    ns_coeffs: Newton–Schulz coefficients: "dion" (five per-step triples of Microsoft's Dion,
      the likely Trinity choice), "standard" (Keller Jordan's (3.4445, −4.775, 2.0315)) or an
      `(n, 3)` array.
    ns_steps: Newton–Schulz steps (with "dion": at least 5; the last `ns_steps` triples run).
    beta: Muon momentum decay.
    nesterov: Nesterov momentum for Muon (and, unless `adam_nesterov` is given, for Adam).
    weight_decay: Decoupled weight decay of the Muon branch (multiplied by the learning rate).
    adam_weight_decay: Weight decay of the Adam branch (applied to all Adam leaves).
    labels: A callable `params -> labels` or a pytree of "muon" | "adam" matched to the
      params by key path (their structure or a prefix of it; a pure dict serves the
      `nnx.State` of `nnx.Optimizer`); None (default) uses :func:`muon_labels`. Muon leaves must be 2-D or 3-D
      after their stacked axes. A single label string is refused (ValueError): it is what a
      callable becomes under `optax.inject_hyperparams` without `static_args=("labels",)`.
    adam_nesterov: None follows `nesterov` (optax's behaviour: NAdamW by default); False gives
      plain AdamW on the Adam leaves while Muon keeps Nesterov.
    adam_b1: Adam first-moment decay.
    adam_b2: Adam second-moment decay.
    eps: Epsilon of the Newton–Schulz normalisation and of Adam (shared, as in optax).
    mu_dtype: Dtype of the momentum buffers (None: the params' dtype).
    weight_decay_mask: Mask of the Muon weight decay (over the Muon leaves).
    preconditioning: Scaling before Newton–Schulz, see `optax.contrib.muon`.
    consistent_rms: If set, scale by `consistent_rms · sqrt(max(fan_in, fan_out))` instead of
      the width rule (Trinity: None).

  Returns:
    An `optax.GradientTransformationExtraArgs` (extra keyword arguments of `update` are passed
    on); accepts plain dicts and flax `nnx.State` param trees.

  References:
    Arcee AI, `Arcee Trinity Large Technical Report <https://arxiv.org/abs/2602.17004>`_, 2026

    Jordan, `Muon: An optimizer for hidden layers in neural networks
    <https://kellerjordan.github.io/posts/muon/>`_, 2024

    Ahn et al., `Dion: Distributed Orthonormalized Updates
    <https://arxiv.org/abs/2504.05295>`_, 2025
  """
  if isinstance(labels, str):  # also what a callable labels becomes under inject_hyperparams
    raise ValueError(
        f"muon: labels={labels!r} is one label; give a callable params -> labels or a pytree "
        'of "muon" | "adam" with the structure of the params. Under optax.inject_hyperparams a '
        "callable labels is taken for a schedule and called on the step count (giving 'adam' "
        "for every leaf): declare it static, static_args=('ns_steps', 'labels')")
  labels = muon_labels if labels is None else labels
  common = dict(ns_coeffs=ns_coeffs, ns_steps=ns_steps, beta=beta, eps=eps,
                weight_decay=weight_decay, weight_decay_mask=weight_decay_mask,
                mu_dtype=mu_dtype, nesterov=nesterov, preconditioning=preconditioning,
                consistent_rms=consistent_rms)
  if adam_nesterov is None or adam_nesterov == nesterov:
    return _wrapped(optax.contrib.muon(
        learning_rate,
        adam_b1=adam_b1,
        adam_b2=adam_b2,
        adam_weight_decay=adam_weight_decay,
        adam_learning_rate=adam_learning_rate,
        muon_weight_dimension_numbers=_muon_dimension_numbers(labels),
        **common), labels)

  # Adam momentum differs from Muon's: split first, then run a Muon-only optax.contrib.muon.
  adam = optax.adamw(learning_rate if adam_learning_rate is None else adam_learning_rate,
                     b1=adam_b1, b2=adam_b2, eps=eps, weight_decay=adam_weight_decay,
                     mu_dtype=mu_dtype, nesterov=adam_nesterov)
  only_muon = optax.contrib.muon(
      learning_rate, muon_weight_dimension_numbers=_all_muon_dimension_numbers, **common)
  # Callable labels: a labels pytree is matched by key path, as on the default path above.
  by_path = labels if callable(labels) else functools.partial(_resolve_labels, labels)
  return _wrapped(optax.partition({"muon": only_muon, "adam": adam}, by_path), labels)
