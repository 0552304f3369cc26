"""Model editing with low-curvature projections: CrispEdit (arXiv 2602.15823).

`crisp_edit` edits chosen linear layers of an NNX model so that it gives new answers on an
edit set, while keeping its behaviour on capability data (the paper's editing as constrained
optimization, section 3, with the steps of the authors' code, `crispedit.py` and
`easyeditor/models/crispedit/`):

1. collect K-FAC factors `A ⊗ G` of each edited layer on capability batches
   (`jaxpapers.optim.collect_kfac_factors`; by default with the data's own next tokens, the
   authors' empirical Fisher, `label_mode="empirical"`);
2. eigendecompose them once and keep the directions outside the top `energy` fraction of the
   curvature trace (the authors' energy rule; `edit_bases`);
3. minimise the edit loss (teacher-forced cross-entropy on the target tokens only) with Adam
   on the edited kernels until the loss is below `target_loss` or `max_steps` (the authors'
   early stop). By default only the gradient is projected before Adam (`project="gradient"`,
   the authors' `ProjectedAdam`).

Our variant, kept as named options: `project="both"` also projects Adam's update, so the applied
change stays in the subspace (Adam's per-coordinate scaling moves a projected gradient out of
it), and `label_mode="sampled"` draws the factors' labels from the model (the Fisher, equal to
the Gauss-Newton curvature of the paper's Bregman constraint for softmax cross-entropy).

`method="finetune"` runs the same loop without projection (the FT baseline), and
`method="null_space"` projects with `G = I` (AlphaEdit / Adam-NSCL-style null space of `A`).
Sequential editing (batches of edits arriving one after another) is
`jaxpapers.editing.sequential_edit`.

The optimisation loop is one jitted `lax.while_loop` (one forward and backward per step),
compiled once per model structure, edited layers and projection placement and shared by every
call (bases, learning rate, step budget and stop loss are arguments). The projection only
uses the eigen-directions of A that it needs: those with a kept pair (`P(X) = U_k [(U_kᵀ X U_G)
⊙ K_k] U_Gᵀ`) or, when fewer, those with a removed pair (the complement form `X - U_r [(U_rᵀ X
U_G) ⊙ (1 - K_r)] U_Gᵀ`): the same projector (`U_A` and `U_G` are orthogonal) at `rows / d_in` of
the cost.

Example::

  edited, result = crisp_edit(model, edit_batch, capability_batches,
                              layer_paths=[("blocks", 1, "mlp", "down")],
                              logits_fn=lambda m, b: m(b["inputs"]))
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.optim._kfac_factors import LayerPath, collect_kfac_factors, get_submodule, path_key
from jaxpapers.optim._kfac_projector import (
    KroneckerEigenbasis,
    KroneckerFactors,
    _a_only_mask,
    energy_mask,
    kfac_eigenbasis,
    kfac_project,
)

METHODS = ("crispedit", "null_space", "finetune")
PROJECT_MODES = ("gradient", "update", "both")
LABEL_MODES = ("empirical", "sampled")
AUTHORS = {"project": "gradient", "label_mode": "empirical"}  # the authors' ProjectedAdam, empirical Fisher
OURS = {"project": "both", "label_mode": "sampled"}  # update kept in the subspace, Fisher labels


@dataclasses.dataclass(frozen=True)
class EditResult:
  """What an edit did.

  Attributes:
    method: "crispedit", "null_space" or "finetune".
    steps: optimizer steps taken (0: the edit loss was already below the target, skipped).
    edit_loss: edit loss of the returned model.
    converged: whether the edit loss went below the target.
    num_removed: per layer, the number of removed (high-curvature) directions.
    factor_tokens: tokens the factors were collected on (0 when given or not needed).
    initial_loss: edit loss of the model before this edit.
  """

  method: str
  steps: int
  edit_loss: float
  converged: bool
  num_removed: dict[str, int]
  factor_tokens: float
  initial_loss: float = float("nan")

  @property
  def skipped(self) -> bool:
    """Whether the edit was already below the stop loss (no step taken)."""
    return self.steps == 0


def edit_loss(logits: jax.Array, batch: dict[str, Any]) -> jax.Array:
  """Mean cross-entropy of `batch["targets"]` over positions where `batch["mask"]` is 1.

  The mask selects target tokens (prompt positions and padding rows are 0); without a mask every
  position counts.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["targets"])
  mask = batch.get("mask")
  if mask is None:
    return jnp.mean(ce)
  mask = mask.astype(jnp.float32)
  return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@functools.partial(jax.jit, static_argnames=("g_identity",))
