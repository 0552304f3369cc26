"""`jaxpapers bench stereo_adapter2`: the three selective-scan paths on CPU (arXiv 2602.16915's
ConvSS2D hot path; `kernels_pallas.selective_scan`).

For L in {1k, 4k, 16k} (batch 1, 16 channels, N 8, fp32): "sequential" (`lax.scan`),
"associative" (`lax.associative_scan`, every state materialised) and "pallas" (the GPU kernel in
interpret mode on CPU: its time says nothing about a GPU, its memory plan does), forward and
forward+backward (gradients of every input). Times are medians after compilation and one
warm-up call (`jaxpapers.core.bench`); memory is XLA's plan of the compiled program
(`memory_analysis()`: temporaries, the buffers a program needs beyond its inputs and outputs),
set against the bytes of all `L` states `[batch, L, channels, N]` fp32. The target: the Pallas
path's forward+backward temporaries at the largest L stay under half of all states (it keeps only
chunk-boundary states), where the associative scan's exceed them.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import kernels_pallas
from jaxpapers.core import bench

LENGTHS = (1024, 4096, 16384)
IMPLEMENTATIONS = ("sequential", "associative", "pallas")
MAX_PALLAS_TEMP_OVER_STATES = 0.5
# Keyword arguments for a quick run of the same logic (tests/core/test_bench.py runs it).
SMOKE_KWARGS = {"bench_stereo_adapter2": {"lengths": (64,), "repeats": 1}}


def scan_inputs(length: int, batch: int = 1, channels: int = 16, n: int = 8, seed: int = 0):
  """Random `(u, delta, A, B, C, D)` of the scan at one length (delta after a softplus)."""
  rng = np.random.default_rng(seed)  # numpy: no compilation per shape
  normal = lambda *s: jnp.asarray(rng.standard_normal(s, np.float32))
  u, delta = normal(batch, length, channels), jax.nn.softplus(normal(batch, length, channels) - 1)
  A = -jnp.exp(0.5 * normal(channels, n))
  return u, delta, A, normal(batch, length, n), normal(batch, length, n), normal(channels)


def scan_fns(implementation: str) -> tuple[Any, Any]:
  """(forward, forward+backward) jitted functions of one implementation."""
  def fwd(*args):
    return kernels_pallas.selective_scan(*args, implementation=implementation)

  def loss(*args):
    return jnp.sum(jnp.sin(fwd(*args)))

  return jax.jit(fwd), jax.jit(jax.value_and_grad(loss, argnums=tuple(range(6))))


def compiled(fn, *args) -> tuple[Any, float, int | None]:
  """`(executable, compile seconds, XLA's temporaries in bytes or None)` of `fn(*args)`."""
  start = time.perf_counter()
  executable = fn.lower(*args).compile()
  seconds = time.perf_counter() - start
  analysis = executable.memory_analysis()
  return executable, seconds, None if analysis is None else int(analysis.temp_size_in_bytes)


def bench_stereo_adapter2(lengths: tuple[int, ...] = LENGTHS, channels: int = 16, n: int = 8,
                          repeats: int = 3) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
  """The CPU benchmark: (table rows, JSON record)."""
  fns = {impl: scan_fns(impl) for impl in IMPLEMENTATIONS}
  rows_out = []
  for length in lengths:
    args = scan_inputs(length, channels=channels, n=n)
    states = 4 * length * channels * n
    ref_y = fns["sequential"][0](*args)
    for impl, pair in fns.items():
      row = {"L": length, "impl": impl, "states_bytes": states}
      for mode, fn in zip(("fwd", "fwd_bwd"), pair):
        executable, seconds, temp = compiled(fn, *args)
        row[mode] = bench.time_fn(executable, *args, warmup=1, repeats=repeats)
        row[f"{mode}_compile_s"], row[f"{mode}_temp_bytes"] = seconds, temp
        if mode == "fwd":
          row["max_abs_diff_vs_sequential"] = float(jnp.max(jnp.abs(executable(*args) - ref_y)))
      rows_out.append(row)
  largest = {r["impl"]: r for r in rows_out if r["L"] == max(lengths)}
  ratio = lambda impl: (None if largest[impl]["fwd_bwd_temp_bytes"] is None
                        else largest[impl]["fwd_bwd_temp_bytes"] / largest[impl]["states_bytes"])
  fmt_b = lambda b: "-" if b is None else f"{b / 2**20:.2f}"
  rows = [("L", "path", "fwd ms", "fwd+bwd ms", "fwd temp MiB", "fwd+bwd temp MiB",
           "all states MiB", "max |y - seq|")]
  rows += [(r["L"], r["impl"], f"{r['fwd'].median * 1e3:.2f}", f"{r['fwd_bwd'].median * 1e3:.2f}",
            fmt_b(r["fwd_temp_bytes"]), fmt_b(r["fwd_bwd_temp_bytes"]), fmt_b(r["states_bytes"]),
            f"{r['max_abs_diff_vs_sequential']:.1e}") for r in rows_out]
  record = bench.bench_record(
      "stereo_adapter2", {"rows": rows_out,
                          "fwd_bwd_temp_over_states": {i: ratio(i) for i in IMPLEMENTATIONS}},
      description="selective scan on CPU: lax.scan vs associative_scan vs the Pallas kernel "
                  "(interpret mode), forward and forward+backward time and XLA's temporaries",
      config={"lengths": list(lengths), "batch": 1, "channels": channels, "N": n,
              "dtype": "float32", "chunk": "default (32)", "repeats": repeats,
              "statistic": "median seconds after compilation and one warm-up call; memory: "
                           "compiled.memory_analysis().temp_size_in_bytes"},
      targets={f"pallas_fwd_bwd_temp_over_states_L{max(lengths)}": bench.target(
          ratio("pallas"), "<=", MAX_PALLAS_TEMP_OVER_STATES)})
  return rows, record
