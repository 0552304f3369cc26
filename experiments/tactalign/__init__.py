"""TactAlign: human-to-robot policy transfer via tactile alignment (arXiv 2602.13579)."""
