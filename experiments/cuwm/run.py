"""Reproduction of the Computer-Using World Model's action search and stage-1 GRPO (arXiv 2602.17365).

On ToyUI, for each seed: the two stages of `TwoStageWM` (delta head, then renderer) and the
direct pixel model train through the shared loop; a frozen noisy proposer's k = 5 candidates are
searched with the true simulator, the trained two-stage model, an untrained one (and, reported,
an untrained one with a standard-init renderer and the direct pixel model); the two-stage and
direct models' fidelity is compared at the caveat's training-set sizes; and GRPO fine-tunes a
50-step SFT delta head with the F1 judge and the length-band penalty. Claims and protocol:
experiments/cuwm/README.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report
from jaxpapers.evals.coverage import gap_recovered
from jaxpapers.worldmodel import GRPOSettings, grpo_finetune, sampled_reward

from . import checks, evaluate, model
from .config import PRESETS, CUWMConfig

SEARCHES = ("true", "trained", "untrained", "untrained_std_init", "direct")
LABELS = {"true": "true simulator", "trained": "trained TwoStageWM", "untrained": "untrained TwoStageWM",
          "untrained_std_init": "untrained TwoStageWM, standard-init renderer",
          "direct": "trained direct pixel model"}


def seeded(config: CUWMConfig, seed: int) -> CUWMConfig:
  """`config` for one seed: data, episodes and every stage's initialization."""
  stages = {f: dataclasses.replace(getattr(config, f), seed=seed) for f in ("delta", "renderer", "direct", "grpo_sft")}
  return dataclasses.replace(config, seed=seed, **stages)


def settings_of(config: CUWMConfig) -> GRPOSettings:
  return GRPOSettings(updates=config.grpo_updates, batch=config.grpo_batch, group=config.grpo_group,
                      lr=config.grpo_lr, kl_coef=config.kl_coef, clip_eps=config.clip_eps,
                      band=(config.band_low, config.band_high), penalty=config.length_penalty)


def _final_loss(run) -> float | None:
  loss = run.final_metrics.get("train_loss")
  return None if loss is None else float(loss)


def train_models(config: CUWMConfig, progress, n: int) -> dict:
  """Both stages of the two-stage model and the direct model, trained on `n` transitions."""
  cfg = dataclasses.replace(config, train_transitions=n)
  tag = f"{n} transitions, seed {config.seed}"
  delta = experiment_lib.run_stage(EXPERIMENT, cfg, None, progress, stage="delta", label=f"delta head ({tag})")
  renderer = experiment_lib.run_stage(EXPERIMENT, cfg, None, progress, stage="renderer",
                                      inputs={"delta": delta.state}, label=f"renderer ({tag})")
  out = {"two_stage": renderer.model, "losses": {"delta": _final_loss(delta), "renderer": _final_loss(renderer)}}
  if config.caveat_transitions:
    direct = experiment_lib.run_stage(EXPERIMENT, cfg, None, progress, stage="direct", label=f"direct ({tag})")
    out["direct"], out["losses"]["direct"] = direct.model, _final_loss(direct)
  return out


def run_seed(config: CUWMConfig, progress) -> dict:
  ui = model.ui_of(config)
  test = model.all_transitions(ui)
  sizes = sorted(set(config.caveat_transitions) | {config.train_transitions})
  trained = {n: train_models(config, progress, n) for n in sizes}
  main = trained[config.train_transitions]
  models = {"true": None, "trained": main["two_stage"], "untrained": model.untrained_wm(config, config.seed),
            "untrained_std_init": model.untrained_wm(config, config.seed, zero_init_renderer=False)}
  if "direct" in main:
    models["direct"] = main["direct"]
  key = jax.random.fold_in(jax.random.key(config.seed), 2)
  ep = evaluate.episodes(ui, config.episodes, key, config.proposer_noise, config.proposer_temperature)
  out = {"search": {name: evaluate.search(ui, config.k, m, ep) for name, m in models.items()}}
  out["fidelity"] = {str(n): {"two_stage": evaluate.fidelity(t["two_stage"], test), "losses": t["losses"],
                              **({"direct": evaluate.fidelity(t["direct"], test)} if "direct" in t else {})}
                     for n, t in trained.items()}
  # Stage-1 GRPO from a short SFT head, on the same training transitions.
  sft = experiment_lib.run_stage(EXPERIMENT, config, None, progress, stage="grpo_sft",
                                 label=f"GRPO's SFT start (seed {config.seed})")
  data = model.train_data(config)
  settings = settings_of(config)
  r_key = jax.random.fold_in(jax.random.key(config.seed), 3)
  measure = lambda wm: [float(x) for x in sampled_reward(  # noqa: E731
      wm, test["obs"], test["action"], test["delta"], r_key, config.reward_samples,
      band=settings.band, penalty=settings.penalty)]
  before = measure(sft.model)
  bar = progress(f"GRPO (seed {config.seed})", 1)
  tuned, curve = grpo_finetune(sft.model, data["obs"], data["action"], data["delta"],
                               jax.random.fold_in(jax.random.key(config.seed), 4), settings)
  if bar is not None:
    bar(1, {})
  after = measure(tuned)
  curve = {k: np.asarray(v).tolist() for k, v in jax.device_get(curve).items()}
  out["tuned"] = tuned  # the smoke's CI check reads it (not saved)
  out["grpo"] = {"reward_before": before[0], "in_band_before": before[1], "reward_after": after[0],
                 "in_band_after": after[1], "curve": curve,
                 "delta_f1_before": evaluate.fidelity(sft.model, test)["delta_f1"],
                 "delta_f1_after": evaluate.fidelity(tuned, test)["delta_f1"]}
  return out


