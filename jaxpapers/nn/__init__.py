"""Flax NNX modules shared by the papers, one concept per file."""

from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM
from jaxpapers.nn.attention import CausalSelfAttention, GatedAttention
from jaxpapers.nn.dit import DiT, DiTConfig
from jaxpapers.nn.embedding import embed_lookup
from jaxpapers.nn.mixers import Mixer, MixerCache, MixerConfig
from jaxpapers.nn.moe import MoE, RouterState, SwiGLU, auxiliary_balance_loss
from jaxpapers.nn.multipatch_dit import MultiPatchConfig, MultiPatchDiT
from jaxpapers.nn.norms import RMSNorm
from jaxpapers.nn.rope import rope
from jaxpapers.nn.second_order import (
    DecodeState,
    chunked_attention,
    decode_step,
    feature_map,
    init_decode_state,
    recurrent_attention,
)
from jaxpapers.nn.sparse_mask import predict_block_mask, sparge_attention
from jaxpapers.nn.tiny_lm import TinyLM, TinyLMBlock
from jaxpapers.nn.ul_models import BaseModel, ULConfig, UnifiedLatents

# isort: split
# FRAPPE (arXiv 2602.17259): toy RDT policy with a future prefix; MiPA experts and router.
from jaxpapers.nn.rdt_policy import MiPAConfig, MiPAPolicy, RDTConfig, RDTPolicy

# isort: split
# TactAlign (arXiv 2602.13579): tactile encoder with single-query cross-attention pooling.
from jaxpapers.nn.tactile import AttentionPool, TactileAutoencoder, TactileConfig, TactileEncoder
