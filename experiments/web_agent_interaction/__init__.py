"""Modeling Distinct Human Interaction in Web Agents: intervention prediction and styles (arXiv 2602.17588)."""
