"""Theory of modular addition (He et al., arXiv 2602.16849): Fourier features, gradient-flow
ODEs, the lottery ticket inside each neuron, the phase-symmetry mechanism, grokking stages."""

from jaxpapers.ode.dynamics import (
    NeuronModes,
    euler,
    neuron_modes,
    polar_field,
    solve_adaptive,
    synthesize,
    vector_field,
    wrap,
)
from jaxpapers.ode.fourier import fourier_coefficients, inverse_participation_ratio, magnitudes_and_phases
from jaxpapers.ode.lottery import actual_winners, baseline_winners, predict_winners, winner_misalignment
from jaxpapers.ode.mechanism import accuracy as mechanism_accuracy
from jaxpapers.ode.mechanism import peak_ratios, phase_symmetric_network, quad_logits
from jaxpapers.ode.stages import Stages, detect_stages, first_step
