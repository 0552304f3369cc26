"""Optax transforms of the papers (optax naming: scale_by_x, x, XState)."""

from jaxpapers.optim._smebu import SmebuState
from jaxpapers.optim._smebu import load_excess
from jaxpapers.optim._smebu import max_violation
from jaxpapers.optim._muon import muon
from jaxpapers.optim._muon import muon_labels
from jaxpapers.optim._smebu import sign_bias_balancing
from jaxpapers.optim._smebu import smebu
from jaxpapers.optim._kfac_factors import collect_kfac_factors
from jaxpapers.optim._kfac_factors import factor_tree
from jaxpapers.optim._kfac_factors import merge_kfac_factors
from jaxpapers.optim._kfac_projector import KfacProjectorState
from jaxpapers.optim._kfac_projector import KroneckerEigenbasis
from jaxpapers.optim._kfac_projector import KroneckerFactors
from jaxpapers.optim._kfac_projector import kfac_eigenbasis
from jaxpapers.optim._kfac_projector import kfac_project
from jaxpapers.optim._kfac_projector import kfac_projector