def _eigenbasis(factors: KroneckerFactors, energy: jax.Array, g_identity: bool) -> KroneckerEigenbasis:
  return kfac_eigenbasis(factors, energy, g_identity)


@functools.partial(jax.jit, static_argnames=("g_identity",))
def _eigenbasis_reusing_a(u_a, eig_a, g, energy, g_identity):
  """`kfac_eigenbasis` with A's eigendecomposition given (only G is decomposed)."""
  d_out = g.shape[0]
  if g_identity:
    keep, threshold, removed = _a_only_mask(eig_a, d_out, energy)
    return KroneckerEigenbasis(u_a, None, keep, threshold, removed, eig_a,
                               jnp.ones(d_out, jnp.float32), energy)
  eig_g, u_g = jnp.linalg.eigh(g.astype(jnp.float32))
  keep, threshold, removed = energy_mask(eig_a, eig_g, energy)
  return KroneckerEigenbasis(u_a, u_g, keep, threshold, removed, eig_a, eig_g, energy)


def edit_bases(factors: Mapping[str, KroneckerFactors], energy: float = 0.9,
               method: str = "crispedit",
               reuse_a: Mapping[str, KroneckerEigenbasis] | None = None
               ) -> dict[str, KroneckerEigenbasis]:
  """Each layer's eigenbasis and kept-direction mask for `method` (computed once, reusable).

  Pass the result as `crisp_edit(..., bases=...)` (or to `sequential_edit`) to share one
  eigendecomposition between edits; `kfac_project(delta, bases[key])` projects a change.

  Args:
    factors: `{path_key: KroneckerFactors}` from `collect_kfac_factors`.
    energy: fraction τ of each layer's curvature trace removed (the authors' energy rule).
    method: "crispedit" (A ⊗ G) or "null_space" (A only, G = I); "finetune" gives `{}`.
    reuse_a: bases of factors with the same A (e.g. collected on the same batches with the other
      label mode: A = E[a aᵀ] does not depend on the labels); their eigendecomposition of A is
      reused and only G is decomposed (A is the large factor of an MLP down projection).

  Returns:
    `{path_key: KroneckerEigenbasis}`.
  """
  _check_choice("method", method, METHODS)
  if not 0.0 <= float(energy) <= 1.0:
    raise ValueError(f"energy must be in [0, 1], got {energy}")
  if method == "finetune":
    return {}
  tau, g_identity = jnp.float32(energy), method == "null_space"
  out = {}
  for k, f in factors.items():
    if reuse_a is not None and k in reuse_a:
      out[k] = _eigenbasis_reusing_a(reuse_a[k].u_a, reuse_a[k].eig_a, f.g, tau, g_identity)
    else:
      out[k] = _eigenbasis(f, tau, g_identity)
  return out


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
  if value not in choices:
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


class _RemovedDirections(NamedTuple):
  """The complement form of a layer's projector: `P(X) = X - U_r [(U_rᵀ X U_G) ⊙ R] U_Gᵀ`.

  Attributes:
    u_a: `[d_in, r]` eigenvectors of A with at least one removed pair (zero columns pad r).
    u_g: `[d_out, d_out]` eigenvectors of G, or None (A-only: whole A directions removed).
    removed: `[r, d_out]` 1 on removed pairs (0 on padding rows), or None with `u_g`.
    u_a_t: `u_a` transposed, stored (a row-major `[r, d_in]` operand: XLA's CPU dot is about
      twice as fast as contracting `u_a`'s leading axis).
  """

  u_a: jax.Array
  u_g: jax.Array | None
  removed: jax.Array | None
  u_a_t: jax.Array


