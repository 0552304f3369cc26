"""Theory of modular addition (He et al., arXiv 2602.16849): Fourier features, gradient-flow
ODEs, the lottery ticket inside each neuron, the phase-symmetry mechanism, grokking stages."""

from jaxpapers.ode.dynamics import NeuronModes
from jaxpapers.ode.dynamics import euler
from jaxpapers.ode.dynamics import neuron_modes
from jaxpapers.ode.dynamics import polar_field
from jaxpapers.ode.dynamics import solve_adaptive
from jaxpapers.ode.dynamics import synthesize
from jaxpapers.ode.dynamics import vector_field
from jaxpapers.ode.dynamics import wrap
from jaxpapers.ode.fourier import fourier_coefficients
from jaxpapers.ode.fourier import inverse_participation_ratio
from jaxpapers.ode.fourier import magnitudes_and_phases
from jaxpapers.ode.lottery import actual_winners
from jaxpapers.ode.lottery import baseline_winners
from jaxpapers.ode.lottery import predict_winners
from jaxpapers.ode.lottery import winner_misalignment
from jaxpapers.ode.mechanism import accuracy as mechanism_accuracy
from jaxpapers.ode.mechanism import peak_ratios
from jaxpapers.ode.mechanism import phase_symmetric_network
from jaxpapers.ode.mechanism import quad_logits
from jaxpapers.ode.stages import Stages
from jaxpapers.ode.stages import detect_stages
from jaxpapers.ode.stages import first_step
