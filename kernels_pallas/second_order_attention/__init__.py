"""2Mamba second-order attention (arXiv 2602.17363): reference, Pallas GPU and TPU kernels, public op."""

from kernels_pallas.second_order_attention.ops import exp_decay_attention, second_order_attention
