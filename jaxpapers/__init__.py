"""jaxpapers: methods of the 2026-02-22 daily papers, reimplemented in JAX."""

__version__ = "0.1.0"
