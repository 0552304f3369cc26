"""Hardware co-design scaling laws via roofline modelling (Sun et al., arXiv 2602.10377).

* `arch`: dense and MoE architectures as (arrays of) hyper-parameters; parameter counts.
* `devices`: device presets (Jetson AGX Orin, Orin NX, Orin Nano, H200, TPU v5e).
* `latency`: per-operator roofline of prefill (TTFT) and decode (TPOT) at batch 1; memory.
* `space`: the enumerated design space.
* `loss_law`: the pluggable fitted loss law (scipy least squares).
* `pareto`: the latency-loss frontier, constrained and iso-latency optima.
* `calibrate`: our tiny LM's KV-cache decode step, timed, and efficiency factors fitted to it.
"""

from jaxpapers.roofline.arch import Arch, ParamCounts, dense, moe, param_counts, qwen25_05b
from jaxpapers.roofline.devices import DEVICES, Device, device
from jaxpapers.roofline.latency import (
    PRECISIONS,
    Efficiency,
    OpCost,
    Precision,
    decode_ops,
    end_to_end,
    memory_bytes,
    op_times,
    prefill_ops,
    tpot,
    ttft,
)
from jaxpapers.roofline.loss_law import ASPECT, LAWS, REDUCED, Fit, LossLaw, fit, power_law
from jaxpapers.roofline.pareto import constrained_argmin, iso_latency_optima, pareto_mask
from jaxpapers.roofline.space import SpaceSpec, design_space
