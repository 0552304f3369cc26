"""Flax NNX modules shared by the papers, one concept per file."""
