"""GPU checks of StereoAdapter-2's ConvSS2D (arXiv 2602.16915; our GPU protocol, README.md).

Two checks for `jaxpapers bench gpu` (jaxpapers/core/bench_gpu.py):
  * `check_kernel`: the selective-scan Pallas kernel compiled for the GPU (Triton), forward and
    backward (its custom VJP), fp32 and bf16, against the `lax.scan` reference at
    `[4, 4096, 128]`, N 16 (the sizes of one ConvSS2D direction at C_h 128, d_state 16); in a dry
    run in interpret mode at a tiny size, plus the GPU cases lowered for `cuda` from the CPU host.
  * `check_bench`: one ConvSS2D update at the 1/4 scale of a 480 x 640 image (120 x 160, L
    19,200), C_h 128, d_state 16, batch 8, bf16 activations (the scan's state is fp32 inside
    every path), with the scan as "sequential", "associative" and "pallas", against the ConvGRU
    update; forward and forward+backward, median of the repeats after compilation and 3 warm-up
    calls; XLA's temporaries of each compiled program (the associative scan materialises
    `[B, 4, D, N, L]` states, ~5 GB fp32 here). Speed target: the Pallas path's forward+backward
    at most the associative one's. In a dry run: 8 x 8 maps, C_h 8, batch 1, interpret mode,
    one repeat, the target kept unjudged.

Usage (GPU): `python -m jaxpapers.experiments.stereo_adapter2.gpu_bench --out gpu.json`;
`--tiny` runs the dry-run sizes on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import kernels_pallas
from jaxpapers.core import bench, bench_gpu
from jaxpapers.nn.conv_ss2d import ConvSS2D, SS2DConfig
from jaxpapers.nn.raft_stereo import ConvGRU

FULL = {"batch": 8, "height": 120, "width": 160, "hidden": 128, "d_state": 16, "repeats": 20}
TINY = {"batch": 1, "height": 8, "width": 8, "hidden": 8, "d_state": 4, "repeats": 1}
SCANS = ("sequential", "associative", "pallas")
TOL_FP32, TOL_BF16 = 1e-4, 3e-2  # max |kernel - reference| / max |reference|


def _kernel_case(batch, length, channels, n, dtype, tolerance, seed=0) -> bench_gpu.KernelCase:
  rng = np.random.default_rng(seed)
  normal = lambda *s: rng.standard_normal(s).astype(np.float32)
  args = (jnp.asarray(normal(batch, length, channels), dtype),
          jnp.asarray(np.logaddexp(0.0, normal(batch, length, channels) - 1.0), dtype),
          jnp.asarray(-np.exp(0.5 * normal(channels, n))),
          jnp.asarray(normal(batch, length, n), dtype), jnp.asarray(normal(batch, length, n), dtype),
          jnp.asarray(normal(channels)))

  def kernel(interpret):
    return lambda *a: kernels_pallas.selective_scan(*a, backend="gpu", interpret=interpret)

  return bench_gpu.KernelCase(
      kernel=kernel, args=args, grad_names=("u", "delta", "A", "B", "C", "D"),
      tolerance=tolerance, kernels=2,  # forward and backward pallas_calls
      reference=lambda *a: kernels_pallas.selective_scan(*a, implementation="sequential"))


def check_kernel(dry_run: bool, budget_s: float) -> dict:  # pylint: disable=unused-argument
  """`jaxpapers bench gpu`'s kernel check (see the module docstring)."""
  gpu = {"scan_fp32": _kernel_case(4, 4096, 128, 16, jnp.float32, TOL_FP32),
         "scan_bf16": _kernel_case(4, 4096, 128, 16, jnp.bfloat16, TOL_BF16)}
  cpu = {"scan_fp32": _kernel_case(1, 40, 8, 4, jnp.float32, TOL_FP32)} if dry_run else {}
  return bench_gpu.check_kernels(gpu, cpu, dry_run)


def _updaters(cfg: dict, dtype) -> dict:
  """name -> (graphdef, params in `dtype`) of the updates compared."""
  c = cfg["hidden"]
  out = {}
  for scan in SCANS:
    module = ConvSS2D(c, c, SS2DConfig(c, d_state=cfg["d_state"], scan=scan), rngs=nnx.Rngs(0))
    out[f"ss2d_{scan}"] = nnx.split(module)
  out["gru"] = nnx.split(ConvGRU(c, c, rngs=nnx.Rngs(0)))
  return {k: (g, jax.tree.map(lambda p: p.astype(dtype), s)) for k, (g, s) in out.items()}


