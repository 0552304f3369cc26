"""`jaxpapers bench ddit`: sampler wall time, DDiT against the fixed-patch base (arXiv 2602.16968).

An untrained multi-patch DiT of the small preset's shape (width 48, depth 4, patches 2 and 4 on
16 x 16 images) samples the same noise with T Euler steps twice: at the base patch at every step,
and with a fixed DDiT-like schedule (3 warm-up steps at the base patch, then a given fraction of
the remaining steps at the coarse patch, the same for every sample). Both go through
`ddit_sample`'s grouped, jitted forwards after every shape was compiled; each figure is the
median of several runs. The wall-time ratio is reported beside the counted FLOP ratio; the two
can differ either way: the count leaves out the elementwise work (norms, softmax, GELU, patchify
transposes), which also shrinks with the token count, and small coarse calls pay more dispatch
per FLOP.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
from flax import nnx

from jaxpapers.core import bench
from jaxpapers.diffusion import ddit
from jaxpapers.nn import dit
from jaxpapers.nn import multipatch_dit as mp

SMOKE_KWARGS = {"bench_ddit": {"samples": 16, "steps": 6, "width": 16, "depth": 1, "repeats": 1}}


def bench_ddit(samples: int = 384, steps: int = 32, width: int = 48, depth: int = 4,
               coarse_fraction: float = 0.6, repeats: int = 3
               ) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
  """Returns (table rows, JSON record)."""
  config = mp.MultiPatchConfig(dit=dit.DiTConfig(input_shape=(16, 16), patch=(2, 2), width=width,
                                                 depth=depth, num_heads=4 if width % 4 == 0 else 2,
                                                 num_classes=1), scales=(2,))
  model = mp.MultiPatchDiT(config, rngs=nnx.Rngs(0))
  forwards = ddit.PatchForwards(model)
  rng = np.random.default_rng(0)
  noise = rng.standard_normal((samples, 16, 16, 1)).astype(np.float32)
  labels = np.zeros(samples, np.int32)
  eligible = steps - 3
  k = int(round(coarse_fraction * eligible))
  base = np.full((steps, samples), 2, np.int32)
  schedule = base.copy()
  schedule[3:3 + k] = 4
  times: dict[str, list[float]] = {"base": [], "ddit": []}
  for name, sched in (("base", base), ("ddit", schedule)):
    ddit.ddit_sample(forwards, noise, labels, steps, schedule=sched)  # compiles every shape
  for _ in range(repeats):
    for name, sched in (("base", base), ("ddit", schedule)):
      times[name].append(ddit.ddit_sample(forwards, noise, labels, steps, schedule=sched).seconds)
  base_s, ddit_s = (statistics.median(times[n]) for n in ("base", "ddit"))
  flop = ddit.flop_ratio(schedule, config)
  rows = [("schedule", "seconds", "time ratio", "FLOP ratio"),
          ("base (p=2)", f"{base_s:.2f}", "1.00", "1.000"),
          (f"DDiT-like ({k}/{eligible} coarse)", f"{ddit_s:.2f}", f"{ddit_s / base_s:.2f}",
           f"{flop:.3f}")]
  record = bench.bench_record(
      "ddit", {"base_seconds": base_s, "ddit_seconds": ddit_s, "time_ratio": ddit_s / base_s,
               "flop_ratio": flop, "all_seconds": times,
               "forward_flops": {"2": ddit.forward_flops(config, 2),
                                 "4": ddit.forward_flops(config, 4)}},
      description="Euler sampling through ddit_sample's grouped jitted forwards: base patch at "
                  "every step vs a fixed DDiT-like schedule, untrained small-preset DiT, CPU",
      config={"samples": samples, "steps": steps, "width": width, "depth": depth,
              "coarse_steps": k, "repeats": repeats,
              "statistic": "median seconds per full sampling run, after compilation"})
  return rows, record


if __name__ == "__main__":
  for row in bench_ddit()[0]:
    print(" | ".join(map(str, row)))
