"""References Improve LLM Alignment in Non-Verifiable Domains: reference-guided DPO (arXiv 2602.16802)."""