class _KeptDirections(NamedTuple):
  """The kept-rows form of a layer's projector: `P(X) = U_k [(U_kᵀ X U_G) ⊙ K_k] U_Gᵀ`.

  Attributes:
    u_a: `[d_in, k]` eigenvectors of A with at least one kept pair (zero columns pad k).
    u_g: `[d_out, d_out]` eigenvectors of G, or None (A-only).
    keep: `[k, d_out]` the kept-pair mask of those rows (0 on padding rows), or None with `u_g`.
    u_a_t: `u_a` transposed, stored.
  """

  u_a: jax.Array
  u_g: jax.Array | None
  keep: jax.Array | None
  u_a_t: jax.Array


_PAD = 128  # row counts are padded to a multiple of this, so nearby counts share one compiled loop


def _projector(basis: KroneckerEigenbasis) -> KroneckerEigenbasis | _RemovedDirections | _KeptDirections:
  """`basis` in its cheapest exact form.

  `P` only involves the eigen-directions of A that have a kept pair (`P = U_k [...] U_Gᵀ`), and
  `I - P` only those with a removed pair; with `U_A` orthogonal both are the same projector, at
  `rows / d_in` of the cost of the full `U_A [(U_Aᵀ X U_G) ⊙ K] U_Gᵀ`.
  """
  keep = np.asarray(basis.keep)
  d_in = keep.shape[0]
  removed_rows = np.flatnonzero((keep < 1).any(axis=1))
  kept_rows = np.flatnonzero((keep > 0).any(axis=1))
  rows = removed_rows if len(removed_rows) <= len(kept_rows) else kept_rows
  padded = -(-len(rows) // _PAD) * _PAD
  if padded >= d_in:
    return basis
  u_a = np.zeros((d_in, padded), np.float32)
  u_a[:, :len(rows)] = np.asarray(basis.u_a)[:, rows]
  mask = None
  if basis.u_g is not None:
    mask = np.zeros((padded, keep.shape[1]), np.float32)
    mask[:len(rows)] = 1.0 - keep[rows] if rows is removed_rows else keep[rows]
    mask = jnp.asarray(mask)
  form = _RemovedDirections if rows is removed_rows else _KeptDirections
  return form(jnp.asarray(u_a), basis.u_g, mask, jnp.asarray(np.ascontiguousarray(u_a.T)))


def _project(x: jax.Array, p: KroneckerEigenbasis | _RemovedDirections | _KeptDirections) -> jax.Array:
  """`P(x)` of a layer's projector in any of its forms."""
  if isinstance(p, KroneckerEigenbasis):
    return kfac_project(x, p)
  x32 = x.reshape(p.u_a.shape[0], -1).astype(jnp.float32)
  rotated = p.u_a_t @ x32
  if p.u_g is None:
    part = p.u_a @ rotated
  else:
    part = p.u_a @ (((rotated @ p.u_g) * p[2]) @ p.u_g.T)
  out = x32 - part if isinstance(p, _RemovedDirections) else part
  return out.reshape(x.shape).astype(x.dtype)


def _with_kernels(graphdef, state, paths, kernels, param_name):
  """The model with the edited weights replaced by `kernels` (a pure function of them)."""
  where = {tuple(p) + (param_name,): path_key(p) for p in paths}
  flat = [(k, v.replace(kernels[where[k]]) if k in where else v) for k, v in nnx.to_flat_state(state)]
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


@functools.partial(jax.jit, static_argnames=("graphdef", "logits_fn", "paths", "param_name",
                                             "before", "after"))
def _edit_loop(kernels, opt_state, bases, state, batch, lr, max_steps, target_loss, *, graphdef,
               logits_fn, paths, param_name, before, after):
  """Adam on `kernels` until the edit loss is below `target_loss` or `max_steps` steps.

  One forward and backward per step: the carry holds the loss and gradient at the current
  kernels, so the stop test and the next step share them.

  Returns:
    (kernels, opt_state, steps, final loss, initial loss).
  """
  tx = optax.adam(lr)

  def loss_of(params):
    return edit_loss(logits_fn(_with_kernels(graphdef, state, paths, params, param_name), batch), batch)

  value_and_grad = jax.value_and_grad(loss_of)

  def project(tree):
    return {k: _project(v, bases[k]) if k in bases else v for k, v in tree.items()}

  def cond(carry):
    step, _, _, loss, _ = carry
    return (step < max_steps) & (loss >= target_loss)

  def body(carry):
    step, params, opt_state, _, grads = carry
    if before:
      grads = project(grads)
    updates, opt_state = tx.update(grads, opt_state, params)
    if after:
      updates = project(updates)
    params = optax.apply_updates(params, updates)
    loss, grads = value_and_grad(params)
    return step + 1, params, opt_state, loss, grads

  initial, grads = value_and_grad(kernels)
  step, kernels, opt_state, loss, _ = jax.lax.while_loop(
      cond, body, (jnp.int32(0), kernels, opt_state, initial, grads))
  return kernels, opt_state, step, loss, initial


def _committed(tree, kernels):
  """`tree` (the kernels or Adam's state) committed where `_edit_loop` returns it.

  The loop's outputs are committed arrays: arrays keep their own placement, scalars (Adam's step
  count) go on the kernels' devices (replicated on their mesh). Inputs placed otherwise (fresh,
  uncommitted arrays) would make the second edit of a sequential stream compile the loop again.
  Values are unchanged.
  """
  def placement(x, like):
    sharding = like.sharding
    if not isinstance(sharding, jax.sharding.NamedSharding):
      return sharding
    spec = tuple(sharding.spec)[:jnp.ndim(x)] if jnp.ndim(x) else ()
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(
        *spec, *(None,) * (jnp.ndim(x) - len(spec))))  # spelled as the loop's outputs are

  first = next(iter(kernels.values()))
  return jax.tree.map(lambda x: jax.device_put(x, placement(x, x if jnp.ndim(x) else first)), tree)


