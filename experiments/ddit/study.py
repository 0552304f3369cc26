"""The sampling study of the DDiT experiment (arXiv 2602.16968, Sec. 4; our CPU protocol).

Every method samples the same noise with T Euler steps through the distilled multi-patch DiT
(`jaxpapers.diffusion.ddit.ddit_sample`):

  A base: the base patch at every step;  B DDiT: the third-difference scheduler (tau in a sweep
  around the calibrated tau*);  C static-early / D static-late: per sample the same number k of
  coarse steps as B at tau*, on the first k steps after the warm-up / on the last k steps;
  E all-coarse: the coarse patch at every step after the warm-up;  TeaCache alone (on A) and
  TeaCache with DDiT (on B at tau*).

tau* is calibrated on base trajectories of extra seeds: the given percentile of the scheduler's
statistic sigma^{(rho)} over every eligible step. Observables: the counted FLOP ratio, PSNR
against A (same noise), the Frechet distance in a PCA-12 space of real images
(`jaxpapers.evals.FrechetPCA`), the spread of FD(E) - FD(A) over noise seeds, and the shape of
the schedules (coarse fraction per half, coarse steps on textured vs untextured samples).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from jaxpapers.diffusion import ddit
from jaxpapers.evals import FrechetPCA, psnr

from . import data
from .config import DDiTConfig

DATA_RANGE = 2.0  # images in [-1, 1]


def high_pass_energy(images: np.ndarray) -> np.ndarray:
  """Mean squared 4-neighbour Laplacian of each image, [n] (texture detector)."""
  x = np.asarray(images, np.float64)[..., 0]
  lap = (4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2]
         - x[:, 1:-1, 2:])
  return np.mean(lap ** 2, axis=(1, 2))


def texture_threshold(energy: np.ndarray, textured: np.ndarray) -> tuple[float, float]:
  """The high-pass energy threshold that best separates real textured from untextured images,
  and its accuracy on them."""
  candidates = np.unique(energy)
  accuracy = [np.mean((energy > c) == textured) for c in candidates]
  best = int(np.argmax(accuracy))
  return float(candidates[best]), float(accuracy[best])


def static_schedule(k: np.ndarray, steps: int, warmup: int, base: int, coarse: int,
                    late: bool) -> np.ndarray:
  """[T, B]: k[b] coarse steps right after the warm-up (early) or on the last k[b] steps (late)."""
  i = np.arange(steps)[:, None]
  mask = (i >= steps - k[None]) if late else ((i >= warmup) & (i < warmup + k[None]))
  return np.where(mask, coarse, base).astype(np.int32)


@dataclasses.dataclass
class Run:
  """One method's samples and schedule."""

  result: ddit.SampleResult
  flop_ratio: float


def _noise(config: DDiTConfig, n: int, seed: int) -> np.ndarray:
  d = config.model.dit
  return np.random.default_rng(seed).standard_normal((n, *d.input_shape, d.channels)).astype(
      np.float32)


def _labels(config: DDiTConfig, n: int) -> np.ndarray:
  return (np.arange(n) % config.model.dit.num_classes).astype(np.int32)


def precompile(forwards: ddit.PatchForwards, config: DDiTConfig, n: int, min_chunk: int = 8,
               teacache: bool = False) -> float:
  """Compiles every forward `ddit_sample` can call on up to n samples; returns the seconds."""
  d = config.model.dit
  start = time.perf_counter()
  chunks = sorted({c for m in range(1, n + 1) for c in ddit._chunks(m, min_chunk)})  # pylint: disable=protected-access
  for size in config.model.sizes:
    for c in chunks:
      x = np.zeros((c, *d.input_shape, d.channels), np.float32)
      t, labels = np.ones(c, np.float32), np.zeros(c, np.int32)
      np.asarray(forwards.velocity(x, t, labels, size))
      if teacache:
        probe = forwards.probe(x, t, labels, size)
        np.asarray(forwards.full(x, t, labels, size)[0])
        np.asarray(forwards.skip(x, t, labels, np.zeros_like(probe), size))
  return time.perf_counter() - start


