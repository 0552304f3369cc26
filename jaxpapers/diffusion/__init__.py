"""Diffusion and flow-matching methods: training losses and samplers.

* `flow_matching`: rectified flow's interpolation and training times, the flow-matching loss and
  velocity distillation (with per-example or per-element masks).
* `samplers`: integrating a velocity field from noise to data (Euler).
"""

from jaxpapers.diffusion.flow_matching import (
    flow_matching_loss,
    interpolate,
    mean_squared_error,
    sample_times,
    velocity_distillation_loss,
)
from jaxpapers.diffusion.samplers import euler_sample

# isort: split
# DDiT (arXiv 2602.16968): third-difference patch scheduler, grouped sampler, FLOP counter.
from jaxpapers.diffusion.ddit import (
    PatchForwards,
    TeaCache,
    ddit_sample,
    ddit_schedule,
    flop_ratio,
    forward_flops,
    third_diff,
)

# isort: split
# Unified Latents (arXiv 2602.17270): noise process, latent bitrate bound, decoder loss; VP samplers.
from jaxpapers.diffusion.ddim import lambda_grid, vp_sample
from jaxpapers.diffusion.unified_latents import (
    LinearLogSNR,
    decoder_loss,
    encoder_noise,
    prior_loss,
    sigmoid_weight,
    stratified_times,
    terminal_kl,
)

# isort: split
# FRAPPE (arXiv 2602.17259): RDT's cosine DDPM with x0-prediction; DDIM on its steps (vp_sample).
from jaxpapers.diffusion.ddpm import CosineSchedule, ddim_sample, ddim_steps, q_sample, x0_loss
