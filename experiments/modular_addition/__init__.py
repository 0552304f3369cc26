"""Modular addition: Fourier features, lottery ticket and grokking (arXiv 2602.16849)."""
