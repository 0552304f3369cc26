"""Reproduction of DDiT (arXiv 2602.16968): dynamic patch scheduling on a small DiT.

Stages: `teacher` (the base DiT, flow matching) and `adapters` (the coarse patch sizes
distilled from it: PI-resized embed, up-sampled de-embed, LoRA on the MLPs, R_phi). Then the
sampling study (`study.py`): the third-difference scheduler (paper Sec. 3.2) against the base,
static and all-coarse schedules, with and without TeaCache. Claims and protocol: see
experiments/ddit/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers import diffusion
from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report
from jaxpapers.core.metrics import series
from jaxpapers.diffusion import ddit

from . import checks, data, model, study
from .config import PRESETS, DDiTConfig


def held_out_distillation(config: DDiTConfig, graphdef, states: list, n: int = 64) -> list[float]:
  """The distillation loss (mean over the coarse sizes) on a fixed held-out batch, per state."""
  x0 = jnp.asarray(data.real_images(config, n, start=10 * config.sampling.real)[0])
  rng = np.random.default_rng(5)
  noise = jnp.asarray(rng.standard_normal(x0.shape), jnp.float32)
  t = jnp.asarray(rng.uniform(0, 1, n), jnp.float32)
  labels = jnp.zeros(n, jnp.int32)
  x_t = diffusion.interpolate(x0, noise, t)

  @jax.jit
  def loss(state):
    m = nnx.merge(graphdef, state)
    target = m(x_t, t, labels)
    return jnp.mean(jnp.stack([diffusion.mean_squared_error(m(x_t, t, labels, size=s), target)
                               for s in config.model.sizes[1:]]))
  return [float(loss(s)) for s in states]


def study_claims(config: DDiTConfig, preset: str, result: dict) -> list[report.Claim]:
  m, s = result["methods"], config.sampling
  tau = result["tau"]
  gated = preset != "smoke"
  at = f"tau* = {tau:.3g}, {s.samples} samples, T = {s.steps}"
  claims = []
  ratio = m["ddit"]["flop_ratio"]
  gain = m["ddit"]["psnr_vs_base"] - m["static_late"]["psnr_vs_base"]
  sweep = [result["sweep"][str(f)]["flop_ratio"] for f in sorted(s.tau_factors)]
  drops = min(a - b for a, b in zip(sweep, sweep[1:]))
  gap = m["all_coarse"]["fd"] - m["base"]["fd"]
  spread = float(np.std(result["fd_gap_seeds"], ddof=1))
  closed = (m["ddit"]["fd"] - m["base"]["fd"]) / gap if gap else float("inf")
  separable = gap > 3 * spread
  flops = (f"counted FLOPs of DDiT / the base schedule ({at})")
  psnr = (f"PSNR(DDiT vs base) - PSNR(static-late vs base), dB, same coarse step count per "
          f"sample ({at})")
  mono = ("FLOP ratio at tau in {" + ", ".join(f"{f:g}" for f in sorted(s.tau_factors))
          + "} x tau*: smallest decrease between neighbours (" + " > ".join(f"{r:.3f}" for r in sweep)
          + ")")
  fd_statement = (f"(FD(DDiT) - FD(base)) / (FD(all-coarse) - FD(base)), PCA-12 Frechet distance "
                  f"to {s.real_reference} held-out real images ({at}); gap {gap:.4g}, spread over "
                  f"{len(result['fd_gap_seeds'])} noise seeds {spread:.3g}")
  if gated:
    claims += [report.at_most("ddit_flop_ratio", flops, ratio, 0.65, paper_value="1 / 2.18 (FLUX, wall clock)"),
               report.at_least("ddit_psnr_vs_static_late", psnr, gain, 1.0),
               report.greater_than("flop_ratio_decreases_with_tau", mono, drops, 0.0)]
    if separable:
      claims.append(report.at_most("ddit_fd_gap_closed", fd_statement + ", gated: the gap "
                                   "exceeds 3 x its spread", closed, 0.25))
    else:
      claims.append(report.reported("ddit_fd_gap_closed", fd_statement + ": the gap does not exceed 3 x "
                              "its spread, so it is not separable at this size (not gated)",
                              closed))
  else:
    claims += [report.reported("ddit_flop_ratio", flops, ratio), report.reported("ddit_psnr_vs_static_late", psnr, gain),
               report.reported("flop_ratio_decreases_with_tau", mono, drops),
               report.reported("ddit_fd_gap_closed", fd_statement, closed)]
  sh = result["schedule"]
  claims.append(report.reported("coarse_fraction_first_vs_second_half", "DDiT coarse fraction, eligible "
                          "steps of the first half minus the second half (spec: > 0)",
                          sh["coarse_fraction_first_half"] - sh["coarse_fraction_second_half"]))
  if "coarse_steps_textured" in sh:
    counts = (sh["coarse_steps_untextured"], sh["coarse_steps_textured"])
    claims.append(report.reported(
        "coarse_steps_untextured_minus_textured", "DDiT coarse steps per sample, untextured minus "
        "textured samples (texture: high-pass energy of the base sample; spec: > 0)",
        counts[0] - counts[1] if np.all(np.isfinite(counts)) else
        f"one class is empty ({sh['textured_fraction_generated']:.2f} of the samples textured)"))
  claims += [
      report.reported("wall_clock_ddit_over_base", "sampling wall time, DDiT / base schedule (CPU, "
                "compiled, machine shared)", m["ddit"]["seconds"] / m["base"]["seconds"]),
  ]
  if "teacache" in m:
    claims += [
        report.reported("teacache_flop_ratio", f"counted FLOP ratio, TeaCache alone (ell = "
                  f"{s.teacache:g}; PSNR vs base {m['teacache']['psnr_vs_base']:.2f} dB)",
                  m["teacache"]["flop_ratio"], paper_value="1 / 2.0 (FLUX, wall clock)"),
        report.reported("ddit_teacache_flop_ratio", f"counted FLOP ratio, DDiT + TeaCache (ell = "
                  f"{s.teacache_with_ddit:g}; PSNR vs base "
                  f"{m['ddit_teacache']['psnr_vs_base']:.2f} dB)",
                  m["ddit_teacache"]["flop_ratio"], paper_value="1 / 3.52 (FLUX, wall clock)"),
    ]
  return claims


def _plot_study(path: Path, result: dict, config: DDiTConfig) -> Path:
  fig, (ax, ax2, ax3) = report.subplots(1, 3, figsize=(15, 4))
  ax.plot(result["schedule"]["coarse_fraction_per_step"], marker="o")
  ax.set(xlabel="solver step", ylabel="fraction of samples at the coarse patch",
         title=f"DDiT schedule at tau* = {result['tau']:.3g}")
  names = list(result["methods"])
  m = result["methods"]
  ax2.scatter([m[n]["flop_ratio"] for n in names], [m[n]["psnr_vs_base"] for n in names])
  for n in names:
    ax2.annotate(n, (m[n]["flop_ratio"], m[n]["psnr_vs_base"]), fontsize=7)
  ax2.set(xlabel="counted FLOP ratio", ylabel="PSNR vs base (dB, capped at 100)",
          title="Fidelity to the base sampler")
  ax3.bar(names, [m[n]["fd"] for n in names])
  ax3.axhline(result["fd_real_vs_real"], color="k", ls="--", label="real vs real")
  ax3.set(ylabel="FD (PCA-12)", title="Distribution quality")
  ax3.tick_params(axis="x", rotation=45, labelsize=7)
  ax3.legend(fontsize=7)
  return report.save_figure(fig, path)


def _plot_samples(path: Path, result: dict, histories: dict) -> Path:
  rows = result["samples_for_plot"]
  fig, axes = report.subplots(len(rows) + 1, 8, figsize=(10, 1.4 * (len(rows) + 1)))
  for r, (name, images) in enumerate(rows.items()):
    for c, image in enumerate(images):
      axes[r, c].imshow(np.asarray(image)[..., 0], cmap="gray", vmin=-1, vmax=1)
      axes[r, c].set_axis_off()
    axes[r, 0].set_title(name, fontsize=7, loc="left")
  for ax in axes[-1]:
    ax.set_axis_off()
  ax = fig.add_subplot(len(rows) + 1, 1, len(rows) + 1)
  for name, history in histories.items():
    steps, values = series(history, "loss", kind="train")
    ax.plot(steps, values, label=name)
  ax.set(yscale="log", xlabel="step", ylabel="loss")
  ax.legend(fontsize=7)
  return report.save_figure(fig, path)


def reproduce(config: DDiTConfig, preset: str, out_dir: Path, progress):
  """Unit checks (smoke), teacher, adapters, the sampling study; claims and plots."""
  claims = []
  if config.checks:
    claims += [checks.third_diff_claim(), checks.scheduler_claim(), checks.round_trip_claim(),
               checks.pi_resize_claim(), checks.flop_claim(config.model, config.sampling.steps)]
  teacher = experiment_lib.run_stage(EXPERIMENT, config, out_dir / "teacher", progress,
                                     stage="teacher", label="teacher (flow matching, patch "
                                     f"{config.model.base})")
  adapters = experiment_lib.run_stage(EXPERIMENT, config, out_dir / "adapters", progress,
                                      stage="adapters", inputs={"teacher": teacher.state},
                                      keep_initial=True, label="adapters (distillation)")
  graphdef = model.graphdef(config)
  before, after = held_out_distillation(config, graphdef, [adapters.initial_state, adapters.state])
  claims.append(report.less_than(
      "distillation_loss_decreases", f"held-out distillation loss after / before "
      f"{config.adapters.steps} steps ({before:.4g} -> {after:.4g}; {config.distill_optimizer})",
      after / before, 1.0))
  n = 4
  x, _, _ = data.real_images(config, n, start=20 * config.sampling.real)
  t = jnp.linspace(0.1, 0.9, n)
  labels = jnp.zeros(n, jnp.int32)
  claims += checks.base_path_claims(graphdef, adapters.initial_state, adapters.state,
                                    teacher.state, config.model.dit, jnp.asarray(x), t, labels)
  forwards = ddit.PatchForwards(nnx.merge(graphdef, adapters.state))
  result = study.run_study(forwards, config)
  result["distillation_loss"] = {"before": before, "after": after}
  claims += study_claims(config, preset, result)
  plots = [_plot_study(out_dir / "study.png", result, config),
           _plot_samples(out_dir / "samples.png", result,
                         {"teacher": teacher.history, "adapters": adapters.history})]
  result.pop("samples_for_plot")
  (out_dir / "measurements.json").write_text(json.dumps(result, indent=2) + "\n")
  return claims, plots


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.16968",
    title="DDiT: dynamic patch scheduling for efficient diffusion transformers",
    presets=PRESETS,
    reproduce=reproduce,
    stages=(experiment_lib.Stage("teacher", model.make_teacher_task),
            experiment_lib.Stage("adapters", model.make_adapter_task, needs=("teacher",))),
    status="in progress",
)

BENCHMARKS = {"ddit": "bench:bench_ddit"}
