"""The roofline claims and the CI checks of the co-design experiment (arXiv 2602.10377).

`roofline_figures` computes the Qwen2.5-0.5B test vector, the design space and its operator
intensities; `ci_checks` the spec's unit checks (bandwidth scaling, MoE with K = E against the
dense FFN, a toy Pareto space against brute force, a fit on a known law plus noise, and our
decode step against the model's full forward).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.tiny_lm import TinyLM
from jaxpapers.roofline import arch as arch_lib
from jaxpapers.roofline import calibrate, latency, loss_law, pareto, space
from jaxpapers.roofline.devices import device

from .config import CodesignConfig


def space_spec(c: CodesignConfig) -> space.SpaceSpec:
  precision = latency.PRECISIONS[c.precision]
  return space.SpaceSpec(vocab=c.vocab, tied=c.tied, max_weight_bytes=c.memory_budget_gb * 1e9,
                         weight_bytes=precision.weight_bytes)


def _op_intensity(ops: dict[str, latency.OpCost]) -> dict[str, np.ndarray]:
  """Each operator's intensity per candidate (NaN where the candidate lacks the operator)."""
  return {name: np.where(np.asarray(op.calls) > 0, op.intensity, np.nan) for name, op in ops.items()}


def roofline_figures(c: CodesignConfig) -> dict:
  """Qwen2.5-0.5B's test vector and the design space's sizes and intensities on `c.device`."""
  dev, p = device(c.device), latency.PRECISIONS[c.precision]
  fp16 = latency.PRECISIONS["fp16"]
  agx = device("agx_orin")
  qwen = arch_lib.qwen25_05b()
  counts = arch_lib.param_counts(qwen)
  prefill = {pos: latency.totals(latency.prefill_ops(qwen, 512, fp16, pos))[0]
             for pos in latency.HEAD_POSITIONS}
  candidates = space.design_space(space_spec(c))
  dec = _op_intensity(latency.decode_ops(candidates, c.context, p))
  pre = _op_intensity(latency.prefill_ops(candidates, c.prompt, p))
  d = np.asarray(candidates.d_model)
  ridge = dev.ridge(p.compute)
  return {
      "qwen_params": float(counts.total),
      "qwen_params_non_embedding": float(counts.non_embedding_total),
      "qwen_params_released": float(arch_lib.param_counts(
          arch_lib.qwen25_05b(with_biases_and_norms=True)).total),
      "qwen_weight_bytes_fp16": float(2 * counts.total),
      "qwen_tpot_ms_context0": float(latency.tpot(qwen, 0, agx, fp16)) * 1e3,
      "qwen_tpot_ms_context": float(latency.tpot(qwen, c.context, agx, fp16)) * 1e3,
      "qwen_kv_bytes_per_token": float(arch_lib.kv_bytes_per_token(qwen, fp16.kv_bytes)),
      "qwen_prefill_tflop_head_all": float(prefill["all"]) / 1e12,
      "qwen_prefill_tflop_head_last": float(prefill["last"]) / 1e12,
      "qwen_ttft_ms_head_all": float(latency.ttft(qwen, 512, agx, fp16, head_positions="all")) * 1e3,
      "qwen_ttft_ms_head_last": float(latency.ttft(qwen, 512, agx, fp16)) * 1e3,
      "grid_points": len(space.grid(space_spec(c))),
      "candidates": len(candidates),
      "moe_candidates": int(np.sum(candidates.is_moe)),
      "ridge": ridge,
      "decode_intensity_max": float(np.nanmax(np.stack(list(dec.values())))),
      "decode_intensity_max_by_op": {k: float(np.nanmax(v)) for k, v in dec.items()},
      "prefill_intensity_by_op": {
          k: {"min": float(np.nanmin(v)), "median": float(np.nanmedian(v)),
              "max": float(np.nanmax(v)), "below_ridge_share": float(np.nanmean(v < ridge))}
          for k, v in pre.items()},
      "prefill_qkvo_intensity_d640_max": float(np.nanmax(pre["qkvo"][d == 640])),
      "prefill_qkvo_below_ridge_widths": sorted({int(x) for x in d[pre["qkvo"] < ridge]}),
  }


def brute_force_pareto(latency_: np.ndarray, loss: np.ndarray) -> np.ndarray:
  """Non-dominated mask by comparing every pair (the reference of `pareto.pareto_mask`)."""
  n = latency_.size
  keep = np.ones(n, bool)
  for i in range(n):
    no_worse = (latency_ <= latency_[i]) & (loss <= loss[i])
    better = (latency_ < latency_[i]) | (loss < loss[i])
    duplicate_before = (latency_ == latency_[i]) & (loss == loss[i]) & (np.arange(n) < i)
    keep[i] = not np.any(no_worse & better) and not np.any(duplicate_before)
  return keep


