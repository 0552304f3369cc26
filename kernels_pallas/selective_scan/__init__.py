"""Mamba-1 selective scan (StereoAdapter-2's ConvSS2D, arXiv 2602.16915): reference, Pallas GPU and TPU kernels, public op."""

from kernels_pallas.selective_scan.ops import selective_scan
