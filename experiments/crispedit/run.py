"""Reproduction of CrispEdit (arXiv 2602.15823): low-curvature projections for non-destructive edits.

Studies on the same base models, with fine-tuning, CrispEdit in the authors' configuration (the
claims gate on it) and in ours side by side, and the A-only null space:
  * relabelled points written into a Gaussian-mixture MLP (3 seeds; smoke: a tiny one-seed
    version);
  * a 2-layer transformer LM trained on synthetic facts mixed with standard-library text, with 20
    facts edited in one MLP down projection on 3 edit sets (smoke: a tiny LM, ours only, checking
    that the applied change stays in the projector's subspace);
  * sequential editing of 100 facts of that LM in batches of 32 (the authors' setting: factors
    computed once, a batch already below the stop loss skipped), against sequential
    fine-tuning; metrics after each batch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report

from . import editors as editors_lib
from . import lm, mlp
from .config import PRESETS, CrispEditConfig

# Floors of the LM cost ratio's denominators: a CrispEdit cost below them counts as the floor,
# so a tiny CrispEdit cost cannot make the ratio large by itself.
LOCALITY_FLOOR_POINTS = 0.5
TEXT_FLOOR_PCT = 0.1


def train_field(config: CrispEditConfig) -> str:
  """The TrainConfig of the model `task` chooses: `mlp.train` or `lm.train`."""
  return f"{config.task}.train"


def make_task(config: CrispEditConfig, mesh, inputs=None):  # pylint: disable=unused-argument
  """`jaxpapers train crispedit`: the base MLP (task=mlp) or the fact LM (task=lm)."""
  if config.task == "mlp":
    return mlp.make_task(config, config.mlp.train.seed, mesh.size)
  return lm.make_task(config, config.lm.train.seed, mesh.size)


def _train(config: CrispEditConfig, task: str, workdir: Path, progress, label: str,
           seed: int | None = None):
  """A fresh run of the base model of `task` (with `seed` replacing its train.seed)."""
  run = dataclasses.replace(config, task=task)
  if seed is not None:
    run = experiment_lib.replace_field(run, f"{task}.train.seed", seed)
  result = experiment_lib.run_stage(EXPERIMENT, run, workdir, progress, label=label)
  return result.model, result.final_metrics


def mlp_claims(results: dict[int, dict], preset: str) -> list[report.Claim]:
  """The MLP protocol's thresholds (small/paper) or its CI version's (smoke).

  "crispedit" is the authors' configuration (gradient projected before Adam, empirical-Fisher
  factors): every CrispEdit threshold gates on it. Ours is claimed where the data before this
  change showed it better (spec 4.1 and the earlier README: the gradient-only projection leaks
  out of the subspace through Adam's scaling, about twice the capability drop): its own mean
  drop at the same bound, and a lower drop than the authors' on every seed.
  """
  seeds = sorted(results)
  get = lambda editor, key: np.asarray([results[s][editor][key] for s in seeds])
  crisp_drop, ft_drop, a_drop = get("crispedit", "drop_points"), get("ft", "drop_points"), get("a_only", "drop_points")
  ratio = crisp_drop / np.maximum(ft_drop, 1e-9)
  tag = f"{len(seeds)} seed(s)"
  if preset == "smoke":
    return [
        report.at_least("mlp_crispedit_edit_success", f"CI protocol: CrispEdit (authors') edit success, min over {tag}",
                        float(get("crispedit", "edit_success").min()), 1.0),
        report.at_most("mlp_drop_ratio", f"CI protocol: CrispEdit (authors') / FT test-accuracy drop, max over {tag}",
                       float(ratio.max()), 0.3),
    ]
  ours_gain = crisp_drop - get("crispedit_ours", "drop_points")
  return [
      report.at_least("mlp_crispedit_edit_success", f"CrispEdit (authors') edit success, min over {tag}",
                      float(get("crispedit", "edit_success").min()), 0.95, paper_value=1.0),
      report.at_least("mlp_crispedit_generalization",
                      f"CrispEdit (authors') generalization (noisy copies), min over {tag}",
                      float(get("crispedit", "generalization").min()), 0.9, paper_value=">= 0.995"),
      report.at_most("mlp_crispedit_mean_drop", f"CrispEdit (authors') test-accuracy drop (points), mean over {tag}",
                     float(crisp_drop.mean()), 1.5, paper_value="0.5-1.3"),
      report.at_least("mlp_ft_mean_drop", f"fine-tuning test-accuracy drop (points), mean over {tag}",
                      float(ft_drop.mean()), 5.0, paper_value="10.1-12.4"),
      report.at_most("mlp_drop_ratio", f"CrispEdit (authors') drop / FT drop, max over {tag}", float(ratio.max()), 0.25),
      report.greater_than("mlp_a_only_mean_drop_over_crispedit",
                          "A-only null-space drop - CrispEdit (authors') drop (points), mean: the G factor matters",
                          float(a_drop.mean() - crisp_drop.mean()), 0.0, paper_value="A-only 4.8-9.9"),
      report.at_most("mlp_crispedit_ours_mean_drop",
                     f"CrispEdit (ours) test-accuracy drop (points), mean over {tag}",
                     float(get("crispedit_ours", "drop_points").mean()), 1.5, paper_value="0.5-1.3"),
      report.greater_than("mlp_ours_drop_below_authors",
                          "CrispEdit drop, authors' - ours (points; ours: update also projected, sampled "
                          f"labels), min over {tag}", float(ours_gain.min()), 0.0),
  ]


def lm_claims(studies: dict[int, dict], preset: str, sequential: dict | None = None) -> list[report.Claim]:
  """LM claims over the edit sets (`lm_study_seeds`): the worst set, or the mean for locality.

  Locality is averaged over the edit sets, as the MLP protocol averages its capability drop over
  seeds; the per-set drops are written in the claim's statement. CrispEdit's claims gate on the
  authors' configuration ("crispedit"); the subspace claim is ours' ("crispedit_ours": only a
  projected update stays in the subspace), and ours keeps the locality and text bounds it met
  before this change (the earlier README's small preset measured ours). `sequential` (the
  sequential study, authors' configuration) adds its claims after the last batch.
  """
  seeds = sorted(studies)
  get = lambda editor, key: np.asarray([studies[s][editor][key] for s in seeds])
  tag = f"{len(seeds)} edit set(s)"
  claims = [report.less_than("lm_crispedit_ours_subspace_leak",
                             f"LM: |ΔW - P(ΔW)| / |ΔW| of CrispEdit's applied change, ours (gradient and "
                             f"update projected), max over {tag}",
                             float(get("crispedit_ours", "subspace_leak").max()), 1e-3)]
  if preset == "smoke":
    return claims
  crisp_drop, ft_drop = get("crispedit", "locality_drop_points"), get("ft", "locality_drop_points")
  crisp_text, ft_text = get("crispedit", "text_loss_increase_pct"), get("ft", "text_loss_increase_pct")
  per_set = ", ".join(f"{d:.2f}" for d in crisp_drop)
  base = np.asarray([studies[s]["base"]["locality"] for s in seeds])
  claims += [
      report.at_least("lm_base_fact_accuracy", f"LM: base accuracy on the locality facts (all templates), min over {tag}",
                      float(base.min()), 0.9),
      report.at_least("lm_crispedit_edit_success", f"LM: CrispEdit (authors') edit success (edit templates), min over {tag}",
                      float(get("crispedit", "edit_success").min()), 0.9),
      report.at_most("lm_crispedit_locality_drop",
                     f"LM: CrispEdit (authors') locality drop (points, unedited facts), mean over {tag} "
                     f"(per set: {per_set})", float(crisp_drop.mean()), 2.0),
      report.at_most("lm_crispedit_text_loss_increase",
                     f"LM: CrispEdit (authors') held-out text-loss increase (%), max over {tag}",
                     float(crisp_text.max()), 1.0, paper_value="< 1% capability drop"),
      report.at_least("lm_ft_edit_success_matches", f"LM: fine-tuning edit success - CrispEdit (authors'), min over {tag}",
                      float((get("ft", "edit_success") - get("crispedit", "edit_success")).min()), 0.0),
      report.at_least("lm_ft_cost_ratio",
                      f"LM: FT cost / CrispEdit (authors') cost, max of locality drop (floor {LOCALITY_FLOOR_POINTS} "
                      f"pt) and text-loss increase (floor {TEXT_FLOOR_PCT}%), min over {tag}",
                      float(_cost_ratio(crisp_drop, crisp_text, ft_drop, ft_text).min()), 3.0),
  ]
  ours_drop, ours_text = get("crispedit_ours", "locality_drop_points"), get("crispedit_ours", "text_loss_increase_pct")
  claims += [
      report.at_most("lm_crispedit_ours_locality_drop",
                     f"LM: CrispEdit (ours) locality drop (points), mean over {tag} "
                     f"(per set: {', '.join(f'{d:.2f}' for d in ours_drop)})", float(ours_drop.mean()), 2.0),
      report.at_most("lm_crispedit_ours_text_loss_increase",
                     f"LM: CrispEdit (ours) held-out text-loss increase (%), max over {tag}",
                     float(ours_text.max()), 1.0, paper_value="< 1% capability drop"),
  ]
  if sequential:
    crisp, ft = sequential["crispedit"][-1], sequential["ft"][-1]
    n, sizes = crisp["facts_edited"], "/".join(str(b) for b in sequential["batches"])
    cost = _cost_ratio(crisp["locality_drop_points"], crisp["text_loss_increase_pct"],
                       ft["locality_drop_points"], ft["text_loss_increase_pct"])
    claims += [
        report.at_least("lm_seq_crispedit_edit_success",
                        f"LM sequential ({n} facts in batches of {sizes}): CrispEdit (authors') edit success on "
                        "every edit after the last batch", crisp["edit_success"], 0.9),
        report.at_most("lm_seq_crispedit_locality_drop",
                       f"LM sequential: CrispEdit (authors') locality drop (points, the "
                       f"{sequential['base']['locality_facts']} other facts) after the last batch",
                       crisp["locality_drop_points"], 2.0),
        report.at_most("lm_seq_crispedit_text_loss_increase",
                       "LM sequential: CrispEdit (authors') held-out text-loss increase (%) after the last batch",
                       crisp["text_loss_increase_pct"], 1.0, paper_value="< 1% capability drop"),
        report.at_least("lm_seq_ft_cost_ratio",
                        "LM sequential: sequential FT cost / CrispEdit (authors') cost after the last batch "
                        "(same floors)", float(cost), 3.0),
    ]
  return claims


def _cost_ratio(crisp_drop, crisp_text, ft_drop, ft_text):
  """max(FT / CrispEdit locality drop, FT / CrispEdit text-loss increase), with the floors."""
  return np.maximum(np.asarray(ft_drop) / np.maximum(crisp_drop, LOCALITY_FLOOR_POINTS),
                    np.asarray(ft_text) / np.maximum(crisp_text, TEXT_FLOOR_PCT))


def _plot(path: Path, mlp_results: dict, lm_studies: dict[int, dict], sequential: dict | None) -> Path:
  fig, axes = report.subplots(1, 3, figsize=(16, 4))
  editors = [e for e in ("ft", "a_only", "crispedit", "crispedit_ours") if e in next(iter(mlp_results.values()))]
  labels = [editors_lib.LABELS[e] for e in editors]
  seeds = sorted(mlp_results)
  width = 0.8 / len(seeds)
  for i, seed in enumerate(seeds):
    axes[0].bar(np.arange(len(editors)) + i * width, [mlp_results[seed][e]["drop_points"] for e in editors],
                width, label=f"seed {seed}")
  axes[0].set(xticks=np.arange(len(editors)) + 0.4 - width / 2, xticklabels=labels,
              ylabel="test-accuracy drop (points)", title="MLP: capability cost of the edits")
  axes[0].legend()
  if lm_studies:
    present = [e for e in editors if e in next(iter(lm_studies.values()))]
    x = np.arange(len(present))
    mean = lambda e, key: np.mean([study[e][key] for study in lm_studies.values()])
    axes[1].bar(x - 0.2, [mean(e, "locality_drop_points") for e in present], 0.4,
                label="locality drop (points)")
    axes[1].bar(x + 0.2, [mean(e, "text_loss_increase_pct") for e in present], 0.4,
                label="text-loss increase (%)")
    axes[1].set(xticks=x, xticklabels=[editors_lib.LABELS[e] for e in present],
                title=f"Tiny LM: cost of editing facts (mean of {len(lm_studies)} edit sets)")
    axes[1].legend()
  if sequential:
    for name in lm.SEQUENTIAL_EDITORS:
      if name in sequential:
        done = [r["facts_edited"] for r in sequential[name]]
        axes[2].plot(done, [r["locality_drop_points"] for r in sequential[name]], "o-",
                     label=f"{editors_lib.LABELS[name]}: locality drop (pt)")
        axes[2].plot(done, [r["text_loss_increase_pct"] for r in sequential[name]], "s--",
                     label=f"{editors_lib.LABELS[name]}: text loss (%)")
    axes[2].set(xlabel="facts edited", title="Tiny LM: sequential editing, batches of 32 facts")
    axes[2].set_yscale("symlog", linthresh=1.0)
    axes[2].legend(fontsize=7)
  return report.save_figure(fig, path)


def reproduce(config: CrispEditConfig, preset: str, out_dir: Path, progress):
  """MLP protocol over the seeds, then the LM study and sequential study; claims and a plot."""
  mlp_results = {}
  for seed in config.mlp.seeds:
    model, _ = _train(config, "mlp", out_dir / f"mlp_seed{seed}", progress, f"MLP seed {seed}", seed)
    editors = mlp.SMOKE_EDITORS if preset == "smoke" else tuple(editors_lib.EDITORS)
    mlp_results[seed] = mlp.edit_study(model, config, seed, editors)
  claims = mlp_claims(mlp_results, preset)
  lm_studies, sequential = {}, None
  if config.run_lm:
    model, final = _train(config, "lm", out_dir / "lm", progress, "fact LM")
    editors = lm.SMOKE_EDITORS if preset == "smoke" else lm.EDITORS
    for i, seed in enumerate(config.lm_study_seeds):
      bases = lm.study_bases(model, config, seed, editors)
      lm_studies[seed] = lm.edit_study(model, config, seed, editors, bases)
      lm_studies[seed]["base"]["train_final"] = final
      if i == 0 and config.lm.sequential_edits:  # factors of the first edit set, computed once
        sequential = lm.sequential_study(model, config, seed, bases)
    claims += lm_claims(lm_studies, preset, sequential)
  (out_dir / "study.json").write_text(json.dumps(
      {"mlp": {str(k): v for k, v in mlp_results.items()},
       "lm": {str(k): v for k, v in lm_studies.items()},
       "lm_sequential": sequential}, indent=2) + "\n")
  return claims, [_plot(out_dir / "crispedit.png", mlp_results, lm_studies, sequential)]


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.15823",
    title="CrispEdit: Low-Curvature Projections for Scalable Non-Destructive LLM Editing",
    presets=PRESETS,
    reproduce=reproduce,
    stages=(experiment_lib.Stage("train", make_task, train_field=train_field),),
    status="reproduced",
)

BENCHMARKS = {"crispedit": "bench:bench_crispedit"}
