"""Hardware co-design scaling laws via roofline modelling (arXiv 2602.10377): roofline, loss law, Pareto search."""
