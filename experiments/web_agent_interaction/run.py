"""Reproduction of intervention modelling on synthetic web users (arXiv 2602.17588).

For each seed: a synthetic four-style corpus (`jaxpapers.evals.web_users`) split by trajectory;
style discovery (k-means on the per-user frequency, intensity, position and handback rate of the
training trajectories, ARI against the true styles); the never- and always-intervene baselines;
the general and the style-conditioned GRU predictor, each one run of the `train` stage through
the shared loop; step accuracy, F1 and the provisional Perfect Timing Score on the held-out
trajectories (`jaxpapers.evals.intervention.intervention_scores`). Claims and protocol:
experiments/web_agent_interaction/README.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report
from jaxpapers.evals import intervention, web_users

from . import checks, model
from .config import CONDITIONING, PRESETS, WebAgentConfig

PREDICTORS = ("never", "always", *CONDITIONING)


def seeded(config: WebAgentConfig, seed: int) -> WebAgentConfig:
  """`config` for one seed: the corpus, the split, the clustering and the predictor's init."""
  return dataclasses.replace(config, seed=seed, train=dataclasses.replace(config.train, seed=seed))


def _by_style(split: model.Split, test: dict, labels: list, preds: list) -> dict[str, float]:
  """Intervention F1 of `preds` on the test trajectories of each true style's users."""
  c = split.corpus.select(split.rows(True))
  starts = np.r_[0, np.flatnonzero(np.diff(c.trajectory)) + 1]
  style = c.user_style[c.user[starts]]
  out = {}
  for k, name in enumerate(web_users.STYLES):
    idx = np.flatnonzero(style == k)
    out[name] = intervention.f1_per_class([labels[i] for i in idx], [preds[i] for i in idx])[1]
  return out


def run_seed(config: WebAgentConfig, progress) -> dict:
  """Style discovery, both baselines and both trained predictors on one seed's corpus."""
  split = model.split_of(config)
  test = model.padded(config, split, test=True)
  labels = model.labels_of(test)
  train_rows = split.rows(False)
  out = {"seed": config.seed, "ari": split.ari, "train_steps": int(train_rows.sum()),
         "test_steps": int(sum(len(y) for y in labels)), "test_events": int(sum(y.sum() for y in labels)),
         "train_positive_rate": float(split.corpus.label[train_rows].mean()),
         "discovered_styles": split.styles.tolist(), "scores": {}, "f1_by_style": {}, "loss": {}}
  baselines = {"never": [np.zeros_like(y) for y in labels], "always": [np.ones_like(y) for y in labels]}
  for name, preds in baselines.items():
    out["scores"][name] = intervention.intervention_scores(labels, preds, config.alphas)
  for cond in CONDITIONING:
    cfg = dataclasses.replace(config, conditioning=cond)
    run = experiment_lib.run_stage(EXPERIMENT, cfg, None, progress,
                                   label=f"{cond} predictor (seed {config.seed})")
    preds = model.predict(cfg, run.model, test)
    out["scores"][cond] = intervention.intervention_scores(labels, preds, config.alphas)
    out["f1_by_style"][cond] = _by_style(split, test, labels, preds)
    out["loss"][cond] = [[r["step"], r["loss"]] for r in run.history if r.get("kind") == "train"]
  return out


def _mean(runs: list[dict], get) -> float:
  return float(np.mean([get(r) for r in runs]))


def _pts(a: float) -> str:
  return f"pts@{a:g}"


