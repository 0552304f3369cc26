"""Flax NNX modules shared by the papers, one concept per file."""

from jaxpapers.nn.afmoe import AfmoeConfig
from jaxpapers.nn.afmoe import AfmoeLM
from jaxpapers.nn.attention import GatedAttention
from jaxpapers.nn.attention import RMSNorm
from jaxpapers.nn.attention import rope
from jaxpapers.nn.embedding import embed_lookup
from jaxpapers.nn.moe import MoE
from jaxpapers.nn.moe import RouterState
from jaxpapers.nn.moe import SwiGLU
from jaxpapers.nn.moe import auxiliary_balance_loss
