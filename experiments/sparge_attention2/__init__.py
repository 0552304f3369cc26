"""SpargeAttention2: hybrid Top-k+Top-p block-sparse attention and velocity distillation (arXiv 2602.13515)."""
