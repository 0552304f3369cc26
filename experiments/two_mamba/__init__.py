"""2Mamba2Furious (arXiv 2602.17363): mixers, second-order attention, recall, memory, decode."""
