"""Lottery ticket and mechanism measurements of modular addition (arXiv 2602.16849).

The paper's lottery ticket mechanism and majority vote by phase symmetry, measured with our
CPU-scale protocol (runs B and C), see experiments/modular_addition/README.md.

Lottery: a quadratic network trained by plain gradient descent on all pairs; the ODE race from
the initial weights should name each neuron's final dominant frequency far better than
argmax(alpha0 beta0), and training should align phases (|sin D| -> 0 at the winner).
Mechanism: the analytic phase-symmetric network is exact with a 2:1 true-to-ghost peak ratio;
with all phases 0 the ratio breaks and accuracy falls to chance.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxpapers.core import report
from jaxpapers.ode import dynamics, lottery, mechanism

from .config import ModularAdditionConfig


def lottery_run_config(config: ModularAdditionConfig) -> ModularAdditionConfig:
  """The grokking config turned into the lottery run: quad, all pairs, GD, no warm-up or decay."""
  lc = config.lottery
  train = dataclasses.replace(config.train, steps=lc.steps, eval_every=lc.steps,
                              log_every=min(100, lc.steps))
  return dataclasses.replace(
      config, p=lc.p, width=lc.width, activation="quad", init_scale=lc.init_scale,
      optimizer="sgd", lr=lc.lr, weight_decay=0.0, warmup_steps=0, frac_train=1.0, train=train)


@dataclasses.dataclass(frozen=True)
class LotteryOutcome:
  predicted: np.ndarray  # [M] ODE-race winners (0-based frequency index)
  baseline: np.ndarray  # [M] argmax alpha0 beta0
  actual: np.ndarray  # [M] argmax alpha beta after training
  sin_d_init: np.ndarray  # [M] |sin D| at the actual winner, at init
  sin_d_final: np.ndarray  # [M] the same after training
  final_train_loss: float


def measure_lottery(config: ModularAdditionConfig, initial, final, final_train_loss: float) -> LotteryOutcome:
  """Predictions from the initial (W_in, W_out) against the trained network's winners."""
  lc = config.lottery
  predicted = lottery.predict_winners(*initial, lr=lc.lr, growth=lc.growth)
  actual = lottery.actual_winners(*final)
  return LotteryOutcome(
      np.asarray(predicted), np.asarray(lottery.baseline_winners(*initial)), np.asarray(actual),
      np.asarray(lottery.winner_misalignment(dynamics.neuron_modes(*initial), actual)),
      np.asarray(lottery.winner_misalignment(dynamics.neuron_modes(*final), actual)),
      float(final_train_loss))


def lottery_claims(preset: str, outcome: LotteryOutcome) -> list[report.Claim]:
  match = float(np.mean(outcome.predicted == outcome.actual))
  baseline = float(np.mean(outcome.baseline == outcome.actual))
  if preset == "smoke":  # the CI protocol's "lottery tiny"
    return [report.at_least("lottery_ode_match_smoke", "ODE-race winner = trained winner (fraction of neurons)",
                            match, 0.75, paper_value="0.883 (our calibration)"),
            report.less_than("lottery_final_train_loss_smoke", "final train loss of the GD run",
                             outcome.final_train_loss, 0.01)]
  return [
      report.at_least("lottery_ode_match", "ODE-race winner = trained winner (fraction of neurons)",
                      match, 0.85, paper_value="0.93 (our calibration)"),
      report.at_least("lottery_beats_baseline", "ODE match minus argmax(alpha0*beta0) match",
                      match - baseline, 0.2, paper_value="0.93 - 0.54 (our calibration)"),
      report.less_than("lottery_phase_alignment", "median |sin D| at the winner after training",
                       float(np.median(outcome.sin_d_final)), 0.2, paper_value="0.08 (our calibration)"),
      report.less_than("lottery_final_train_loss", "final train loss of the GD run",
                       outcome.final_train_loss, 0.01),
  ]


def mechanism_claims(config: ModularAdditionConfig) -> tuple[list[report.Claim], dict]:
  """Claims of the analytic network, and the logits used for the plot."""
  p, n = config.mechanism.p, config.mechanism.neurons_per_frequency
  logits = {name: mechanism.quad_logits(*mechanism.phase_symmetric_network(p, n, symmetric))
            for name, symmetric in (("symmetric", True), ("zero", False))}
  deviation = {k: float(np.max(np.abs(np.asarray(mechanism.peak_ratios(v)) / 2 - 1)))
               for k, v in logits.items()}
  accuracy = {k: float(mechanism.accuracy(v)) for k, v in logits.items()}
  claims = [
      report.at_least("mechanism_accuracy", f"phase-symmetric network accuracy on all {p}^2 pairs",
                      accuracy["symmetric"], 1.0, paper_value=1.0),
      report.at_most("mechanism_peak_ratio", "max over x != y of |(true - median)/(ghost - median) / 2 - 1|",
                     deviation["symmetric"], 1e-4, paper_value="0 (ratio exactly 2)"),
      report.greater_than("mechanism_zero_phase_ratio_breaks", "the same deviation with all phases 0",
                          deviation["zero"], 0.1, paper_value="ratios 0.67-4.0 (our calibration)"),
      report.at_most("mechanism_zero_phase_accuracy", f"accuracy with all phases 0 (chance 1/{p})",
                     accuracy["zero"], 2 / p, paper_value=f"{1 / p:.3f} (our calibration)"),
  ]
  return claims, logits


def plot_lottery(path: Path, outcome: LotteryOutcome) -> Path:
  fig, (ax, ax2) = report.subplots(1, 2, figsize=(10, 3.8))
  k = outcome.actual.max() + 1
  rates = [np.mean(outcome.predicted == outcome.actual), np.mean(outcome.baseline == outcome.actual),
           1 / max(k, 1)]
  ax.bar(["ODE race", "argmax alpha0*beta0", "chance"], rates, color=["C0", "C1", "gray"])
  ax.set(ylim=(0, 1), ylabel="fraction of neurons", title="Which frequency wins: prediction from init")
  for i, r in enumerate(rates):
    ax.text(i, r + 0.02, f"{r:.2f}", ha="center")
  bins = np.linspace(0, 1, 21)
  ax2.hist(outcome.sin_d_init, bins, alpha=0.6, label="at init")
  ax2.hist(outcome.sin_d_final, bins, alpha=0.6, label="after training")
  ax2.set(xlabel="|sin D| at the winning frequency", ylabel="neurons", title="Phase alignment")
  ax2.legend()
  return report.save_figure(fig, path)


def plot_mechanism(path: Path, logits: dict, x: int = 3, y: int = 7) -> Path:
  p = logits["symmetric"].shape[0]
  fig, axes = report.subplots(1, 2, figsize=(10, 3.5), sharex=True)
  for ax, (name, values) in zip(axes, logits.items()):
    row = np.asarray(values[x, y])
    ax.bar(np.arange(p), row - np.median(row), color="lightgray")
    for z, label, color in (((x + y) % p, "x + y", "C2"), ((2 * x) % p, "2x", "C3"), ((2 * y) % p, "2y", "C3")):
      ax.bar(z, row[z] - np.median(row), color=color, label=label)
    ax.set(title=f"phases {name}: logits - median, (x, y) = ({x}, {y})", xlabel="z")
    ax.legend(fontsize=8)
  return report.save_figure(fig, path)
