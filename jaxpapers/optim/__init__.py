"""Optax transforms of the papers (optax naming: scale_by_x, x, XState)."""