def _mean(runs: list[dict], get) -> float:
  return float(np.mean([get(r) for r in runs]))


def claims_of(config: CUWMConfig, preset: str, runs: list[dict]) -> list[report.Claim]:
  n = len(runs)
  searches = [s for s in SEARCHES if s in runs[0]["search"]]
  acc = {s: _mean(runs, lambda r, s=s: r["search"][s]["accuracy"]) for s in searches}
  cond = {s: _mean(runs, lambda r, s=s: r["search"][s]["covered_accuracy"]) for s in searches}
  top1 = _mean(runs, lambda r: r["search"]["true"]["top1"])
  cov = _mean(runs, lambda r: r["search"]["true"]["coverage"])
  gap = _mean(runs, lambda r: gap_recovered(r["search"]["true"]["top1"], r["search"]["trained"]["accuracy"],
                                            r["search"]["true"]["coverage"]))
  at = (f"mean of {n} seed(s), {config.episodes} episodes each, k {config.k}, "
        f"{config.train_transitions} training transitions")
  gated = preset != "smoke"
  g = _mean(runs, lambda r: r["grpo"]["reward_after"] - r["grpo"]["reward_before"])
  band = _mean(runs, lambda r: r["grpo"]["in_band_after"])
  rb, ra = _mean(runs, lambda r: r["grpo"]["reward_before"]), _mean(runs, lambda r: r["grpo"]["reward_after"])
  items = [
      ("C1_gap_recovered", f"share of the top-1 -> coverage gap recovered by search with the trained "
       f"TwoStageWM (top-1 {top1:.3f}, coverage {cov:.3f}, search {acc['trained']:.3f}; {at}) (provisional)",
       gap, "at_least", 0.5, "search raises single-step action match for all 4 agents"),
      ("C2_untrained_change", f"|untrained-TwoStageWM search accuracy minus top-1| ({acc['untrained']:.3f} vs "
       f"{top1:.3f}; {at}) (provisional)", abs(acc["untrained"] - top1), "at_most", 0.03, None),
      ("C3_true_over_trained", f"true-simulator minus trained-TwoStageWM search accuracy ({acc['true']:.3f} "
       f"vs {acc['trained']:.3f}; {at})", acc["true"] - acc["trained"], "at_least", 0.0, None),
      ("C4_grpo_reward_gain", f"mean judge reward (change-set F1 minus {config.length_penalty} outside the "
       f"{config.band_low}-{config.band_high}x length band; {config.reward_samples} samples on each of the "
       f"{len(model.all_transitions(model.ui_of(config))['action'])} (state, click) pairs) after "
       f"{config.grpo_updates} GRPO updates minus after the {config.grpo_sft.steps}-step SFT start "
       f"({ra:.3f} vs {rb:.3f}; mean of {n} seed(s)) (provisional)", g, "at_least", 0.05, "ACS +0.05 over SFT"),
      ("C5_grpo_in_band", f"share of sampled descriptions inside the length band after GRPO (mean of {n} "
       f"seed(s))", band, "at_least", 0.9, None),
  ]
  claims = []
  for id, statement, measured, kind, bound, paper in items:
    if gated:
      make = report.at_least if kind == "at_least" else report.at_most
      claims.append(make(id, statement, measured, bound, paper_value=paper))
    else:
      claims.append(report.reported(id, statement, measured))
  claims.append(report.reported("top1_accuracy", f"proposer top-1 accuracy, no world model ({at})", top1))
  claims.append(report.reported("coverage", f"share of episodes whose {config.k} candidates hold the logged action "
                          f"(paper: about 65%; {at})", cov))
  for s in searches:
    claims.append(report.reported(f"search_{s}", f"search accuracy with the {LABELS[s]} (coverage-conditioned "
                            f"{cond[s]:.3f}; {at})", acc[s]))
  bad = sum(abs(r["search"][s]["covered_flag"] - r["search"][s]["coverage"]) > 1e-9 for r in runs for s in searches)
  claims.append(report.at_most("coverage_bookkeeping", "searches where action_search's coverage flag "
                               "disagrees with coverage_accuracy's", bad, 0))
  claims.append(report.reported("delta_f1_trained", f"greedy change-set F1 of the trained delta head on all (state, "
                          f"click) pairs (mean of {n} seed(s))", _mean(
                              runs, lambda r: r["fidelity"][str(config.train_transitions)]["two_stage"]["delta_f1"])))
  for size in sorted(int(k) for k in config.caveat_transitions):
    f2 = _mean(runs, lambda r, s=size: r["fidelity"][str(s)]["two_stage"]["pixel_f1"])
    fd = _mean(runs, lambda r, s=size: r["fidelity"][str(s)]["direct"]["pixel_f1"])
    claims.append(report.reported(f"caveat_pixel_f1_{size}", f"changed-pixel F1 on all (state, click) pairs, two-stage "
                            f"minus direct pixel model, both trained on {size} transitions ({f2:.3f} vs {fd:.3f}; "
                            f"spec's pre-check: 0.578 vs 0.588 at 100, 1.0 vs 1.0 at 400; mean of {n} seed(s)): "
                            "the factorization is not claimed to help", f2 - fd))
  return claims


