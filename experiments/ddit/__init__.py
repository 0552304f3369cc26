"""DDiT: dynamic patch scheduling for efficient diffusion transformers (arXiv 2602.16968)."""
