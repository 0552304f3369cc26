"""Optax transforms of the papers (optax naming: scale_by_x, x, XState)."""

from jaxpapers.optim._smebu import SmebuState
from jaxpapers.optim._smebu import load_excess
from jaxpapers.optim._smebu import max_violation
from jaxpapers.optim._muon import muon
from jaxpapers.optim._muon import muon_labels
from jaxpapers.optim._smebu import sign_bias_balancing
from jaxpapers.optim._smebu import smebu
