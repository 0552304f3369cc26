"""Arcee Trinity: SMEBU balancing, Muon, RSDB and the AFMoE block (arXiv 2602.17004)."""
