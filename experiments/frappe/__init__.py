"""FRAPPE: future representation alignment and MiPA on push2d (arXiv 2602.17259)."""
