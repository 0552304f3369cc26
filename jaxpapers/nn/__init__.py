"""Flax NNX modules shared by the papers, one concept per file."""

from jaxpapers.nn.afmoe import AfmoeConfig
from jaxpapers.nn.afmoe import AfmoeLM
from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.attention import GatedAttention
from jaxpapers.nn.norms import RMSNorm
from jaxpapers.nn.rope import rope
from jaxpapers.nn.embedding import embed_lookup
from jaxpapers.nn.moe import MoE
from jaxpapers.nn.moe import RouterState
from jaxpapers.nn.moe import SwiGLU
from jaxpapers.nn.moe import auxiliary_balance_loss
from jaxpapers.nn.mixers import Mixer
from jaxpapers.nn.mixers import MixerCache
from jaxpapers.nn.mixers import MixerConfig
from jaxpapers.nn.second_order import DecodeState
from jaxpapers.nn.second_order import chunked_attention
from jaxpapers.nn.second_order import decode_step
from jaxpapers.nn.second_order import feature_map
from jaxpapers.nn.second_order import init_decode_state
from jaxpapers.nn.second_order import recurrent_attention
from jaxpapers.nn.dit import DiT
from jaxpapers.nn.dit import DiTConfig
from jaxpapers.nn.sparse_mask import predict_block_mask
from jaxpapers.nn.sparse_mask import sparge_attention
from jaxpapers.nn.tiny_lm import TinyLM
from jaxpapers.nn.tiny_lm import TinyLMBlock
