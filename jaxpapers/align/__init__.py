"""Cross-embodiment latent alignment (TactAlign, arXiv 2602.13579).

* `pairs`: pose-matched, contact-consistent pseudo-pairs between unpaired human and robot
  samples (Sec. III-B), contact states from normalised tactile magnitudes, random pairs.
* `flow`: rectified-flow alignment on pairs (Sec. III-C): velocity MLP, the loss and the Euler
  transport over `jaxpapers.diffusion`'s shared pieces; a regression MLP baseline.
"""

from jaxpapers.align.flow import RegressionMLP, VelocityMLP, rectified_flow_loss, transport
from jaxpapers.align.pairs import Pairs, contact_state, pseudo_pairs, random_pairs, standardize_poses
