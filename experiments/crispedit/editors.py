"""The editors of the CrispEdit studies (arXiv 2602.15823) and their shared capability bases.

Each editor is a (method, projection placement, factor labels) triple. "crispedit" takes the
config's `edit.project` / `edit.label_mode` (the authors' configuration by default: gradient
projected before Adam, empirical-Fisher factors) and is the one the claims gate on;
"crispedit_ours" is our configuration (gradient and update projected, labels sampled from the
model); the two "crispedit_*" mixes change one of the two at a time; "a_only" is the A-only
null space (AlphaEdit / Adam-NSCL) with the config's projection placement; "ft" fine-tunes.

`capability_bases` collects the K-FAC factors once per label mode on the same batches and
eigendecomposes A once for every editor (A does not depend on the labels), G once per label mode.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax

from jaxpapers.editing import OURS, edit_bases
from jaxpapers.optim import collect_kfac_factors

from .config import EditConfig

# name -> (method, project, label_mode); None: the config's (edit.project / edit.label_mode).
EDITORS = {
    "ft": ("finetune", None, None),
    "crispedit": ("crispedit", None, None),
    "crispedit_ours": ("crispedit", OURS["project"], OURS["label_mode"]),
    "crispedit_both_empirical": ("crispedit", "both", "empirical"),
    "crispedit_gradient_sampled": ("crispedit", "gradient", "sampled"),
    "a_only": ("null_space", None, None),
}
LABELS = {"ft": "fine-tune", "crispedit": "CrispEdit (authors')", "crispedit_ours": "CrispEdit (ours)",
          "crispedit_both_empirical": "both, empirical", "crispedit_gradient_sampled": "gradient, sampled",
          "a_only": "A-only"}


def settings(name: str, edit: EditConfig) -> tuple[str, str, str]:
  """(method, project, label_mode) of editor `name`, the config's defaults filled in."""
  method, project, labels = EDITORS[name]
  return method, project or edit.project, labels or edit.label_mode


def capability_bases(model: Any, layer_paths: Sequence[tuple], batches: list[dict],
                     logits_fn: Callable, editors: Sequence[str], edit: EditConfig,
                     rng: jax.Array) -> tuple[dict[tuple[str, str], dict], float]:
  """The eigenbases every editor in `editors` needs, keyed by (method, label_mode).

  Args:
    model: the base model.
    layer_paths: the edited layers.
    batches: capability batches (with `"targets"`, the empirical labels).
    logits_fn: `(model, batch) -> logits`.
    editors: editor names (keys of EDITORS).
    edit: energy and the "crispedit" editor's settings.
    rng: key of the sampled labels.

  Returns:
    ({(method, label_mode): {path_key: KroneckerEigenbasis}}, factor tokens).
  """
  wanted = sorted({settings(n, edit)[::2] for n in editors if EDITORS[n][0] != "finetune"})
  wanted.sort(key=lambda pair: pair[0] != "crispedit")  # a Kronecker basis first: A from it
  factors, tokens = {}, 0.0
  for _, labels in wanted:
    if labels not in factors:
      factors[labels], tokens = collect_kfac_factors(model, layer_paths, batches, logits_fn,
                                                     label_mode=labels, rng=rng)
  bases, first = {}, None
  for method, labels in wanted:
    bases[method, labels] = edit_bases(factors[labels], edit.energy, method, reuse_a=first)
    first = first or bases[method, labels]
  return bases, tokens
