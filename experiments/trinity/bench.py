"""`jaxpapers bench trinity`: MoE dispatch (dense vs ragged) and Muon step time (arXiv 2602.17004)."""

from __future__ import annotations

from typing import Any

from jaxpapers.core import bench

from .bench_moe import bench_moe
from .bench_muon import bench_muon

# Keyword arguments for a quick run of the same logic (tests/core/test_bench.py runs it).
SMOKE_KWARGS = {"bench_trinity": {
    "moe_kwargs": {"experts": (2,), "batch": 1, "seq": 16, "repeats": 1, "target_seconds": 0.0},
    "muon_kwargs": {"repeats": 1}}}


def bench_trinity(moe_kwargs: dict[str, Any] | None = None,
                  muon_kwargs: dict[str, Any] | None = None
                  ) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
  """Both benchmarks: (table rows, JSON record); the kwargs shrink either for a quick run."""
  moe_rows, moe = bench_moe(**(moe_kwargs or {}))
  muon_rows, muon = bench_muon(**(muon_kwargs or {}))
  width = max(len(moe_rows[0]), len(muon_rows[0]))
  pad = lambda row: tuple(row) + ("",) * (width - len(row))
  rows = [pad(r) for r in moe_rows] + [pad(("",))] + [pad(r) for r in muon_rows]
  parts = {"moe": moe, "muon": muon}
  record = bench.bench_record(
      "trinity", {name: part["results"] for name, part in parts.items()},
      description=f"{moe['description']}; {muon['description']}",
      config={name: part["config"] for name, part in parts.items()},
      targets={f"{name}_{key}": t for name, part in parts.items()
               for key, t in part["targets"].items()})
  return rows, record
