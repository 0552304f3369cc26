"""Unified Latents: encoder, diffusion prior and diffusion decoder trained jointly (arXiv 2602.17270)."""
