"""ArXiv-to-Model (arXiv 2602.17288): LaTeX pipeline, domain-aware tokenizer, small scientific LM."""
