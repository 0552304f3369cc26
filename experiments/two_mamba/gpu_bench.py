"""GPU benchmark of 2Mamba's second-order attention (arXiv 2602.17363; our GPU protocol,
see experiments/two_mamba/README.md). A prepared script for a GPU machine; about 5 minutes on one H200.

Compares, at B = 1, H = 16, d = 64, bf16 inputs with fp32 accumulation, causal, forward and
forward+backward:
  * our Pallas kernel, squared (2Mamba) and exponential (2Mamba-E) variants;
  * JAX's Pallas flash attention (`jax.experimental.pallas.ops.gpu.attention.mha`, causal);
  * cuDNN flash attention (`jax.nn.dot_product_attention(..., implementation="cudnn")`);
for N in {2k, 8k, 32k}; reports the squared kernel's time over Pallas flash's (target <= 1.3x).
Then the chunked form (chunk 128) against the squared kernel (forward) at N in {8k, 32k}, and
the decode step (recurrent state vs KV cache) at contexts 1k-128k.

Timed with `jaxpapers.core.bench.time_fn` (compilation apart, 3 warm-up calls, median of the
repeats); the JSON is a `jaxpapers.core.bench.bench_record` like every `bench_*.json`.

Usage (GPU): `python -m jaxpapers.experiments.two_mamba.gpu_bench --out gpu_bench.json`
CPU dry run of the same logic at a tiny size (interpret mode, no cuDNN):
`python -m jaxpapers.experiments.two_mamba.gpu_bench --tiny`

`jaxpapers bench gpu` (jaxpapers/core/bench_gpu.py, through `GPU_CHECKS` in run.py) calls two
checks of this module: `check_kernel` (both variants compiled by Triton against the dense
reference, forward and backward, bf16 and float32) and `check_bench` (`run` trimmed to `SUITE`:
N = 32768 first, then 8192, 10 repeats, within the suite's 80 s share).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import kernels_pallas
from jaxpapers.core import bench, bench_gpu
from jaxpapers.nn import second_order
from jaxpapers.nn.mixers import MixerCache, kv_cache_decode_step

FULL = {"seq": (2048, 8192, 32768), "heads": 16, "dim": 64, "block": 128,
        "chunked_seq": (8192, 32768), "decode_ctx": (1024, 8192, 32768, 131072), "repeats": 20}
TINY = {"seq": (128,), "heads": 2, "dim": 16, "block": 32, "chunked_seq": (128,),
        "decode_ctx": (256,), "repeats": 2}
# `jaxpapers bench gpu`'s share (under 6 minutes for the whole suite on one H200): the target
# size first, 10 repeats; the dry run at the smallest tiny size, one repeat, the squared kernel
# and Pallas flash only (`impls`: the attentions timed; default all).
SUITE = {"seq": (32768, 8192), "heads": 16, "dim": 64, "block": 128, "chunked_seq": (32768,),
         "decode_ctx": (1024, 32768, 131072), "repeats": 10}
SUITE_TINY = {"seq": (64,), "heads": 2, "dim": 16, "block": 32, "chunked_seq": (64,),
              "decode_ctx": (64,), "repeats": 1, "impls": ("square", "pallas_flash")}


def _time(fn, *args, repeats: int) -> dict:
  """Compile apart, 3 warm-up calls, then `repeats` timed calls (`Timing.to_dict`, seconds)."""
  timing = bench.time_fn(fn, *args, warmup=3, repeats=repeats)
  return {**timing.to_dict(), "p10_s": float(np.percentile(timing.all, 10)),
          "p90_s": float(np.percentile(timing.all, 90))}


def _guard(fn, *args, repeats):
  try:
    return _time(fn, *args, repeats=repeats)
  except Exception as e:  # a baseline that does not lower here is reported, not fatal
    return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def attention_fns(block: int, interpret: bool, with_cudnn: bool) -> dict:
  """name -> f(q, k, v, log_decay) for every attention under test."""
  from jax.experimental.pallas.ops.gpu import attention as pallas_flash  # pylint: disable=g-import-not-at-top

  def ours(variant):
    return lambda q, k, v, a: kernels_pallas.second_order_attention(
        q, k, v, a, variant=variant, block_q=block, block_k=block, interpret=interpret)

  def flash(q, k, v, a):  # pylint: disable=unused-argument
    sizes = pallas_flash.BlockSizes(block_q=block, block_k=block, block_q_dkv=min(block, 32),
                                    block_kv_dkv=min(block, 32), block_q_dq=min(block, 32),
                                    block_kv_dq=min(block, 32))
    return pallas_flash.mha(q, k, v, None, sm_scale=q.shape[-1] ** -0.5, causal=True,
                            block_sizes=sizes, interpret=interpret)

  fns = {"square": ours("square"), "exp": ours("exp"), "pallas_flash": flash}
  if with_cudnn:
    fns["cudnn"] = lambda q, k, v, a: jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                                                   implementation="cudnn")
  return fns


def _inputs(n, heads, dim, dtype):
  ks = jax.random.split(jax.random.key(n), 4)
  q, k, v = (jax.random.normal(ks[i], (1, n, heads, dim), dtype) for i in range(3))
  return q, k, v, -jax.nn.softplus(jax.random.normal(ks[3], (1, n, heads)))


def _past(deadline: float | None, skipped: list[str], label: str) -> bool:
  """True (and `label` noted in `skipped`) once `deadline` (perf_counter seconds) has passed."""
  if deadline is not None and time.perf_counter() > deadline:
    skipped.append(label)
    return True
  return False


def bench_kernels(cfg, dtype, interpret, with_cudnn, deadline=None, skipped=None) -> list[dict]:
  fns = attention_fns(cfg["block"], interpret, with_cudnn)
  fns = {name: fn for name, fn in fns.items() if name in cfg.get("impls", fns)}
  rows, skipped = [], [] if skipped is None else skipped
  for n in cfg["seq"]:
    args = _inputs(n, cfg["heads"], cfg["dim"], dtype)
    for name, fn in fns.items():
      if _past(deadline, skipped, f"{name} N={n}"):
        continue
      fwd = jax.jit(fn)
      grad = jax.jit(jax.grad(lambda q, k, v, a, fn=fn: jnp.sum(fn(q, k, v, a).astype(jnp.float32)),
                              argnums=(0, 1, 2)))
      row = {"seq": n, "impl": name, "fwd": _guard(fwd, *args, repeats=cfg["repeats"]),
             "fwd_bwd": _guard(grad, *args, repeats=cfg["repeats"])}
      if "median_s" in row["fwd"]:  # causal attention FLOPs: 4 B H N^2 d / 2
        row["fwd_tflops"] = 2 * cfg["heads"] * n * n * cfg["dim"] / row["fwd"]["median_s"] / 1e12
      rows.append(row)
  for n in cfg["seq"]:
    at = {r["impl"]: r for r in rows if r["seq"] == n}
    if "square" not in at or "pallas_flash" not in at:
      continue
    for mode in ("fwd", "fwd_bwd"):
      a, b = at["square"][mode], at["pallas_flash"][mode]
      if "median_s" in a and "median_s" in b:
        at["square"][f"{mode}_over_pallas_flash"] = a["median_s"] / b["median_s"]
  return rows


def bench_chunked(cfg, dtype, interpret, deadline=None, skipped=None) -> list[dict]:
  rows, skipped = [], [] if skipped is None else skipped
  chunked = jax.jit(lambda *a: second_order.chunked_attention(*a, chunk=128 if cfg["seq"][0] > 128
                                                              else 32)[0])
  kernel = jax.jit(lambda q, k, v, a: kernels_pallas.second_order_attention(
      q, k, v, a, block_q=cfg["block"], block_k=cfg["block"], interpret=interpret))
  for n in cfg["chunked_seq"]:
    if _past(deadline, skipped, f"chunked N={n}"):
      continue
    args = _inputs(n, cfg["heads"], cfg["dim"], dtype)
    rows.append({"seq": n, "chunked": _guard(chunked, *args, repeats=max(cfg["repeats"] // 4, 1)),
                 "quadratic_kernel": _guard(kernel, *args, repeats=max(cfg["repeats"] // 4, 1))})
  return rows


def bench_decode(cfg, deadline=None, skipped=None) -> dict:
  heads, dim = cfg["heads"], cfg["dim"]
  q, k, v = (jax.random.normal(kk, (1, heads, dim)) for kk in jax.random.split(jax.random.key(0), 3))
  a = jnp.full((1, heads), -0.01)
  state = second_order.init_decode_state(1, heads, dim)
  out = {"recurrent": _time(jax.jit(second_order.decode_step), state, q, k, v, a,
                            repeats=cfg["repeats"]),
         "state_bytes": second_order.state_bytes(state), "kv": []}
  for n in cfg["decode_ctx"]:
    if _past(deadline, [] if skipped is None else skipped, f"kv decode context={n}"):
      continue
    keys = jnp.zeros((1, n, heads, dim), jnp.bfloat16)
    cache = MixerCache(jnp.zeros((1, 0, 0)), jnp.asarray(n - 1, jnp.int32), keys=keys, values=keys,
                       acs=jnp.zeros((1, n, heads)), acs_now=jnp.zeros((1, heads)))
    out["kv"].append({"context": n, "cache_bytes_bf16": int(2 * keys.nbytes),
                      **_guard(jax.jit(kv_cache_decode_step), cache, q, k, v, a,
                               repeats=cfg["repeats"])})
  return out


def _driver() -> str | None:
  """nvidia-smi's GPU name and driver version, if it runs here."""
  try:
    return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                           "--format=csv,noheader"], capture_output=True, text=True,
                          timeout=20, check=False).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def run(tiny: bool = False, cfg: dict | None = None, budget_s: float | None = None) -> dict:
  """The whole benchmark, as a `bench_record`.

  Args:
    tiny: the same logic at `TINY` (also used off a GPU), Pallas kernels in interpret mode.
    cfg: the sizes (default `FULL` on a GPU, else `TINY`).
    budget_s: cases that would start after this many seconds are skipped (listed in
      `results["skipped"]`); None: no limit.
  """
  on_gpu = jax.default_backend() == "gpu"
  cfg = cfg or (TINY if tiny or not on_gpu else FULL)
  interpret = not on_gpu
  dtype = jnp.bfloat16
  start = time.perf_counter()
  deadline = None if budget_s is None else start + budget_s
  skipped: list[str] = []
  results = {"kernels": bench_kernels(cfg, dtype, interpret, on_gpu, deadline, skipped),
             "chunked": bench_chunked(cfg, dtype, interpret, deadline, skipped),
             "decode": bench_decode(cfg, deadline, skipped)}
  results["skipped"] = skipped
  results["nvidia_smi"] = _driver() if on_gpu else None
  results["wall_s"] = time.perf_counter() - start
  largest = [r for r in results["kernels"] if r["seq"] == max(cfg["seq"]) and r["impl"] == "square"]
  ratio = largest[0].get("fwd_over_pallas_flash") if largest else None
  return bench.bench_record(
      "two_mamba_gpu", results,
      description="2Mamba's Pallas second-order attention vs Pallas flash and cuDNN attention; "
                  "chunked form; recurrent decode vs KV cache",
      config={**{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
              "dtype": jnp.dtype(dtype).name, "interpret": interpret, "tiny": cfg is TINY,
              "budget_s": budget_s},
      targets={f"square_fwd_over_pallas_flash_n{max(cfg['seq'])}": bench.target(ratio, "<=", 1.3)})


def check_bench(dry_run: bool, budget_s: float) -> dict:
  """`jaxpapers bench gpu`'s benchmark check: `run` at `SUITE` (`SUITE_TINY` in a dry run, whose
  speed target is kept as `dry_run_targets`, not judged). Kernel correctness is `check_kernel`'s."""
  record = run(cfg=SUITE_TINY if dry_run else SUITE, budget_s=budget_s)
  out = {"record": {k: record[k] for k in ("config", "results")}}
  if dry_run:
    out["dry_run_targets"] = record["targets"]
  else:
    out["targets"] = record["targets"]
  return out


def _kernel_case(n, h, d, dtype, variant, tolerance, block, seed=0) -> bench_gpu.KernelCase:
  """The second-order kernel (`variant` "square" or "exp", tiles `block`) at [1, n, h, d] with a
  random decay."""
  rng = np.random.default_rng(seed)  # numpy: no compilation per shape
  q, k, v = (jnp.asarray(rng.standard_normal((1, n, h, d), np.float32), dtype) for _ in range(3))
  log_decay = jnp.asarray(-0.1 * np.logaddexp(0.0, rng.standard_normal((1, n, h), np.float32)))

  def kernel(interpret):
    return lambda q, k, v, a: kernels_pallas.second_order_attention(
        q, k, v, a, variant=variant, block_q=block, block_k=block, interpret=interpret)

  return bench_gpu.KernelCase(
      kernel=kernel, args=(q, k, v, log_decay), grad_names=("q", "k", "v", "log_decay"),
      tolerance=tolerance, kernels=3,  # forward, dkv, dq
      reference=lambda q, k, v, a: kernels_pallas.second_order_attention(
          q, k, v, a, variant=variant, implementation="xla"))


# Tolerances: max |kernel - reference| / max |reference| over the output and every gradient.
# bf16 inputs: weights and dS are rounded to bf16 before their dots (a few bf16 ulps, 2^-8, on
# the output and dq, dk, dv), and dlog_decay is a reverse cumulative sum of such terms along the
# sequence (1.2e-2 / 1.4e-2 for square / exp at the GPU cases' size, measured in interpret mode);
# float32: the kernels' dots run at HIGHEST precision (IEEE float32 on the GPU, not TF32; 1.5e-6).
TOL_BF16, TOL_FP32 = 5e-2, 1e-4


def check_kernel(dry_run: bool, budget_s: float) -> dict:  # pylint: disable=unused-argument
  """`jaxpapers bench gpu`'s kernel check: both second-order variants compiled for the GPU
  (Triton), bf16 and float32, forward and backward, against the dense reference at N = 1024,
  H = 4, d = 64 (blocks 128); in a dry run in interpret mode at N = 64 (blocks 32), plus the GPU
  cases lowered for `cuda` from the CPU host."""
  gpu = {f"{variant}_{name}": _kernel_case(1024, 4, 64, dtype, variant, tol, 128)
         for variant in ("square", "exp")
         for name, dtype, tol in (("bf16", jnp.bfloat16, TOL_BF16), ("fp32", jnp.float32, TOL_FP32))}
  cpu = {"square_fp32": _kernel_case(64, 2, 16, jnp.float32, "square", TOL_FP32, 32),
         "exp_bf16": _kernel_case(64, 2, 16, jnp.bfloat16, "exp", TOL_BF16, 32)} if dry_run else {}
  return bench_gpu.check_kernels(gpu, cpu, dry_run)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tiny", action="store_true", help="tiny CPU dry run (interpret mode)")
  parser.add_argument("--out", type=Path, default=Path("gpu_bench_two_mamba.json"))
  args = parser.parse_args(argv)
  record = run(args.tiny)
  args.out.write_text(json.dumps(record, indent=2) + "\n")
  for row in record["results"]["kernels"]:
    fwd, both = row["fwd"], row["fwd_bwd"]
    show = lambda t: f"{t['median_s'] * 1e3:9.3f} ms" if "median_s" in t else t["error"][:60]
    ratio = row.get("fwd_over_pallas_flash")
    print(f"N={row['seq']:6d} {row['impl']:13s} fwd {show(fwd)}  fwd+bwd {show(both)}"
          + (f"  fwd/flash {ratio:.2f}x" if ratio else ""))
  print(f"wrote {args.out} ({record['results']['wall_s']:.0f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
