"""`jaxpapers bench trinity`: MoE dispatch (dense vs ragged) and Muon step time (arXiv 2602.17004)."""

from __future__ import annotations

from .bench_moe import bench_moe
from .bench_muon import bench_muon


def bench_trinity():
  """Both benchmarks: (table rows, JSON record)."""
  moe_rows, moe = bench_moe()
  muon_rows, muon = bench_muon()
  width = max(len(moe_rows[0]), len(muon_rows[0]))
  pad = lambda row: tuple(row) + ("",) * (width - len(row))
  rows = [pad(r) for r in moe_rows] + [pad(("",))] + [pad(r) for r in muon_rows]
  return rows, {"benchmark": "trinity", "moe": moe, "muon": muon}
