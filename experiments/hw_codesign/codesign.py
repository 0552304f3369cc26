"""Co-design with our fitted loss law over the design space (arXiv 2602.10377, sections 4-5).

Every candidate of the design space gets its TPOT at the configured context (roofline on the
device) and a predicted loss (our law, extrapolated far beyond the tiny models it was fitted
on). From those: the Pareto frontier, its MoE share, the iso-latency optimum per width (the
best candidate with TPOT under the budget: Qwen2.5-0.5B's TPOT by default) with the log-log
slopes of its depth l* and sparsity rho* against d, and the co-designed pick (the lowest loss
under the budget) against the loss-only pick under the same parameter budget.
"""

from __future__ import annotations

import numpy as np

from jaxpapers.roofline import arch as arch_lib
from jaxpapers.roofline import latency, loss_law, pareto, space
from jaxpapers.roofline.devices import device

from .checks import space_spec
from .config import CodesignConfig


def _describe(a: arch_lib.Arch, i: int) -> dict:
  counts = arch_lib.param_counts(a[i])
  return {"d": int(np.asarray(a.d_model)[i]), "l": int(np.asarray(a.num_layers)[i]),
          "g": float(np.asarray(a.group)[i]), "E": int(np.asarray(a.num_experts)[i]),
          "K": int(np.asarray(a.top_k)[i]),
          "r": float(space.ffn_ratio(a)[i]), "n_total": float(counts.total),
          "n_active": float(counts.active)}


def analyse(c: CodesignConfig, fit: loss_law.Fit) -> dict:
  """The frontier, the iso-latency optima and the picks (arrays for the plots under "_")."""
  dev, p = device(c.device), latency.PRECISIONS[c.precision]
  cand = space.design_space(space_spec(c))
  tpot = latency.tpot(cand, c.context, dev, p)
  loss = fit.predict(loss_law.features(cand))
  counts = arch_lib.param_counts(cand)
  moe = np.asarray(cand.is_moe)
  front = pareto.pareto_mask(tpot, loss)
  budget = (c.latency_budget_ms / 1e3 if c.latency_budget_ms
            else float(latency.tpot(arch_lib.qwen25_05b(), c.context, dev, p)))
  memory_ok = latency.memory_bytes(cand, c.prompt + c.new_tokens, p) <= dev.memory
  feasible = (tpot <= budget) & memory_ok
  opt = pareto.iso_latency_optima(cand.d_model, loss, feasible)
  depth = np.asarray(cand.num_layers)[opt.index]
  rho = np.asarray(cand.sparsity)[opt.index]
  lo, hi = min(space.SpaceSpec.depths), max(space.SpaceSpec.depths)
  interior = (depth > lo) & (depth < hi)
  pick = pareto.constrained_argmin(loss, feasible)
  same_params = counts.total <= counts.total[pick]
  loss_only = pareto.constrained_argmin(loss, same_params & memory_ok)
  return {
      "candidates": int(tpot.size),
      "budget_ms": budget * 1e3,
      "frontier_size": int(front.sum()),
      "frontier_moe_share": float(np.mean(moe[front])),
      "frontier": [_describe(cand, i) | {"tpot_ms": float(tpot[i]) * 1e3, "loss": float(loss[i])}
                   for i in np.flatnonzero(front)[np.argsort(tpot[front])]],
      "optima": [{"d": int(d), "l": int(l), "rho": float(r), "interior": bool(k)}
                 for d, l, r, k in zip(opt.values, depth, rho, interior)],
      "l_slope_interior": pareto.loglog_slope(opt.values[interior], depth[interior]),
      "l_slope_all": pareto.loglog_slope(opt.values, depth),
      "rho_slope": pareto.loglog_slope(opt.values, rho),
      "co_designed": _describe(cand, pick) | {"tpot_ms": float(tpot[pick]) * 1e3,
                                              "loss": float(loss[pick])},
      "loss_only": _describe(cand, loss_only) | {"tpot_ms": float(tpot[loss_only]) * 1e3,
                                                 "loss": float(loss[loss_only])},
      "_tpot": tpot, "_loss": loss, "_moe": moe, "_front": front,
      "_opt_d": opt.values, "_opt_l": depth, "_opt_rho": rho, "_interior": interior,
  }
