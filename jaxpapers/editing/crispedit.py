"""Model editing with low-curvature projections: CrispEdit (arXiv 2602.15823).

`crisp_edit` edits chosen linear layers of an NNX model so that it gives new answers on an
edit set, while keeping its behaviour on capability data (the paper's editing as constrained
optimization, with the steps of the authors' code):

1. collect K-FAC factors `A ⊗ G` of each edited layer on capability batches
   (`jaxpapers.optim.collect_kfac_factors`; sampled labels by default);
2. eigendecompose them once and keep the directions outside the top `energy` fraction of the
   curvature trace (`jaxpapers.optim.kfac_projector`);
3. minimise the edit loss (teacher-forced cross-entropy on the target tokens only) with Adam
   on the edited kernels, every gradient and/or update projected, until the loss is below
   `target_loss` or `max_steps` (the authors' early stop).

`method="finetune"` runs the same loop without projection (the FT baseline), and
`method="null_space"` projects with `G = I` (AlphaEdit / Adam-NSCL-style null space of `A`).

Example::

  edited, result = crisp_edit(model, edit_batch, capability_batches,
                              layer_paths=[("blocks", 1, "mlp", "down")],
                              logits_fn=lambda m, b: m(b["inputs"]))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxpapers.optim._kfac_factors import LayerPath, collect_kfac_factors, get_submodule, path_key
from jaxpapers.optim._kfac_projector import KroneckerFactors, kfac_projector

METHODS = ("crispedit", "null_space", "finetune")


@dataclasses.dataclass(frozen=True)
class EditResult:
  """What an edit did.

  Attributes:
    method: "crispedit", "null_space" or "finetune".
    steps: optimizer steps taken.
    edit_loss: edit loss of the returned model.
    converged: whether the edit loss went below the target.
    num_removed: per layer, the number of removed (high-curvature) directions.
    factor_tokens: tokens the factors were collected on (0 when given or not needed).
  """

  method: str
  steps: int
  edit_loss: float
  converged: bool
  num_removed: dict[str, int]
  factor_tokens: float


def edit_loss(logits: jax.Array, batch: dict[str, Any]) -> jax.Array:
  """Mean cross-entropy of `batch["targets"]` over positions where `batch["mask"]` is 1.

  The mask selects target tokens (prompt positions are 0); without a mask every position counts.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["targets"])
  mask = batch.get("mask")
  if mask is None:
    return jnp.mean(ce)
  mask = mask.astype(jnp.float32)
  return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _with_kernels(graphdef, state, paths, kernels, param_name):
  """The model with the edited weights replaced by `kernels` (a pure function of them)."""
  where = {tuple(p) + (param_name,): path_key(p) for p in paths}
  flat = [(k, v.replace(kernels[where[k]]) if k in where else v) for k, v in nnx.to_flat_state(state)]
  return nnx.merge(graphdef, nnx.from_flat_state(flat))


def crisp_edit(model: nnx.Module, edit_batch: dict[str, Any],
               capability_batches: Iterable[dict[str, Any]] | None = None, *,
               layer_paths: Sequence[LayerPath],
               logits_fn: Callable[[nnx.Module, dict], jax.Array],
               method: str = "crispedit",
               factors: dict[str, KroneckerFactors] | None = None,
               energy: float = 0.9, project: str = "both", label_mode: str = "sampled",
               learning_rate: float = 1e-3, max_steps: int = 500, target_loss: float = 1e-2,
               param_name: str = "kernel",
               rng: jax.Array | None = None) -> tuple[nnx.Module, EditResult]:
  """Edits `model` on `edit_batch` inside the low-curvature subspace of capability data.

  Args:
    model: the base model (not modified).
    edit_batch: the edits: whatever `logits_fn` reads, `"targets"` (new labels) and optional
      `"mask"` (1 on target tokens).
    capability_batches: batches for the K-FAC factors (not needed with `factors` or for
      "finetune").
    layer_paths: paths of the edited linear layers (their `param_name` weight is edited; biases
      are left alone, as in the authors' code).
    logits_fn: `(model, batch) -> logits [..., classes]`.
    method: "crispedit", "null_space" (A-only) or "finetune" (no projection).
    factors: precomputed `{path_key: KroneckerFactors}` (skips collection).
    energy: fraction of each layer's curvature trace removed (the authors' energy rule).
    project: "gradient" (repo), "update" or "both" (default, ours: Adam's
      update of a projected gradient leaves the subspace).
    label_mode: labels of the factor collection, "sampled" or "empirical".
    learning_rate: Adam's step size.
    max_steps: most optimizer steps.
    target_loss: stop once the edit loss is below this.
    param_name: the weight attribute of each layer.
    rng: key for sampled labels.

  Returns:
    (edited model, EditResult).
  """
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  paths = [tuple(p) for p in layer_paths]
  if not paths:
    raise ValueError("crisp_edit needs at least one layer path")
  kernels = {path_key(p): getattr(get_submodule(model, p), param_name)[...] for p in paths}
  tokens = 0.0
  tx = optax.adam(learning_rate)
  removed: dict[str, int] = {}
  if method != "finetune":
    if factors is None:
      if capability_batches is None:
        raise ValueError(f"method={method!r} needs capability_batches or factors")
      factors, tokens = collect_kfac_factors(model, paths, capability_batches, logits_fn,
                                             label_mode=label_mode, rng=rng)
    missing = sorted(set(kernels) - set(factors))
    if missing:
      raise ValueError(f"no factors for edited layers {missing}")
    tx = kfac_projector({k: factors[k] for k in kernels}, energy=energy, project=project,
                        g_identity=method == "null_space", inner=tx)
  graphdef, state = nnx.split(model)

  def loss_of(params):
    return edit_loss(logits_fn(_with_kernels(graphdef, state, paths, params, param_name), edit_batch),
                     edit_batch)

  @jax.jit
  def run(params):
    opt_state = tx.init(params)

    def cond(carry):
      step, _, _, loss = carry
      return (step < max_steps) & (loss >= target_loss)

    def body(carry):
      step, params, opt_state, _ = carry
      grads = jax.grad(loss_of)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      return step + 1, params, opt_state, loss_of(params)

    step, params, opt_state, loss = jax.lax.while_loop(
        cond, body, (jnp.int32(0), params, opt_state, loss_of(params)))
    bases = opt_state.bases if method != "finetune" else {}
    return params, step, loss, {k: b.num_removed for k, b in bases.items()}

  new_kernels, steps, loss, removed = run(kernels)
  edited = nnx.clone(model)
  for path in paths:
    getattr(get_submodule(edited, path), param_name)[...] = new_kernels[path_key(path)]
  result = EditResult(method, int(steps), float(loss), bool(loss < target_loss),
                      {k: int(v) for k, v in removed.items()}, tokens)
  return edited, result
