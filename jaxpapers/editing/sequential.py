"""Sequential editing with CrispEdit (arXiv 2602.15823, "scalable": edits arrive in batches).

The authors' sequential loop (`crispedit.py`, `execute_ft_sequential`): the edits arrive in
batches (`batch_size` 32 in their Llama-3-8B runs); the capability factors are computed once
and reused for every batch; one Adam optimizer runs over the whole stream; each batch is
optimised until its edit loss is below the stop loss (at most `max_steps` steps), and a batch
already below it is skipped. `method="finetune"` is sequential fine-tuning, the baseline.

Not done here: the authors' optional `edit_cache_style` (adding K-FAC factors of past edits to
the capability factors after each batch) and `recalculate_cache` (recomputing the factors when
the weights moved by more than 25 %); both are off in the setting the issue follows (factors
computed once).

Example::

  batches = split_edits(edit_rows, 3 * 32)        # 32 facts of 3 templates each
  edited, results = sequential_edit(model, batches, capability_batches,
                                    layer_paths=[("layers", 0, "down")], logits_fn=logits_fn,
                                    after_batch=lambda m, i, r: {"locality": locality(m)})
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from jaxpapers.editing.crispedit import EditResult, _Editor, _prepare_bases
from jaxpapers.optim._kfac_factors import LayerPath
from jaxpapers.optim._kfac_projector import KroneckerEigenbasis, KroneckerFactors


def split_edits(edit_batch: Mapping[str, np.ndarray], batch_size: int,
                pad: bool = True) -> list[dict[str, np.ndarray]]:
  """Rows of `edit_batch` in consecutive batches of `batch_size` rows (the arrival order).

  With `pad`, the last batch is filled up to `batch_size` rows with copies of its first row
  whose `"mask"` is 0 (so they add nothing to the edit loss), and every batch has one shape:
  one compiled edit loop serves them all.

  Args:
    edit_batch: arrays with a leading row axis, including `"mask"` when `pad` is set.
    batch_size: rows per batch.
    pad: pad the last batch (needs a `"mask"`).

  Returns:
    The batches.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  n = len(next(iter(edit_batch.values())))
  if pad and "mask" not in edit_batch:
    raise ValueError("split_edits(pad=True) needs a 'mask' entry (padding rows get mask 0)")
  out = []
  for start in range(0, n, batch_size):
    part = {k: np.asarray(v[start:start + batch_size]) for k, v in edit_batch.items()}
    short = batch_size - len(part["mask" if pad else next(iter(part))])
    if pad and short > 0:
      fill = {k: np.repeat(v[:1], short, axis=0) for k, v in part.items()}
      fill["mask"] = np.zeros_like(fill["mask"])
      part = {k: np.concatenate([part[k], fill[k]]) for k in part}
    out.append(part)
  return out


def sequential_edit(model: nnx.Module, edit_batches: Sequence[dict[str, Any]],
                    capability_batches: Iterable[dict[str, Any]] | None = None, *,
                    layer_paths: Sequence[LayerPath],
                    logits_fn: Callable[[nnx.Module, dict], jax.Array],
                    method: str = "crispedit",
                    factors: Mapping[str, KroneckerFactors] | None = None,
                    bases: Mapping[str, KroneckerEigenbasis] | None = None,
                    energy: float = 0.9, project: str = "gradient", label_mode: str = "empirical",
                    learning_rate: float = 1e-3, max_steps: int = 500, target_loss: float = 1e-2,
                    param_name: str = "kernel", rng: jax.Array | None = None,
                    after_batch: Callable[[nnx.Module, int, EditResult], dict] | None = None
                    ) -> tuple[nnx.Module, list[EditResult], list[dict]]:
  """Edits `model` on `edit_batches` one after another (the authors' sequential editing).

  Args:
    model: the base model (not modified).
    edit_batches: the batches in arrival order (e.g. `split_edits(rows, batch_size)`).
    capability_batches, factors, bases, energy, project, label_mode, learning_rate, max_steps,
      target_loss, param_name, rng, layer_paths, logits_fn, method: as in `crisp_edit`; the
      factors (and their eigenbases) are computed once, before the first batch, and `max_steps`
      and `target_loss` apply to each batch.
    after_batch: `(edited model, batch index, result) -> dict`, called after each batch (e.g.
      to measure edit success on every edit so far, locality and text loss).

  Returns:
    (the model after the last batch, one EditResult per batch, the `after_batch` dicts).
  """
  paths = [tuple(p) for p in layer_paths]
  bases, tokens = _prepare_bases(model, paths, logits_fn, method, factors, bases,
                                 capability_batches, energy, label_mode, rng)
  editor = _Editor(model, paths, logits_fn, method, bases, project, learning_rate, max_steps,
                   target_loss, param_name)
  results, records = [], []
  for i, batch in enumerate(edit_batches):
    results.append(editor.edit(batch, tokens if i == 0 else 0.0))
    if after_batch is not None:
      records.append(after_batch(editor.edited_model(), i, results[-1]))
  return editor.edited_model(), results, records