class _Editor:
  """The pieces shared by the edits of one model: kernels, bases and the compiled loop.

  `edit(batch)` runs one edit from the current kernels and Adam state and keeps both, so
  successive calls are the authors' sequential editing (one optimizer over the whole stream).
  """

  def __init__(self, model, layer_paths, logits_fn, method, bases, project, learning_rate,
               max_steps, target_loss, param_name):
    _check_choice("method", method, METHODS)
    _check_choice("project", project, PROJECT_MODES)
    self.paths = tuple(tuple(p) for p in layer_paths)
    if not self.paths:
      raise ValueError("crisp_edit needs at least one layer path")
    self.model, self.method, self.param_name = model, method, param_name
    self.kernels = {path_key(p): getattr(get_submodule(model, p), param_name)[...] for p in self.paths}
    self.bases = dict(bases) if method != "finetune" else {}
    if method != "finetune":
      missing = sorted(set(self.kernels) - set(self.bases))
      if missing:
        raise ValueError(f"no factors for edited layers {missing}")
      self.bases = {k: self.bases[k] for k in self.kernels}
      for k, b in self.bases.items():
        if (b.u_g is None) != (method == "null_space"):
          kind = "A-only (null_space)" if b.u_g is None else "A ⊗ G (crispedit)"
          raise ValueError(f"basis of {k!r} is {kind}, not for method={method!r}")
    self.projectors = {k: _projector(b) for k, b in self.bases.items()}
    self.graphdef, self.state = nnx.split(model)
    self.kernels = _committed(self.kernels, self.kernels)
    self.opt_state = _committed(optax.adam(learning_rate).init(self.kernels), self.kernels)
    self.hyper = (jnp.float32(learning_rate), jnp.int32(max_steps), jnp.float32(target_loss))
    self.target_loss = target_loss
    self.static = dict(graphdef=self.graphdef, logits_fn=logits_fn, paths=self.paths,
                       param_name=param_name,
                       before=method != "finetune" and project in ("gradient", "both"),
                       after=method != "finetune" and project in ("update", "both"))

  def edit(self, batch: dict[str, Any], factor_tokens: float = 0.0) -> EditResult:
    batch = jax.tree.map(jnp.asarray, dict(batch))
    self.kernels, self.opt_state, steps, loss, initial = _edit_loop(
        self.kernels, self.opt_state, self.projectors, self.state, batch, *self.hyper, **self.static)
    loss = float(loss)
    return EditResult(self.method, int(steps), loss, bool(loss < self.target_loss),
                      {k: int(b.num_removed) for k, b in self.bases.items()}, factor_tokens,
                      float(initial))

  def edited_model(self) -> nnx.Module:
    edited = nnx.clone(self.model)
    for path in self.paths:
      getattr(get_submodule(edited, path), self.param_name)[...] = self.kernels[path_key(path)]
    return edited