def toy_pareto(n: int, seed: int = 0) -> dict:
  """A toy space with a known frontier: `n // 5` points on loss = 1 / latency, the rest
  strictly above it; `pareto_mask` against that answer and against brute force."""
  rng = np.random.default_rng(seed)
  lat = rng.uniform(1, 10, n)
  on_front = np.zeros(n, bool)
  on_front[rng.choice(n, n // 5, replace=False)] = True
  loss = 1 / lat + np.where(on_front, 0.0, rng.uniform(0.05, 1.0, n))
  # a point above the curve may still be undominated if no frontier point lies to its left
  # below it: the known answer counts only dominance by the frontier points.
  front_lat, front_loss = lat[on_front], loss[on_front]
  dominated = np.array([np.any((front_lat <= lat[i]) & (front_loss < loss[i])) for i in range(n)])
  known = on_front | ~dominated
  brute = brute_force_pareto(lat, loss)
  mask = pareto.pareto_mask(lat, loss)
  return {"mismatch_known": int(np.sum(mask != (known & brute))),
          "mismatch_brute": int(np.sum(mask != brute)),
          "frontier_points_known": int(np.sum(on_front))}


def known_law_fit(configs: int = 40, noise: float = 0.01, seed: int = 0) -> dict:
  """Losses from the REDUCED law with known coefficients plus `noise` relative noise on
  `configs` random dense and MoE sizes; the refit's exponent errors."""
  rng = np.random.default_rng(seed)
  n_active = 10 ** rng.uniform(4, 6, configs)
  ratio = np.where(rng.random(configs) < 0.5, 1.0, 2 ** rng.integers(1, 5, configs))
  x = {"n_active": n_active, "n_total": n_active * ratio}
  truth = np.array([1.2, 0.6, 0.35, 0.4, 0.5])
  loss = loss_law.REDUCED(x, truth) * (1 + noise * rng.standard_normal(configs))
  fitted = loss_law.fit(loss_law.REDUCED, x, loss)
  rel = np.abs(fitted.theta / truth - 1)
  return {"truth": dict(zip(loss_law.REDUCED.params, truth.tolist())), "fit": fitted.as_dict(),
          "a_rel_error": float(rel[2]), "b_rel_error": float(rel[4]), "r2": fitted.r2}


def unit_checks() -> dict:
  """Bandwidth scaling, MoE K = E vs dense, on the design space and Qwen2.5-0.5B."""
  agx = device("agx_orin")
  candidates = space.design_space()
  base = latency.tpot(candidates, 1024, agx)
  doubled = latency.tpot(candidates, 1024, agx.scaled(bandwidth=2.0))
  # MoE with K = E experts of width f_e against one dense FFN of width E f_e (router apart)
  d, e, fe = 512, 8, 256
  moe = arch_lib.Arch(d, 1, 8, 8, 64, num_experts=e, top_k=e, expert_ffn=fe, vocab=1000)
  dense = arch_lib.Arch(d, 1, 8, 8, 64, ffn=e * fe, vocab=1000)
  gaps = []
  for phase in ("decode", "prefill"):
    if phase == "decode":
      mo, de = latency.decode_ops(moe, 64)["moe"], latency.decode_ops(dense, 64)["ffn"]
      router = (2 * d * e, 2 * d * e)
    else:
      mo, de = latency.prefill_ops(moe, 64)["moe"], latency.prefill_ops(dense, 64)["ffn"]
      router = (2 * 64 * d * e, 2 * d * e)
    gaps += [abs(float(mo.flops) - router[0] - float(de.flops)) / float(de.flops),
             abs(float(mo.bytes) - router[1] - (float(de.bytes) - 2 * 64 * (d + 3 * e * fe)
                                                 * (phase == "prefill"))) / float(de.bytes)]
  return {"bandwidth_ratio_max_gap": float(np.max(np.abs(doubled / base - 0.5))),
          "moe_k_equals_e_max_gap": float(max(gaps))}


def decode_vs_forward(seed: int = 0) -> float:
  """Max |logits| gap between our KV-cache decode step and TinyLM's causal forward (fp32)."""
  d, l, heads, vocab, t = 32, 2, 4, 64, 12
  model = TinyLM(vocab, d, l, mixer=lambda r: CausalSelfAttention(d, heads, rngs=r),
                 mlp_hidden=4 * d, rngs=nnx.Rngs(seed))
  tokens = jax.random.randint(jax.random.key(seed + 1), (1, t), 0, vocab)
  full = model(tokens)[0]
  step, state = calibrate.jitted_decode(model)
  cache = calibrate.empty_cache(model, t)
  out = []
  for pos in range(t):
    logits, cache = step(state, cache, tokens[0, pos], jnp.int32(pos))
    out.append(logits)
  return float(jnp.max(jnp.abs(jnp.stack(out) - full)))