def calibrate(forwards: ddit.PatchForwards, config: DDiTConfig) -> dict[str, Any]:
  """tau* from base trajectories of extra seeds, and TeaCache's rescaling polynomial."""
  s, cfg = config.sampling, config.model
  n = s.calibration_samples
  noise = _noise(config, n, s.seed + 7919)
  labels = _labels(config, n)
  run = ddit.ddit_sample(forwards, noise, labels, s.steps, rho=s.rho, warmup=s.warmup,
                         per_channel=s.per_channel,
                         schedule=np.full((s.steps, n), cfg.base, np.int32), keep_trajectory=True)
  values = run.statistics[s.warmup:, :, 0].ravel()
  tau_base = float(np.percentile(values, s.calibration_percentile))
  tau, search = tau_base, []
  if s.calibration == "closed_loop":  # bisection in log tau on DDiT's own coarse fraction
    target = s.calibration_percentile / 100
    lo, hi = np.log(tau_base) - np.log(10.0), np.log(tau_base) + np.log(1000.0)
    for _ in range(s.bisection_steps):
      mid = 0.5 * (lo + hi)
      sizes = ddit.ddit_sample(forwards, noise, labels, s.steps, tau=float(np.exp(mid)),
                               rho=s.rho, warmup=s.warmup, per_channel=s.per_channel).sizes
      fraction = float(np.mean(sizes[s.warmup:] != cfg.base))
      search.append({"tau": float(np.exp(mid)), "coarse_fraction": fraction})
      lo, hi = (mid, hi) if fraction < target else (lo, mid)
    tau = float(np.exp(0.5 * (lo + hi)))
  # TeaCache's calibration: relative L1 changes of the first block's modulated input and of the
  # model output between consecutive steps along the same trajectories.
  times = np.linspace(1.0, 0.0, s.steps + 1).astype(np.float32)
  probes, outputs = [], []
  for i in range(s.steps):
    t = np.full(n, times[i], np.float32)
    x = run.trajectory[i]
    probes.append(np.asarray(forwards.probe(x, t, labels, cfg.base)))
    outputs.append(np.asarray(forwards.velocity(x, t, labels, cfg.base)))

  def rel(a, b):
    axes = tuple(range(1, a.ndim))
    return np.abs(a - b).mean(axes) / np.maximum(np.abs(b).mean(axes), 1e-12)

  rel_in = np.concatenate([rel(probes[i], probes[i - 1]) for i in range(1, s.steps)])
  rel_out = np.concatenate([rel(outputs[i], outputs[i - 1]) for i in range(1, s.steps)])
  coefficients = ddit.fit_teacache_coefficients(rel_in, rel_out)
  return {"tau_star": tau, "tau_base_rule": tau_base, "search": search, "statistic_percentiles": {
      str(q): float(np.percentile(values, q)) for q in (10, 25, 50, 60, 75, 90)},
          "teacache_coefficients": list(coefficients),
          "teacache_fit_rmse": float(np.sqrt(np.mean(
              (np.polyval(coefficients, rel_in) - rel_out) ** 2)))}


