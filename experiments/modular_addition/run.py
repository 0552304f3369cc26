"""Reproduction of grokking in modular addition (He et al., arXiv 2602.16849).

The paper's three-stage grokking, measured with our CPU-scale protocol, see
experiments/modular_addition/README.md.

Claims (small preset, grokking run A): memorization (train accuracy 1.0) by step 3,000 with test
accuracy on the mirror-pair plateau [0.45, 0.85]; 95% test accuracy at least twice as late and
by step 12,000; the Fourier spectra sharpen (mean IPR higher at S_95 than at S_tr); without
weight decay the same run never reaches 95% test accuracy. Lottery ticket (B) and mechanism
(C) claims come from theory.py. Smoke preset: the CI protocol.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report
from jaxpapers.core.metrics import series
from jaxpapers.ode import fourier
from jaxpapers.ode.stages import detect_stages, first_step

from . import theory
from .config import PRESETS, ModularAdditionConfig
from .model import make_task


def value_at(steps: np.ndarray, values: np.ndarray, step: int | None) -> float:
  return float("nan") if step is None else float(values[np.nonzero(steps == step)[0][0]])


def _weights(model) -> tuple[np.ndarray, np.ndarray]:
  return np.asarray(model.w_in[...]), np.asarray(model.w_out[...])


def _train(config: ModularAdditionConfig, workdir: Path, progress, label: str):
  """A fresh run of the shared loop: (eval history, initial and final (W_in, W_out))."""
  run = experiment_lib.run_stage(EXPERIMENT, config, workdir, progress, label=label, keep_initial=True)
  return run.history, _weights(run.initial_model), _weights(run.model)


def _claims(preset: str, config: ModularAdditionConfig, history, control_history) -> list[report.Claim]:
  steps, train_acc = series(history, "train_accuracy")
  _, test_acc = series(history, "test_accuracy")
  _, ipr = series(history, "ipr")
  s_tr = first_step(steps, train_acc, 1.0)
  never = float("inf")
  if preset == "smoke":  # the CI protocol's "grokking tiny"
    s_90 = first_step(steps, test_acc, 0.9)
    return [
        report.at_most("smoke_memorization_step", "first step with train accuracy 1.0",
                       s_tr or never, 600, paper_value="300 (our calibration)"),
        report.at_least("smoke_grokking_delay", "first step with test accuracy >= 0.9, over S_tr",
                        (s_90 or never) / (s_tr or never), 3.0, paper_value="4.3-5.3 (our calibration)"),
        report.at_least("smoke_final_test_accuracy", f"test accuracy at step {config.train.steps}",
                        float(test_acc[-1]), 0.93),
    ]
  s_95 = first_step(steps, test_acc, 0.95)
  _, control_test = series(control_history, "test_accuracy")
  last = config.train.steps
  return [
      report.at_most("memorization_step", "S_tr: first step with train accuracy 1.0",
                     s_tr or never, 3000, paper_value=1600),
      report.within("memorization_test_accuracy", "test accuracy at S_tr (mirror-pair plateau)",
                    value_at(steps, test_acc, s_tr), 0.45, 0.85, paper_value="0.66 (our calibration)"),
      report.at_least("grokking_delay", "S_95 / S_tr (S_95: first step with test accuracy >= 0.95)",
                      (s_95 or never) / (s_tr or never), 2.0, paper_value=5200 / 1600),
      report.at_most("grokking_step", f"S_95, reached by step {last}", s_95 or never, last,
                     paper_value=5200),
      report.greater_than("ipr_sharpens", "mean Fourier IPR at S_95 over mean IPR at S_tr",
                          value_at(steps, ipr, s_95) / value_at(steps, ipr, s_tr), 1.0),
      report.less_than("control_no_weight_decay", f"best test accuracy through step {last} with weight decay 0",
                       float(control_test.max()), 0.95, paper_value="0.797 (our calibration, M = 512)"),
  ]


def _plot_curves(path: Path, history, control_history, s_tr, s_95) -> Path:
  fig, (ax, ax2) = report.subplots(1, 2, figsize=(11, 4))
  steps, train_acc = series(history, "train_accuracy")
  _, test_acc = series(history, "test_accuracy")
  keep = steps > 0
  stages = detect_stages(steps, train_acc, test_acc)
  bounds = [int(steps[keep][0]), stages.fast_generalization, stages.slow_cleanup, int(steps[-1])]
  for i, name in enumerate(("I memorization", "II fast generalization", "III slow cleanup")):
    if bounds[i] is not None and bounds[i + 1] is not None:
      ax.axvspan(bounds[i], bounds[i + 1], color=f"C{i + 4}", alpha=0.1, lw=0, label=f"stage {name}")
  ax.plot(steps[keep], train_acc[keep], label="train")
  ax.plot(steps[keep], test_acc[keep], label="test")
  if control_history:
    c_steps, c_test = series(control_history, "test_accuracy")
    ax.plot(c_steps[c_steps > 0], c_test[c_steps > 0], "--", label="test, weight decay 0")
  for step, name, style in ((s_tr, "S_tr (train acc 1.0)", ":"), (s_95, "S_95 (test acc 0.95)", "-.")):
    if step:
      ax.axvline(step, color="gray", ls=style, label=f"{name} = {step}")
  ax.set(xscale="log", xlabel="step", ylabel="accuracy", title="Grokking in modular addition")
  ax.legend(loc="upper left", fontsize=7)
  _, ipr = series(history, "ipr")
  _, norm = series(history, "param_norm")
  ax2.plot(steps[keep], ipr[keep], label="mean Fourier IPR")
  ax2.set(xscale="log", xlabel="step", ylabel="IPR")
  ax3 = ax2.twinx()
  ax3.plot(steps[keep], norm[keep], color="C3", label="parameter norm")
  ax3.set_ylabel("parameter norm")
  handles = ax2.get_legend_handles_labels()[0] + ax3.get_legend_handles_labels()[0]
  ax2.legend(handles=handles, loc="upper left", fontsize=8)
  ax2.set_title("Fourier sparsity and weight norm")
  return report.save_figure(fig, path)


def _plot_spectrum(path: Path, w_in: np.ndarray) -> Path:
  magnitudes = np.asarray(fourier.magnitudes_and_phases(w_in)[0])  # [M, K]
  order = np.lexsort((-magnitudes.max(1), magnitudes.argmax(1)))
  fig, ax = report.subplots(figsize=(6, 5))
  image = ax.imshow(magnitudes[order], aspect="auto", interpolation="nearest", cmap="viridis",
                    extent=(0.5, magnitudes.shape[1] + 0.5, magnitudes.shape[0], 0))
  ax.set(xlabel="frequency k", ylabel="neuron (sorted by dominant frequency)",
         title="First-layer Fourier magnitude per neuron (end of training)")
  fig.colorbar(image, ax=ax)
  return report.save_figure(fig, path)


def reproduce(config: ModularAdditionConfig, preset: str, out_dir: Path, progress):
  """Grokking run (and, beyond smoke, the no-weight-decay control), lottery run, mechanism."""
  history, _, final = _train(config, out_dir / "grokking", progress, "grokking")
  control_history = []
  if preset != "smoke":
    control = dataclasses.replace(config, weight_decay=0.0)
    control_history, _, _ = _train(control, out_dir / "control_wd0", progress, "control, weight decay 0")
  lottery_history, lottery_init, lottery_final = _train(
      theory.lottery_run_config(config), out_dir / "lottery", progress, "lottery (GD, quad)")
  outcome = theory.measure_lottery(config, lottery_init, lottery_final,
                                   series(lottery_history, "train_loss")[1][-1])
  mechanism_claims, logits = theory.mechanism_claims(config)
  claims = (_claims(preset, config, history, control_history)
            + theory.lottery_claims(preset, outcome) + mechanism_claims)
  steps, train_acc = series(history, "train_accuracy")
  _, test_acc = series(history, "test_accuracy")
  plots = [
      _plot_curves(out_dir / "grokking_curves.png", history, control_history,
                   first_step(steps, train_acc, 1.0), first_step(steps, test_acc, 0.95)),
      _plot_spectrum(out_dir / "fourier_spectrum.png", final[0]),
      theory.plot_lottery(out_dir / "lottery.png", outcome),
      theory.plot_mechanism(out_dir / "mechanism.png", logits),
  ]
  return claims, plots


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.16849",
    title="On the Mechanism and Dynamics of Modular Addition: Fourier Features, Lottery Ticket, and Grokking",
    presets=PRESETS,
    reproduce=reproduce,
    stages=(experiment_lib.Stage("train", make_task),),
)

BENCHMARKS = {"modular_addition": "bench_jax_vs_torch:bench_modular_addition"}