def _plot(path: Path, config: CUWMConfig, runs: list[dict]) -> Path:
  fig, (ax, ax2) = report.subplots(1, 2, figsize=(11, 4))
  searches = [s for s in SEARCHES if s in runs[0]["search"]]
  names = ["top-1", "coverage", *[LABELS[s].replace("TwoStageWM", "WM").replace(", standard-init renderer", "\n(std init)")
                                  for s in searches]]
  vals = [_mean(runs, lambda r: r["search"]["true"]["top1"]), _mean(runs, lambda r: r["search"]["true"]["coverage"]),
          *[_mean(runs, lambda r, s=s: r["search"][s]["accuracy"]) for s in searches]]
  ax.bar(range(len(vals)), vals, color=["C7", "C7", *[f"C{i}" for i in range(len(searches))]])
  ax.set_xticks(range(len(vals)), names, rotation=30, ha="right", fontsize=7)
  ax.set(ylim=(0, 1), ylabel="single-step action match", title=f"Action search (k = {config.k})")
  for i, r in enumerate(runs):
    c = r["grpo"]["curve"]
    ax2.plot(np.arange(1, len(c["reward"]) + 1), c["reward"], color=f"C{i}", label=f"reward, seed {config.seed + i}")
    ax2.plot(np.arange(1, len(c["in_band"]) + 1), c["in_band"], color=f"C{i}", ls=":", label="in band" if i == 0 else None)
  ax2.set(xlabel="GRPO update", ylabel="training-batch mean", title="Delta-head GRPO")
  ax2.legend(fontsize=7)
  return report.save_figure(fig, path)


def reproduce(config: CUWMConfig, preset: str, out_dir: Path, progress):
  """CI checks (smoke), then every seed's stages, searches, fidelity and GRPO; claims, plot."""
  claims = checks.all_claims() if config.checks else []
  runs = [run_seed(seeded(config, config.seed + s), progress) for s in range(config.seeds)]
  if config.checks:
    claims.append(checks.grpo_claim(config, runs[0]["grpo"]["curve"], runs[0]["tuned"]))
  runs = [{k: v for k, v in r.items() if k != "tuned"} for r in runs]
  claims += claims_of(config, preset, runs)
  plots = [_plot(out_dir / "search_and_grpo.png", config, runs)]
  (out_dir / "measurements.json").write_text(json.dumps(runs, indent=2) + "\n")
  return claims, plots


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.17365",
    title="Computer-Using World Model (CUWM): propose-imagine-select with a two-stage world model",
    presets=PRESETS,
    reproduce=reproduce,
    stages=(experiment_lib.Stage("direct", model.make_direct_task),
            experiment_lib.Stage("grpo_sft", model.make_delta_task),
            experiment_lib.Stage("delta", model.make_delta_task),
            experiment_lib.Stage("renderer", model.make_renderer_task, needs=("delta",))),
    status="in progress",
)
