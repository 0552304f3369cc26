"""MoE layer benchmark: dense, ragged and blocked dispatch (jaxpapers.nn.moe, arXiv 2602.17004).

One jitted step is `value_and_grad` of `sum(y ** 2)` over the layer output, with respect to
every `nnx.Param` and to the input (the backward pass an LM trains through). Shapes: 2048
tokens (4 x 512), d=128, expert width F=256, top-2, one shared expert, E in {8, 64} (at 4096
tokens one dense E=64 step took 5-8 s on the shared 2-core CPU; 2048 keeps it near 1-3 s).
Reported: tokens/s (forward + backward), the median over interleaved repeats, each repeat timed
over enough steps to last about a second; compile time is measured apart and excluded
(`jaxpapers.core.bench.time_interleaved`). Each path's speed ratio over dense is the median of
the per-repeat ratios.

Dense dispatch runs every expert on every token, E/K times the useful expert FLOPs; ragged
dispatch sorts the assignments and uses `jax.lax.ragged_dot`, paying for a sort, gathers and
scatters instead. Which one wins depends on E and on the backend; the record says which is
faster at each E. On CPU, jax 0.10 has no ragged kernel: `ragged_dot` is lowered through
`_ragged_dot_general_impl`, which masks the `[N K, d]` rows into an `[E, N K, d]` operand and
contracts over (expert, d) -- K times the FLOPs of dense dispatch. Ragged dispatch only pays
off where XLA emits a real ragged dot (GPU, TPU). Blocked dispatch (MegaBlocks, arXiv
2211.15841) pads each expert's sorted rows to whole blocks and runs batched matmuls, one per
block, with at most `E (block - 1)` padding rows of extra work: the fast path on CPU.
"""

from __future__ import annotations

import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.core import bench
from jaxpapers.nn.moe import MoE

BATCH, SEQ, D_MODEL, WIDTH, TOP_K = 4, 512, 128, 256, 2
EXPERTS = (8, 64)
DISPATCHES = ("dense", "ragged", "blocked")
SORTED = DISPATCHES[1:]  # each compared with dense
REPEATS = 5
TARGET_SECONDS = 1.0  # length of one timed repeat


def _step(num_experts: int, dispatch: str, batch: int, seq: int) -> bench.Case:
  """The jitted fwd+bwd step of one layer and its arguments."""
  model = MoE(D_MODEL, num_experts, TOP_K, WIDTH, dispatch=dispatch, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((batch, seq, D_MODEL)), jnp.float32)

  def loss(params, x):
    y, _ = nnx.merge(graphdef, params, rest)(x)
    return jnp.sum(y ** 2)

  return bench.Case(jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (params, x))


def bench_moe(experts: tuple[int, ...] = EXPERTS, batch: int = BATCH, seq: int = SEQ,
              repeats: int = REPEATS, target_seconds: float = TARGET_SECONDS
              ) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
  """Returns (table rows, JSON record)."""
  tokens = batch * seq
  results = []
  for num_experts in experts:
    # Interleaved, so background load hits both alike; each repeat lasts about target_seconds.
    timings = bench.time_interleaved(
        {dispatch: _step(num_experts, dispatch, batch, seq) for dispatch in DISPATCHES},
        warmup=1, repeats=repeats, min_repeat_seconds=target_seconds)
    for dispatch, timing in timings.items():
      results.append({"num_experts": num_experts, "dispatch": dispatch,
                      "tokens_per_second": timing.rate(tokens),
                      "compile_seconds": timing.compile_seconds, "steps_per_repeat": timing.number,
                      "all_rates": timing.rates(tokens), "timing": timing})
  by_key = {(r["num_experts"], r["dispatch"]): r for r in results}
  # Paired per-repeat ratios (same repeat, back to back) resist the shared machine's load
  # swings better than a ratio of medians; "faster" follows the median paired ratios.
  speedup = {name: {str(e): float(statistics.median(np.array(by_key[e, name]["all_rates"])
                                                   / np.array(by_key[e, "dense"]["all_rates"])))
                    for e in experts} for name in SORTED}
  faster = {str(e): max(DISPATCHES, key=lambda name: 1.0 if name == "dense" else speedup[name][str(e)])
            for e in experts}
  record = bench.bench_record(
      "trinity_moe",
      {"results": results, "faster": faster,
       **{f"{name}_speedup_over_dense": speedup[name] for name in SORTED}},
      description="MoE layer fwd+bwd: dense vs ragged (jax.lax.ragged_dot) vs blocked dispatch",
      config={"paper": "2602.17004",
              "step": "jit(value_and_grad(sum(y**2))) w.r.t. nnx.Param and x",
              "tokens": tokens, "batch": batch, "seq": seq, "d_model": D_MODEL,
              "expert_width": WIDTH, "top_k": TOP_K, "num_shared": 1, "experts": list(experts),
              "repeats": repeats, "target_seconds_per_repeat": target_seconds})
  rows = [("experts", "dispatch", "tokens/s (median)", "ms/step", "compile s")]
  for r in results:
    rows.append((str(r["num_experts"]), r["dispatch"], f"{r['tokens_per_second']:.0f}",
                 f"{1e3 * tokens / r['tokens_per_second']:.1f}", f"{r['compile_seconds']:.2f}"))
  for e in experts:
    rows.append((str(e), f"fastest: {faster[str(e)]}",
                 ", ".join(f"{name}/dense x{speedup[name][str(e)]:.2f}" for name in SORTED), "", ""))
  return rows, record


if __name__ == "__main__":
  for row in bench_moe()[0]:
    print(" | ".join(row))
