"""Model editing: change what a trained model answers on an edit set, keep the rest.

CrispEdit (arXiv 2602.15823): edits confined to the low-curvature subspace of capability data,
given by the layers' K-FAC factors (`jaxpapers.optim.collect_kfac_factors`), with the authors'
configuration as the default (gradient projected before Adam, empirical-Fisher factors), ours as
named options, the fine-tuning and A-only null-space baselines (`crispedit.py`), and the authors'
sequential editing of batches of edits with factors computed once (`sequential.py`).
"""

from jaxpapers.editing.crispedit import (
    AUTHORS,
    LABEL_MODES,
    METHODS,
    OURS,
    PROJECT_MODES,
    EditResult,
    crisp_edit,
    edit_bases,
    edit_loss,
)
from jaxpapers.editing.sequential import sequential_edit, split_edits

__all__ = ["AUTHORS", "LABEL_MODES", "METHODS", "OURS", "PROJECT_MODES", "EditResult", "crisp_edit",
           "edit_bases", "edit_loss", "sequential_edit", "split_edits"]
