"""StarWM: world models for policy refinement in StarCraft II, on a toy RTS economy (arXiv 2602.14857)."""