def _time(fn, *args, repeats: int) -> dict:
  timing = bench.time_fn(fn, *args, warmup=3 if repeats > 1 else 0, repeats=repeats)
  return timing.to_dict()


def run(cfg: dict, budget_s: float | None = None) -> dict:
  """The update benchmark as a `bench_record` (cases past `budget_s` are listed as skipped)."""
  on_gpu = jax.default_backend() == "gpu"
  dtype = jnp.bfloat16
  start = time.perf_counter()
  rng = np.random.default_rng(0)
  shape = (cfg["batch"], cfg["height"], cfg["width"], cfg["hidden"])
  h, x = (jnp.asarray(rng.standard_normal(shape, np.float32), dtype) for _ in range(2))
  rows, skipped = [], []
  for name, (graphdef, params) in _updaters(cfg, dtype).items():
    if budget_s is not None and time.perf_counter() - start > budget_s:
      skipped.append(name)
      continue
    fwd = jax.jit(lambda p, h, x, g=graphdef: nnx.merge(g, p)(h, x))
    grad = jax.jit(jax.grad(lambda p, h, x, g=graphdef: jnp.sum(
        nnx.merge(g, p)(h, x).astype(jnp.float32)), argnums=(0, 1)))
    row = {"updater": name}
    for mode, fn in (("fwd", fwd), ("fwd_bwd", grad)):
      try:
        row[mode] = _time(fn, params, h, x, repeats=cfg["repeats"])
        row[f"{mode}_temp_bytes"] = int(fn.lower(params, h, x).compile()
                                        .memory_analysis().temp_size_in_bytes)
      except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory: reported
        row[mode] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    rows.append(row)
  at = {r["updater"]: r for r in rows}
  ratio = None
  if all("median_s" in at.get(k, {}).get("fwd_bwd", {}) for k in ("ss2d_pallas", "ss2d_associative")):
    ratio = (at["ss2d_pallas"]["fwd_bwd"]["median_s"]
             / at["ss2d_associative"]["fwd_bwd"]["median_s"])
  length = cfg["height"] * cfg["width"]
  return bench.bench_record(
      "stereo_adapter2_gpu", {"rows": rows, "skipped": skipped,
                              "associative_states_bytes": 4 * cfg["batch"] * 4 * cfg["hidden"]
                              * cfg["d_state"] * length,
                              "pallas_over_associative_fwd_bwd": ratio,
                              "wall_s": time.perf_counter() - start},
      description="one ConvSS2D update (three scan paths) vs the ConvGRU update, forward and "
                  "forward+backward, and XLA's temporaries",
      config={**cfg, "L": length, "dtype": "bfloat16", "interpret": not on_gpu,
              "budget_s": budget_s},
      targets={"pallas_over_associative_fwd_bwd": bench.target(ratio, "<=", 1.0)})


def check_bench(dry_run: bool, budget_s: float) -> dict:
  """`jaxpapers bench gpu`'s benchmark check: `run` at `FULL` (`TINY` in a dry run, whose speed
  target is kept as `dry_run_targets`, not judged)."""
  record = run(TINY if dry_run else FULL, budget_s=budget_s)
  out = {"record": {k: record[k] for k in ("config", "results")}}
  out["dry_run_targets" if dry_run else "targets"] = record["targets"]
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tiny", action="store_true", help="tiny CPU dry run (interpret mode)")
  parser.add_argument("--out", type=Path, default=Path("gpu_bench_stereo_adapter2.json"))
  args = parser.parse_args(argv)
  dry = args.tiny or jax.default_backend() != "gpu"
  out = {"kernel": check_kernel(dry, 120.0), "bench": check_bench(dry, 240.0)}
  args.out.write_text(json.dumps(bench._jsonable(out), indent=2) + "\n")  # pylint: disable=protected-access
  for row in out["bench"]["record"]["results"]["rows"]:
    show = lambda t: f"{t['median_s'] * 1e3:9.3f} ms" if "median_s" in t else t.get("error", "-")[:60]
    print(f"{row['updater']:18s} fwd {show(row.get('fwd', {}))}  fwd+bwd "
          f"{show(row.get('fwd_bwd', {}))}")
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
