"""Reproduction of MRPO's filtering rollout buffer (GUI-Owl-1.5 / Mobile-Agent-v3.5, arXiv 2602.16855).

GRPO on SeqBandit three ways (plain, filter only, the MRPO buffer), seeds 0..S-1, compared at an
equal number of updates and at an equal rollout budget; the device-alternation check (2 devices,
single-device batches round-robin; no performance claim); in smoke, the CI checks. No stage
trains through the shared loop (why: experiments/mrpo/train.py). Claims and protocol:
experiments/mrpo/README.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report

from . import checks, train
from .config import PRESETS, VARIANTS, MRPOConfig

LABELS = {"plain": "plain GRPO", "filter": "filter only (DAPO-style)", "mrpo": "MRPO-style buffer"}


def run_all(config: MRPOConfig, progress) -> dict:
  """Every variant on every seed; plain GRPO on to the rollout budget."""
  plain_updates = max(config.updates, math.ceil(config.budget_rollouts / (config.group * config.groups_per_update)))
  runs = {v: [] for v in VARIANTS}
  for s in range(config.seeds):
    for v in VARIANTS:
      updates = plain_updates if v == "plain" else config.updates
      bar = progress(f"{LABELS[v]} (seed {config.seed + s})", updates)
      runs[v].append(train.train_variant(config, v, config.seed + s, updates, callback=bar))
  alternation = None
  if config.alternation_updates:
    # 2 devices over half the tasks: as many prompts as the main runs, so their programs are reused
    half = dataclasses.replace(config, tasks=max(1, config.tasks // 2))
    alternation = train.train_variant(half, "mrpo", config.seed, config.alternation_updates, devices=2,
                                      alternate=True)
  return {"runs": runs, "alternation": alternation}


def _mean(values) -> float:
  return float(np.mean(values))


def claims_of(config: MRPOConfig, preset: str, out: dict) -> list[report.Claim]:
  runs, u, budget = out["runs"], config.updates, config.budget_rollouts
  gated = preset != "smoke"
  collapsed = {v: _mean([np.mean([r["collapsed"] for r in run.curve[:u]]) for run in runs[v]]) for v in VARIANTS}
  at_u = {v: _mean([train.success_at(run.curve, update=u)[0] for run in runs[v]]) for v in VARIANTS}
  at_b = {v: _mean([train.success_at(run.curve, rollouts=budget)[0] for run in runs[v]]) for v in VARIANTS}
  upd_b = {v: _mean([train.success_at(run.curve, rollouts=budget)[1] for run in runs[v]]) for v in VARIANTS}
  used = {v: _mean([run.curve[min(u, len(run.curve)) - 1]["rollouts"] for run in runs[v]]) for v in VARIANTS}
  n = config.seeds
  at = f"mean of {n} seed(s), P {config.tasks}, L {config.length}, V {config.vocab}, G {config.group}, B {config.groups_per_update}"
  ratio = at_u["mrpo"] / max(at_u["plain"], 1e-12)
  claims = [
      report.at_most("M1_collapsed_mrpo", f"collapsed-group share in the MRPO buffer's training batches "
                     f"({u} updates; {at})", collapsed["mrpo"], 0.0),
      report.at_most("M1_collapsed_filter", "collapsed-group share in the filter-only batches",
                     collapsed["filter"], 0.0),
  ]
  c_plain = f"collapsed-group share in plain GRPO's training batches ({u} updates; {at})"
  s_ratio = (f"success after {u} updates, MRPO buffer / plain GRPO ({at_u['mrpo']:.3f} / "
             f"{at_u['plain']:.3f}; filter only {at_u['filter']:.3f})")
  claims += ([report.at_least("M1_collapsed_plain", c_plain, collapsed["plain"], 0.8),
              report.at_least("M2_success_equal_updates", s_ratio, ratio, 2.0)] if gated
             else [report.reported("M1_collapsed_plain", c_plain, collapsed["plain"]),
                   report.reported("M2_success_equal_updates", s_ratio, ratio)])
  for v in VARIANTS:
    claims.append(report.reported(f"M3_rollouts_{v}", f"{LABELS[v]}: rollouts consumed by {u} updates (success "
                            f"{at_u[v]:.3f}); at the {budget:,}-rollout budget: success {at_b[v]:.3f} after "
                            f"{upd_b[v]:.0f} updates", used[v]))
  ahead = at_b["plain"] > at_b["mrpo"]
  claims.append(report.reported("M3_equal_rollout_budget", f"plain GRPO minus MRPO-buffer success at an equal "
                          f"budget of {budget:,} rollouts ({at_b['plain']:.3f} vs {at_b['mrpo']:.3f}): the "
                          f"spec's finding (plain ahead at equal rollouts) {'holds' if ahead else 'does not hold'}",
                          at_b["plain"] - at_b["mrpo"]))
  finite = all(math.isfinite(x) for runs_v in runs.values() for run in runs_v for r in run.curve
               for x in r.values())
  claims.append(report.at_most("finite_updates", "non-finite loss, success or metric values in any update",
                               0 if finite else 1, 0))
  traces = sum(run.retraces for runs_v in runs.values() for run in runs_v)
  claims.append(report.at_most("update_never_retraces", f"traces of the jitted update over all "
                               f"{n * len(VARIANTS)} runs (one batch shape: 1)", traces, 1))
  alt = out["alternation"]
  if alt is not None:
    expect = [i % 2 for i in range(len(alt.batch_devices))]
    bad = sum(d != e for d, e in zip(alt.batch_devices, expect)) + (len(alt.batch_devices) != config.alternation_updates)
    claims.append(report.at_most("alternation_round_robin", f"batches not single-device or out of round-robin "
                                 f"order in {config.alternation_updates} updates with 2 devices x {max(1, config.tasks // 2)} tasks (devices "
                                 f"{alt.batch_devices}; no performance claim)", bad, 0))
  return claims


def _plot(path: Path, config: MRPOConfig, runs: dict) -> Path:
  fig, (ax, ax2) = report.subplots(1, 2, figsize=(11, 4))
  for v in VARIANTS:
    for i, run in enumerate(runs[v]):
      kw = {"color": f"C{VARIANTS.index(v)}", "alpha": 0.8, "label": LABELS[v] if i == 0 else None}
      ax.plot([r["update"] for r in run.curve], [r["success"] for r in run.curve], **kw)
      ax2.plot([r["rollouts"] for r in run.curve], [r["success"] for r in run.curve], **kw)
  ax.axvline(config.updates, color="k", ls=":", lw=0.8)
  ax.set(xlabel="update", ylabel="success probability", title="Equal updates", xscale="log")
  ax2.axvline(config.budget_rollouts, color="k", ls=":", lw=0.8)
  ax2.set(xlabel="rollouts consumed", ylabel="success probability", title="Equal rollouts", xscale="log")
  ax.legend(fontsize=8)
  return report.save_figure(fig, path)


def reproduce(config: MRPOConfig, preset: str, out_dir: Path, progress):
  """CI checks (smoke), the three variants on every seed, the alternation check; claims, plots."""
  claims = checks.all_claims() if config.checks else []
  out = run_all(config, progress)
  claims += claims_of(config, preset, out)
  plots = [_plot(out_dir / "success.png", config, out["runs"])]
  saved = {"curves": {v: [run.curve for run in out["runs"][v]] for v in VARIANTS},
           "buffers": {v: [run.buffer for run in out["runs"][v]] for v in VARIANTS},
           "stopped": {v: [run.stopped for run in out["runs"][v]] for v in VARIANTS}}
  if out["alternation"] is not None:
    saved["alternation_devices"] = out["alternation"].batch_devices
  (out_dir / "measurements.json").write_text(json.dumps(saved) + "\n")
  return claims, plots


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.16855",
    title="Mobile-Agent-v3.5 / GUI-Owl-1.5: MRPO's filtering rollout buffer for GRPO",
    presets=PRESETS,
    reproduce=reproduce,
    status="in progress",
)
