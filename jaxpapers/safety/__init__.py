"""Safety fine-tuning by selected neurons: NeST (arXiv 2602.16835) and its baselines.

* `taps`: FFN activation taps on any NNX model, max pooling over tokens.
* `probe`: the per-layer logistic probe and z-score selection of safety neurons.
* `clustering`: k-means of the selected neurons' profiles, k by silhouette (scikit-learn).
* `deltas`: cluster-shared updates (`in_out`, `in_only`, `out_only`, per neuron), folded in.
* `objective`: refusal SFT with self-distilled benign targets.
* `lora`: `flax.nnx.LoRA` on chosen projections (LoRA and circuit-breaker baselines).
* `circuit_breakers`: representation rerouting (Zou et al., arXiv 2406.04313).
* `pipeline`: probe -> select -> cluster for every FFN layer of a model.
"""

from jaxpapers.safety.circuit_breakers import coefficients, rerouting_loss, retain_loss, rr_loss
from jaxpapers.safety.clustering import Clustering, cluster_neurons, neuron_profiles
from jaxpapers.safety.deltas import (
    VARIANTS,
    DeltaParam,
    LayerClusters,
    NeuronDeltas,
    apply_deltas,
    count_params,
    per_neuron,
    random_plan,
)
from jaxpapers.safety.lora import add_lora
from jaxpapers.safety.objective import greedy_targets, sft_loss
from jaxpapers.safety.pipeline import SafetyNeurons, find_safety_neurons
from jaxpapers.safety.probe import Probe, fit_probe, select_neurons, zscores
from jaxpapers.safety.taps import (
    TAPS,
    FFNLayer,
    TapSite,
    gated_ffn,
    get_module,
    max_pool,
    plain_ffn,
    pooled_activations,
    record,
    set_module,
    tapped,
)
