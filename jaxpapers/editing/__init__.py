"""Model editing: change what a trained model answers on an edit set, keep the rest.

CrispEdit (arXiv 2602.15823): edits confined to the low-curvature subspace of capability data,
given by the layers' K-FAC factors (`jaxpapers.optim.collect_kfac_factors` and
`kfac_projector`), with the fine-tuning and A-only null-space baselines (`crispedit.py`).
"""

from jaxpapers.editing.crispedit import METHODS, EditResult, crisp_edit, edit_loss

__all__ = ["METHODS", "EditResult", "crisp_edit", "edit_loss"]
