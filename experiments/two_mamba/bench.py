"""`jaxpapers bench two_mamba`: CPU scaling of the 2Mamba forms and decode cost (arXiv 2602.17363).

1. Forward time of the squared attention for N in {1k, 2k, 4k, 8k, 16k} (B = 1, H = 2, d = 16):
   quadratic (XLA; queries in blocks of 512 against all keys, so memory stays O(N)), chunked
   (Mamba-2's SSD form, chunk 128) and recurrent (paper Alg. 6, token scan).
2. Decode, per token (H = 4, d = 64): the 2Mamba recurrent step (constant state) against a
   KV-cache softmax-with-decay step at contexts 1k-16k; bytes of each cache.

Times are medians after compilation and one warm-up call (`jaxpapers.core.bench`). The GPU
benchmark (our GPU protocol, see the README) is a separate prepared script, `gpu_bench.py`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.core import bench
from jaxpapers.nn import second_order
from jaxpapers.nn.mixers import MixerCache, kv_cache_decode_step

SEQ_LENS = (1024, 2048, 4096, 8192, 16384)
CONTEXTS = (1024, 2048, 4096, 8192, 16384)
QUERY_BLOCK = 512
MAX_CHUNKED_RATIO = 10.0  # time(16k) / time(2k) of the chunked form: linear is 8
# Keyword arguments for a quick run of the same logic (tests/core/test_bench.py runs it).
SMOKE_KWARGS = {"bench_two_mamba": {"seq_lens": (512,), "contexts": (64,)}}


def _time(fn, *args, repeats: int = 3) -> float:
  """Median seconds of `repeats` calls after compilation and one warm-up call."""
  return bench.time_fn(fn, *args, warmup=1, repeats=repeats).median


@jax.jit
def quadratic_blocked(q, k, v, log_decay):
  """Dense squared attention computed one block of queries at a time (O(N^2) time, O(N) memory)."""
  b, n, h, d = q.shape
  acs = jnp.cumsum(log_decay, axis=1)
  scale = d ** -0.5
  blocks = n // QUERY_BLOCK

  def block(i):
    rows = i * QUERY_BLOCK + jnp.arange(QUERY_BLOCK)
    qi = jax.lax.dynamic_slice_in_dim(q, i * QUERY_BLOCK, QUERY_BLOCK, 1)
    ai = jax.lax.dynamic_slice_in_dim(acs, i * QUERY_BLOCK, QUERY_BLOCK, 1)
    s = jnp.einsum("bqhd,bkhd->bhqk", qi, k) * scale
    expo = jnp.swapaxes(ai, 1, 2)[..., :, None] - jnp.swapaxes(acs, 1, 2)[..., None, :]
    causal = rows[:, None] >= jnp.arange(n)[None, :]
    w = s * s * jnp.exp(jnp.where(causal, jnp.minimum(expo, 0.0), -jnp.inf))
    num = jnp.einsum("bhqk,bkhd->bqhd", w, v)
    return num / jnp.maximum(jnp.swapaxes(jnp.sum(w, -1), 1, 2), 1e-6)[..., None]

  out = jax.lax.map(block, jnp.arange(blocks))  # [blocks, b, Q, h, d]
  return jnp.moveaxis(out, 0, 1).reshape(b, n, h, d)


def _interleaved(fn, inputs: dict, repeats: int) -> dict[int, list[float]]:
  """Times fn on every input, round-robin over the inputs `repeats` times (so load changes on a
  shared machine hit every length alike); returns seconds per call for each key."""
  timings = bench.time_interleaved({n: bench.Case(fn, args) for n, args in inputs.items()},
                                   warmup=1, repeats=repeats)
  return {n: list(t.all) for n, t in timings.items()}


def bench_forms(seq_lens=SEQ_LENS, heads: int = 2, dim: int = 16, chunk: int = 128,
                recurrent_max: int = 16384) -> list[dict]:
  chunked = jax.jit(lambda *a: second_order.chunked_attention(*a, chunk=chunk)[0])
  recurrent = jax.jit(lambda *a: second_order.recurrent_attention(*a)[0])
  inputs = {}
  for n in seq_lens:
    ks = jax.random.split(jax.random.key(n), 4)
    q, k, v = (jax.random.normal(ks[i], (1, n, heads, dim)) for i in range(3))
    inputs[n] = (q, k, v, -jax.nn.softplus(jax.random.normal(ks[3], (1, n, heads))))
  chunked_times = _interleaved(chunked, inputs, repeats=15)
  rows = []
  for n, args in inputs.items():
    row = {"seq": n, "quadratic_s": _time(quadratic_blocked, *args, repeats=1),
           "chunked_s": float(np.median(chunked_times[n])),
           "chunked_min_s": float(np.min(chunked_times[n]))}
    row["recurrent_s"] = _time(recurrent, *args, repeats=1) if n <= recurrent_max else None
    if n == seq_lens[0]:  # the three forms compute the same thing
      want = quadratic_blocked(*args)
      row["chunked_max_rel_dev"] = float(jnp.max(jnp.abs(chunked(*args) - want))
                                         / jnp.max(jnp.abs(want)))
    rows.append(row)
  return rows


def bench_decode(contexts=CONTEXTS, heads: int = 4,
                 dim: int = 64) -> dict:
  key = jax.random.key(0)
  q, k, v = (jax.random.normal(kk, (1, heads, dim)) for kk in jax.random.split(key, 3))
  a = jnp.full((1, heads), -0.01)
  state = second_order.init_decode_state(1, heads, dim)
  step = jax.jit(functools.partial(second_order.decode_step))
  out = {"heads": heads, "dim": dim,
         "recurrent_token_s": _time(step, state, q, k, v, a, repeats=20),
         "recurrent_state_bytes": second_order.state_bytes(state), "kv": []}
  kv_step = jax.jit(kv_cache_decode_step)
  for n in contexts:
    keys = jax.random.normal(key, (1, n, heads, dim))
    cache = MixerCache(conv=jnp.zeros((1, 0, 0)), position=jnp.asarray(n - 1, jnp.int32),
                       keys=keys, values=keys, acs=jnp.zeros((1, n, heads)),
                       acs_now=jnp.zeros((1, heads)))
    out["kv"].append({"context": n, "token_s": _time(kv_step, cache, q, k, v, a, repeats=20),
                      "cache_bytes": int(keys.nbytes * 2)})
  return out


def bench_two_mamba(seq_lens: tuple[int, ...] = SEQ_LENS, contexts: tuple[int, ...] = CONTEXTS
                    ) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
  """Both CPU benchmarks: (table rows, JSON record)."""
  forms = bench_forms(seq_lens)
  decode = bench_decode(contexts)
  first = {r["seq"]: r for r in forms}
  ratio = min_ratio = None
  if 16384 in first and 2048 in first:
    ratio = first[16384]["chunked_s"] / first[2048]["chunked_s"]
    min_ratio = first[16384]["chunked_min_s"] / first[2048]["chunked_min_s"]
  rows = [("N", "quadratic (XLA) s", "chunked s (median)", "recurrent s")]
  fmt = lambda x: "-" if x is None else f"{x:.4f}"
  rows += [(r["seq"], fmt(r["quadratic_s"]), fmt(r["chunked_s"]), fmt(r["recurrent_s"]))
           for r in forms]
  rows.append(("chunked 16k / 2k", f"{ratio:.2f} (median), {min_ratio:.2f} (min)" if ratio
               else "-", f"<= {MAX_CHUNKED_RATIO:g}", ""))
  rows += [("", "", "", ""), ("decode", "s / token", "cache bytes", "")]
  rows.append(("2Mamba state", f"{decode['recurrent_token_s'] * 1e3:.3f} ms",
               decode["recurrent_state_bytes"], ""))
  rows += [(f"KV cache @ {d['context']}", f"{d['token_s'] * 1e3:.3f} ms", d["cache_bytes"], "")
           for d in decode["kv"]]
  record = bench.bench_record(
      "two_mamba", {"forms": forms, "chunked_16k_over_2k": ratio,
                    "chunked_16k_over_2k_min": min_ratio, "decode": decode},
      description="2Mamba's squared attention on CPU: quadratic vs chunked vs recurrent forms; "
                  "recurrent decode vs a KV-cache step",
      config={"forms": {"seq_lens": list(seq_lens), "batch": 1, "heads": 2, "dim": 16,
                        "chunk": 128, "query_block": QUERY_BLOCK, "chunked_repeats": 15},
              "decode": {"contexts": list(contexts), "heads": 4, "dim": 64, "repeats": 20},
              "statistic": "median seconds after compilation and one warm-up call"},
      targets={"chunked_16k_over_2k": bench.target(ratio, "<=", MAX_CHUNKED_RATIO)})
  return rows, record
