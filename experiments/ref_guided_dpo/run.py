"""Reproduction of reference-guided self-improvement (arXiv 2602.16802) on a synthetic task.

Stages: `sft` (distil the references, Sec. 3.1) and `dpo` (one round of sample K -> judge all
ordered pairs -> aggregate -> DPO, Sec. 3.2; the reproduction chains `rounds` of them, each
starting from and referenced to the previous round's policy). Labels come from the toy
reference-guided judge (RefEval), the reference-free judge, or the oracle. Claims and protocol:
experiments/ref_guided_dpo/README.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report

from . import checks, model
from .config import LABELS, PRESETS, RefDPOConfig


def seeded(config: RefDPOConfig, seed: int) -> RefDPOConfig:
  """`config` for one seed: the task, the sampling, the judges and both stages' inits."""
  return dataclasses.replace(config, seed=seed, sft=dataclasses.replace(config.sft, seed=seed),
                             dpo=dataclasses.replace(config.dpo, seed=seed))


def run_seed(config: RefDPOConfig, progress) -> dict:
  """SFT, judge accuracies on the SFT candidates, and `rounds` DPO rounds per label source."""
  sft = experiment_lib.run_stage(EXPERIMENT, config, None, progress, stage="sft",
                                 label=f"SFT (seed {config.seed})")
  task = model.task_of(config)
  out = {"sft_quality": model.true_quality(config, sft.state),
         "reference_quality": float(np.mean(np.asarray(task.reference) == np.asarray(task.ideal)))}
  out["judge_accuracy"] = {k: model.judge_accuracy(dataclasses.replace(config, round=1), sft.state, k)
                           for k in ("reference", "reference_free")}
  out["curves"], out["label_accuracy"], out["valid"], out["histories"] = {}, {}, {}, {}
  for labels in LABELS:
    state, curve, acc, valid = sft.state, [out["sft_quality"]], [], []
    for r in range(1, config.rounds + 1):
      cfg = dataclasses.replace(config, labels=labels, round=r)
      pairs = model.round_arrays(cfg, state)
      v = pairs["valid"] > 0
      valid.append(float(v.mean()))
      acc.append(float(np.mean(pairs["quality_chosen"][v] > pairs["quality_rejected"][v])) if v.any() else 0.0)
      run = experiment_lib.run_stage(EXPERIMENT, cfg, None, progress, stage="dpo", inputs={"sft": state},
                                     label=f"DPO {labels} round {r} (seed {config.seed})")
      state = run.state
      curve.append(model.true_quality(cfg, state))
      if r == 1:
        out["histories"][labels] = run.history
    out["curves"][labels], out["label_accuracy"][labels], out["valid"][labels] = curve, acc, valid
  return out


def _mean(runs: list[dict], get) -> float:
  return float(np.mean([get(r) for r in runs]))


def claims_of(config: RefDPOConfig, preset: str, runs: list[dict]) -> list[report.Claim]:
  n = len(runs)
  acc_ref = _mean(runs, lambda r: r["judge_accuracy"]["reference"])
  acc_free = _mean(runs, lambda r: r["judge_accuracy"]["reference_free"])
  final = {k: _mean(runs, lambda r, k=k: r["curves"][k][-1]) for k in LABELS}
  sft = _mean(runs, lambda r: r["sft_quality"])
  at = f"mean of {n} seed(s), P {config.prompts}, K {config.k}, {config.rounds} round(s)"
  items = [
      ("C1_judge_accuracy_gain", f"reference-guided minus reference-free judge accuracy on the SFT "
       f"candidates' ordered pairs ({acc_ref:.3f} vs {acc_free:.3f}; {at})", acc_ref - acc_free, 0.15,
       "+6.8 points (LLM judges)"),
      ("C2_ref_dpo_over_sft", f"true quality of reference-guided DPO minus SFT ({final['reference']:.3f} "
       f"vs {sft:.3f}; {at})", final["reference"] - sft, 0.08, "+20.2 AlpacaEval / +17.1 Arena-Hard"),
      ("C3_ref_over_ref_free", f"reference-guided minus reference-free DPO labels "
       f"({final['reference_free']:.3f}; {at})", final["reference"] - final["reference_free"], 0.10,
       "+5.3 / +3.6"),
  ]
  gated = preset != "smoke"
  claims = []
  for id, statement, measured, bound, paper in items:
    claims.append(report.at_least(id, statement, measured, bound, paper_value=paper) if gated
                  else report.reported(id, statement, measured))
  gap = final["oracle"] - final["reference"]
  c4 = f"oracle-label DPO minus reference-guided DPO true quality ({final['oracle']:.3f}; {at})"
  claims.append(report.at_most("C4_within_oracle", c4, gap, 0.06) if gated else report.reported("C4_within_oracle", c4, gap))
  for k in LABELS:
    claims.append(report.reported(f"label_accuracy_{k}", f"share of round-1 pairs whose chosen is truly better "
                            f"than its rejected ({k} judge, aggregated over {config.k * (config.k - 1)} "
                            "ordered comparisons)", _mean(runs, lambda r, k=k: r["label_accuracy"][k][0])))
  return claims


def _plot(path: Path, config: RefDPOConfig, runs: list[dict]) -> Path:
  fig, (ax, ax2) = report.subplots(1, 2, figsize=(11, 4))
  rounds = np.arange(config.rounds + 1)
  for k in LABELS:
    curves = np.array([r["curves"][k] for r in runs])
    ax.plot(rounds, curves.mean(0), marker="o", label=f"{k} labels")
    if len(runs) > 1:
      ax.fill_between(rounds, curves.min(0), curves.max(0), alpha=0.2)
  ax.axhline(runs[0]["reference_quality"], color="k", ls="--", lw=0.8, label="reference (seed 0)")
  ax.set(xlabel="DPO round (0: SFT)", ylabel="true quality", title="Self-improvement")
  ax.legend(fontsize=8)
  names = ["reference", "reference_free"]
  ax2.bar(names, [_mean(runs, lambda r, k=k: r["judge_accuracy"][k]) for k in names])
  ax2.set(ylim=(0, 1), ylabel="pairwise accuracy vs true quality", title="Judges on SFT candidates")
  return report.save_figure(fig, path)


def reproduce(config: RefDPOConfig, preset: str, out_dir: Path, progress):
  """Unit checks (smoke), then SFT and the three label sources' DPO rounds for each seed."""
  claims = checks.all_claims() if config.checks else []
  runs = [run_seed(seeded(config, config.seed + s), progress) for s in range(config.seeds)]
  claims += claims_of(config, preset, runs)
  if config.checks:
    claims += checks.pipeline_claims(runs[0]["histories"]["reference"])
  plots = [_plot(out_dir / "self_improvement.png", config, runs)]
  saved = [{k: v for k, v in r.items() if k != "histories"} for r in runs]
  (out_dir / "measurements.json").write_text(json.dumps(saved, indent=2) + "\n")
  return claims, plots


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.16802",
    title="References Improve LLM Alignment in Non-Verifiable Domains (reference-guided DPO)",
    presets=PRESETS,
    reproduce=reproduce,
    stages=(experiment_lib.Stage("sft", model.make_sft_task),
            experiment_lib.Stage("dpo", model.make_dpo_task, needs=("sft",))),
    status="in progress",
)