def claims_of(config: WebAgentConfig, preset: str, runs: list[dict]) -> list[report.Claim]:
  n = len(runs)
  gated = preset != "smoke"
  at = f"{n} seed(s), {config.num_users} users x {config.trajectories_per_user} trajectories"
  score = lambda p, k: _mean(runs, lambda r: r["scores"][p][k])  # noqa: E731
  ari = min(r["ari"] for r in runs)
  never_acc = score("never", "accuracy")
  never_zero = max(r["scores"]["never"]["f1_intervene"] + sum(r["scores"]["never"][_pts(a)] for a in config.alphas)
                   for r in runs)
  gain = score("general", "f1_intervene") - score("always", "f1_intervene")
  claims = []

  def add(claim_fn, id, statement, measured, *bound, paper_value=None):
    claims.append(claim_fn(id, statement, measured, *bound, paper_value=paper_value) if gated
                  else report.reported(id, statement, measured))

  add(report.at_least, "C1_style_discovery_ari", f"(provisional) lowest ARI of k-means (k {config.styles}) on "
      f"the per-user features of the training trajectories against the true styles ({at})", ari, 0.8)
  add(report.within, "C2_never_intervene_accuracy", f"(provisional) step accuracy of never-intervene, mean "
      f"of {n} seed(s) (test positive rate {1 - never_acc:.3f}; the paper's 1:7 ratio)", never_acc, 0.85, 0.90,
      paper_value=0.853)
  # exact under any faithful PTS: gated at every preset
  claims.append(report.at_most("C2_never_intervene_f1_pts_zero", "largest over seeds of never-intervene's "
                               f"intervention F1 + PTS summed over alpha in {config.alphas}", never_zero, 0.0,
                               paper_value=0))
  add(report.at_least, "C3_f1_over_always_intervene", f"(provisional) intervention F1 of the general GRU "
      f"predictor minus always-intervene's ({score('general', 'f1_intervene'):.3f} vs "
      f"{score('always', 'f1_intervene'):.3f}; mean of {n} seed(s))", gain, 0.15,
      paper_value="always-intervene F1 0.257")
  for a in config.alphas:
    low = min(r["scores"]["general"][_pts(a)] for r in runs)
    add(report.greater_than, f"C3_pts_positive_alpha_{a:g}", f"lowest over seeds of the general predictor's "
        f"PTS at alpha {a:g} (provisional PTS; mean {score('general', _pts(a)):.3f})", low, 0.0,
        paper_value="0.303 (fine-tuned open model, paper's alpha)")
  diffs = {a: score("style", _pts(a)) - score("general", _pts(a)) for a in config.alphas}
  worst = min(diffs, key=diffs.get)
  add(report.at_least, "C4_style_conditioning_non_inferior", f"(provisional) style-conditioned minus general "
      f"PTS, worst alpha ({worst:g}: {score('style', _pts(worst)):.3f} vs {score('general', _pts(worst)):.3f}; "
      f"mean of {n} seed(s))", diffs[worst], -0.02)
  claims.append(report.reported("style_minus_general_f1", "intervention F1 of the style-conditioned minus the general "
                          "predictor (mean over seeds)", score("style", "f1_intervene") - score("general", "f1_intervene")))
  claims.append(report.reported("general_step_accuracy", "step accuracy of the general predictor (mean over seeds)",
                          score("general", "accuracy")))
  for a in config.alphas:
    claims.append(report.reported(f"always_intervene_pts_alpha_{a:g}", f"PTS of always-intervene at alpha {a:g} (hits "
                            "every event; every earlier step of its window a false positive; provisional PTS)",
                            score("always", _pts(a))))
    claims.append(report.reported(f"style_pts_alpha_{a:g}", f"PTS of the style-conditioned predictor at alpha {a:g}",
                            score("style", _pts(a))))
  return claims


def pipeline_claims(runs: list[dict]) -> list[report.Claim]:
  """The smoke pipeline: both predictors' weighted BCE falls."""
  out = []
  for cond in CONDITIONING:
    loss = runs[0]["loss"][cond]
    out.append(report.less_than(f"pipeline_loss_decreases_{cond}", f"{cond} predictor's training loss, last "
                                f"over first of {len(loss)} logged steps ({loss[0][1]:.4f} -> {loss[-1][1]:.4f})",
                                loss[-1][1] / loss[0][1], 1.0))
  return out


def _plot(path: Path, config: WebAgentConfig, runs: list[dict]) -> Path:
  fig, (ax, ax2) = report.subplots(1, 2, figsize=(12, 4))
  metrics = ["f1_intervene", *(_pts(a) for a in config.alphas)]
  width = 0.8 / len(PREDICTORS)
  for i, p in enumerate(PREDICTORS):
    values = np.array([[r["scores"][p][m] for m in metrics] for r in runs])
    ax.bar(np.arange(len(metrics)) + i * width, values.mean(0), width,
           yerr=values.std(0) if len(runs) > 1 else None, label=p)
  ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, ["intervention F1", *(f"PTS a={a:g}" for a in config.alphas)])
  ax.set(ylabel="held-out score", title="Predictors (PTS provisional)")
  ax.legend(fontsize=8)
  for cond in CONDITIONING:
    for j, r in enumerate(runs):
      steps, loss = np.array(r["loss"][cond]).T
      ax2.plot(steps, loss, color="C2" if cond == "general" else "C3", alpha=0.6,
               label=f"{cond} predictor" if j == 0 else None)
  ax2.set(xlabel="step", ylabel="class-weighted BCE", title="Training")
  ax2.legend(fontsize=8)
  return report.save_figure(fig, path)


def reproduce(config: WebAgentConfig, preset: str, out_dir: Path, progress):
  """CI checks (smoke), then style discovery, baselines and both predictors for each seed."""
  claims = checks.all_claims() if config.checks else []
  runs = [run_seed(seeded(config, config.seed + s), progress) for s in range(config.seeds)]
  claims += claims_of(config, preset, runs)
  if config.checks:
    claims += pipeline_claims(runs)
  plots = [_plot(out_dir / "intervention.png", config, runs)]
  (out_dir / "measurements.json").write_text(json.dumps(runs, indent=2) + "\n")
  return claims, plots


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.17588",
    title="Modeling Distinct Human Interaction in Web Agents (intervention prediction, provisional PTS)",
    presets=PRESETS,
    reproduce=reproduce,
    stages=(experiment_lib.Stage("train", model.make_task),),
    status="in progress",
)