def _prepare_bases(model, paths, logits_fn, method, factors, bases, capability_batches, energy,
                   label_mode, rng):
  """The bases of `method`: given, from given factors, or from collected factors (+ tokens)."""
  _check_choice("label_mode", label_mode, LABEL_MODES)
  if method == "finetune":
    return {}, 0.0
  if bases is not None:
    return bases, 0.0
  tokens = 0.0
  if factors is None:
    if capability_batches is None:
      raise ValueError(f"method={method!r} needs capability_batches, factors or bases")
    factors, tokens = collect_kfac_factors(model, paths, capability_batches, logits_fn,
                                           label_mode=label_mode, rng=rng)
  missing = sorted({path_key(p) for p in paths} - set(factors))
  if missing:
    raise ValueError(f"no factors for edited layers {missing}")
  return edit_bases({path_key(p): factors[path_key(p)] for p in paths}, energy, method), tokens


def crisp_edit(model: nnx.Module, edit_batch: dict[str, Any],
               capability_batches: Iterable[dict[str, Any]] | None = None, *,
               layer_paths: Sequence[LayerPath],
               logits_fn: Callable[[nnx.Module, dict], jax.Array],
               method: str = "crispedit",
               factors: Mapping[str, KroneckerFactors] | None = None,
               bases: Mapping[str, KroneckerEigenbasis] | None = None,
               energy: float = 0.9, project: str = "gradient", label_mode: str = "empirical",
               learning_rate: float = 1e-3, max_steps: int = 500, target_loss: float = 1e-2,
               param_name: str = "kernel",
               rng: jax.Array | None = None) -> tuple[nnx.Module, EditResult]:
  """Edits `model` on `edit_batch` inside the low-curvature subspace of capability data.

  Args:
    model: the base model (not modified).
    edit_batch: the edits: whatever `logits_fn` reads, `"targets"` (new labels) and optional
      `"mask"` (1 on target tokens).
    capability_batches: batches for the K-FAC factors (not needed with `factors` or `bases`,
      or for "finetune"); `"targets"` are the empirical labels.
    layer_paths: paths of the edited linear layers (their `param_name` weight is edited; biases
      are left alone, as in the authors' code).
    logits_fn: `(model, batch) -> logits [..., classes]`. Pass the same function object to
      successive calls to reuse the compiled loop.
    method: "crispedit", "null_space" (A-only) or "finetune" (no projection).
    factors: precomputed `{path_key: KroneckerFactors}` (skips collection).
    bases: precomputed `edit_bases(factors, energy, method)` (skips the eigendecomposition;
      `energy` and `label_mode` are then those of the bases).
    energy: fraction of each layer's curvature trace removed (the authors' energy rule).
    project: "gradient" (default, the authors' ProjectedAdam), "update" or "both" (ours:
      the applied change stays in the subspace).
    label_mode: labels of the factor collection, "empirical" (default, the authors' code) or
      "sampled" (ours, the Fisher).
    learning_rate: Adam's step size.
    max_steps: most optimizer steps.
    target_loss: stop once the edit loss is below this (0 steps if it already is).
    param_name: the weight attribute of each layer.
    rng: key for sampled labels.

  Returns:
    (edited model, EditResult).
  """
  _check_choice("method", method, METHODS)
  paths = [tuple(p) for p in layer_paths]
  bases, tokens = _prepare_bases(model, paths, logits_fn, method, factors, bases,
                                 capability_batches, energy, label_mode, rng)
  editor = _Editor(model, paths, logits_fn, method, bases, project, learning_rate, max_steps,
                   target_loss, param_name)
  result = editor.edit(edit_batch, tokens)
  return editor.edited_model(), result
