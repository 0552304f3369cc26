"""NeST (arXiv 2602.16835): neuron selective tuning for LLM safety, CPU reproduction."""
