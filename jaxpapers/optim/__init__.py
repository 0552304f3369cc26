"""Optax transforms of the papers (optax naming: scale_by_x, x, XState)."""

from jaxpapers.optim._kfac_factors import collect_kfac_factors, factor_tree, merge_kfac_factors
from jaxpapers.optim._kfac_projector import (
    KfacProjectorState,
    KroneckerEigenbasis,
    KroneckerFactors,
    kfac_eigenbasis,
    kfac_project,
    kfac_projector,
)
from jaxpapers.optim._muon import muon, muon_labels
from jaxpapers.optim._smebu import SmebuState, load_excess, max_violation, sign_bias_balancing, smebu