def run_study(forwards: ddit.PatchForwards, config: DDiTConfig) -> dict[str, Any]:
  """Every method of the module docstring, with the observables; a JSON-ready dict."""
  s, cfg = config.sampling, config.model
  base, coarse = cfg.base, cfg.sizes[1]
  n, steps = s.samples, s.steps
  compile_seconds = precompile(forwards, config, n)
  cal = calibrate(forwards, config)
  tau = s.tau or cal["tau_star"]
  noise, labels = _noise(config, n, s.seed), _labels(config, n)
  common = {"rho": s.rho, "warmup": s.warmup, "per_channel": s.per_channel}

  def sample(schedule=None, tau_value=tau, teacache=None, noise=noise):
    result = ddit.ddit_sample(forwards, noise, labels, steps, tau=tau_value, schedule=schedule,
                              teacache=teacache, **common)
    return Run(result, ddit.flop_ratio(result.sizes, cfg, result.computed))

  base_schedule = np.full((steps, n), base, np.int32)
  coarse_schedule = np.where(np.arange(steps)[:, None] >= s.warmup, coarse, base) * np.ones(
      (1, n), np.int32)
  runs = {"base": sample(base_schedule)}
  sweep = {}
  for factor in s.tau_factors:
    sweep[factor] = sample(tau_value=factor * tau)
  runs["ddit"] = sweep[1.0]
  k = np.sum(runs["ddit"].result.sizes != base, axis=0)
  runs["static_early"] = sample(static_schedule(k, steps, s.warmup, base, coarse, late=False))
  runs["static_late"] = sample(static_schedule(k, steps, s.warmup, base, coarse, late=True))
  runs["all_coarse"] = sample(coarse_schedule)
  if s.with_teacache:
    coefficients = tuple(cal["teacache_coefficients"])
    runs["teacache"] = sample(base_schedule, teacache=ddit.TeaCache(s.teacache, coefficients))
    runs["ddit_teacache"] = sample(teacache=ddit.TeaCache(s.teacache_with_ddit, coefficients))

  real = data.real_images(config, s.real)[0]
  reference, _, reference_textured = data.real_images(config, s.real_reference, start=s.real)
  fd = FrechetPCA(real, components=12)
  a = runs["base"].result.samples
  methods = {}
  for name, run in runs.items():
    r = run.result
    methods[name] = {
        "flop_ratio": run.flop_ratio,
        "fd": fd.distance(r.samples, reference),
        "psnr_vs_base": float(np.mean(np.minimum(psnr(r.samples, a, DATA_RANGE), 100.0))),
        "coarse_steps": float(np.mean(np.sum(r.sizes != base, axis=0))),
        "computed_fraction": float(np.mean(r.computed)),
        "seconds": r.seconds,
    }
  fd_real = fd.distance(data.real_images(config, s.real_reference, start=s.real + s.real_reference)[0],
                        reference)
  # Spread of the all-coarse gap over noise seeds.
  gaps = [methods["all_coarse"]["fd"] - methods["base"]["fd"]]
  for j in range(1, s.spread_seeds + 1):
    other = _noise(config, n, s.seed + 31 * j)
    gaps.append(fd.distance(sample(coarse_schedule, noise=other).result.samples, reference)
                - fd.distance(sample(base_schedule, noise=other).result.samples, reference))
  # Schedule shape of DDiT at tau*.
  sizes = runs["ddit"].result.sizes
  is_coarse = sizes != base
  half = steps // 2
  first = float(np.mean(is_coarse[s.warmup:half])) if half > s.warmup else float("nan")
  second = float(np.mean(is_coarse[half:]))
  switches = np.sum(np.diff(is_coarse[s.warmup:].astype(int), axis=0) == 1, axis=0)
  shape: dict[str, Any] = {
      "coarse_fraction_first_half": first, "coarse_fraction_second_half": second,
      "coarse_fraction_eligible": float(np.mean(is_coarse[s.warmup:])),
      "fine_to_coarse_switches_per_sample": float(np.mean(switches)),
      "samples_back_to_coarse": float(np.mean(switches > 1)),
      "coarse_fraction_per_step": np.mean(is_coarse, axis=1).tolist(),
  }
  if reference_textured is not None:
    real_all, _, real_textured = data.real_images(config, s.real)
    threshold, accuracy = texture_threshold(high_pass_energy(real_all), real_textured)
    textured = high_pass_energy(runs["base"].result.samples) > threshold
    k_b = np.sum(is_coarse, axis=0)
    shape.update({"texture_threshold": threshold, "texture_accuracy_on_real": accuracy,
                  "textured_fraction_generated": float(np.mean(textured)),
                  "coarse_steps_textured": float(np.mean(k_b[textured])) if textured.any() else float("nan"),
                  "coarse_steps_untextured": float(np.mean(k_b[~textured])) if (~textured).any() else float("nan")})
  return {
      "tau": tau, "calibration": cal, "methods": methods, "fd_real_vs_real": fd_real,
      "sweep": {str(f): {"tau": f * tau, "flop_ratio": r.flop_ratio,
                         "fd": fd.distance(r.result.samples, reference),
                         "psnr_vs_base": float(np.mean(np.minimum(
                             psnr(r.result.samples, a, DATA_RANGE), 100.0)))}
                for f, r in sweep.items()},
      "fd_gap_seeds": gaps, "schedule": shape, "compile_seconds": compile_seconds,
      "scheduler_flops_per_step": ddit.scheduler_flops(cfg, len(cfg.sizes) - 1),
      "forward_flops": {str(p): ddit.forward_flops(cfg, p) for p in cfg.sizes},
      "samples_for_plot": {k: runs[k].result.samples[:8].tolist()
                           for k in ("base", "ddit", "static_late", "all_coarse")},
  }
