"""Gradient-flow and Fourier tools for modular addition (arXiv 2602.16849)."""

from jaxpapers.ode.fourier import fourier_coefficients
from jaxpapers.ode.fourier import inverse_participation_ratio
from jaxpapers.ode.fourier import magnitudes_and_phases
