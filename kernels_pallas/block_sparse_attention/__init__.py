"""Block-sparse attention (SpargeAttention2, arXiv 2602.13515): reference, Pallas GPU and TPU kernels, XLA path."""

from kernels_pallas.block_sparse_attention.ops import block_sparse_attention, kept_block_lists
from kernels_pallas.block_sparse_attention.reference import block_sparse_attention_reference
