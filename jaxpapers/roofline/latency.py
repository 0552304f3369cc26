"""Per-operator roofline latency of prefill (TTFT) and decode (TPOT) at batch 1.

The latency model of "Hardware Co-Design Scaling Laws via Roofline Modelling for On-Device LLMs"
(Sun et al., arXiv 2602.10377, section 3; its exact formulas were not available to us, so this
is the standard roofline in the spec's form). Every operator o costs

  t_o = max(F_o / (P_peak eta_c), M_o / (BW eta_m)) + overhead

and a phase is the sum over its operators (each layer's, times the layers that have it, and the
LM head). With b_w, b_kv, b_a the bytes of a weight, a KV entry and an activation, g = n_h / n_kv,
d_q = n_h d_h (= d), m FFN matrices, per layer:

Prefill of s tokens:
  QKV+O   F = 2 s P_att               M = b_w P_att + b_a s (2 d_q + 2 d_kv) 2
  attn    F = 2 s^2 d_q (causal)      M = b_kv 2 s d_kv + b_a s d_q
  FFN     F = 2 s m d f               M = b_w m d f + b_a s (d + m f)
  MoE     F = 2 s (K + N_s) m d f_e + 2 s d E
          M = b_w m d f_e (E_touched + N_s) + b_w d E,  E_touched = E (1 - (1 - K/E)^s)
Decode at context c:
  QKV+O   F = 2 P_att                 M = b_w P_att
  attn    F = 4 c d_q                 M = b_kv 2 c d_kv (the whole KV cache)
  FFN     F = 2 m d f                 M = b_w m d f
  MoE     F = 2 (K + N_s) m d f_e + 2 d E      M = b_w (m (K + N_s) d f_e + d E)
LM head: F = 2 n d V with n = s (every position) or 1 (the last only), M = b_w d V.

(P_att are the projection weights, d_kv = n_kv d_h.) With d_q = d and m = 3 these are the spec's
formulas. A request costs TTFT(s) + sum_{c = s}^{s + n_out - 1} TPOT(c); every decode operator's
intensity is independent of c, so TPOT is affine in c and that sum is n_out TPOT(s + (n_out -
1) / 2) exactly. Memory feasibility: b_w N_total + l 2 d_kv b_kv (s + n_out) <= the budget.

All functions take an `Arch` whose fields may be arrays (a design space) and return arrays.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from jaxpapers.roofline.arch import Arch, attention_matrices, param_counts
from jaxpapers.roofline.devices import Device

HEAD_POSITIONS = ("all", "last")


@dataclasses.dataclass(frozen=True)
class Precision:
  """Bytes per weight, KV entry and activation, and the compute precision of the GEMMs.

  Attributes:
    weight_bytes: b_w (2 FP16/BF16, 1 INT8, 0.5 INT4).
    kv_bytes: b_kv.
    act_bytes: b_a.
    compute: key of the device's `peak` ("fp16" or "int8").
  """

  weight_bytes: float = 2.0
  kv_bytes: float = 2.0
  act_bytes: float = 2.0
  compute: str = "fp16"


PRECISIONS = {
    "fp16": Precision(2.0, 2.0, 2.0, "fp16"),
    "int8": Precision(1.0, 2.0, 2.0, "int8"),  # W8A8 GEMMs on the INT8 tensor cores
    "int4": Precision(0.5, 2.0, 2.0, "fp16"),  # weight-only INT4, dequantized to FP16 GEMMs
    "fp32": Precision(4.0, 4.0, 4.0, "fp32"),  # what our CPU decode step runs
}


@dataclasses.dataclass(frozen=True)
class Efficiency:
  """Efficiency factors eta_c (compute) and eta_m (memory), and a fixed cost per operator.

  The defaults are the pure roofline; `jaxpapers.roofline.calibrate` fits them to timings.
  """

  compute: float = 1.0
  memory: float = 1.0
  overhead: float = 0.0  # seconds per operator call (launch, dispatch)


class OpCost(NamedTuple):
  """One operator: FLOPs and bytes per call, and calls per pass (layers; 1 for the head)."""

  flops: np.ndarray
  bytes: np.ndarray
  calls: np.ndarray

  @property
  def intensity(self) -> np.ndarray:
    """Arithmetic intensity F / M (FLOP/byte); NaN where the operator does no work."""
    with np.errstate(divide="ignore", invalid="ignore"):
      return np.where(self.bytes > 0, self.flops / np.where(self.bytes > 0, self.bytes, 1), np.nan)


def _moe_costs(a: Arch, tokens: np.ndarray, p: Precision, decode: bool) -> OpCost:
  d, m, fe = (np.asarray(x, float) for x in (a.d_model, a.mlp_matrices, a.expert_ffn))
  e, k, shared = (np.asarray(x, float) for x in (a.num_experts, a.top_k, a.num_shared))
  flops = 2 * tokens * (k + shared) * m * d * fe + 2 * tokens * d * e
  if decode:
    touched = k
  else:
    touched = e * (1 - (1 - k / np.maximum(e, 1)) ** tokens)
  return OpCost(flops, p.weight_bytes * (m * d * fe * (touched + shared) + d * e), a.moe_layers)


def prefill_ops(a: Arch, seq_len: int | np.ndarray, precision: Precision = PRECISIONS["fp16"],
                head_positions: str = "all") -> dict[str, OpCost]:
  """Per-operator FLOPs and bytes of prefilling `seq_len` tokens (module docstring).

  Args:
    a: the architecture(s).
    seq_len: prompt length s.
    precision: bytes and compute precision.
    head_positions: "all" (the LM head at every position, what a forward pass computes) or
      "last" (only the last position's logits, what generation needs).
  """
  if head_positions not in HEAD_POSITIONS:
    raise ValueError(f"head_positions must be one of {HEAD_POSITIONS}, got {head_positions!r}")
  s = np.asarray(seq_len, float)
  p, layers = precision, np.asarray(a.num_layers)
  d, f, m = (np.asarray(x, float) for x in (a.d_model, a.ffn, a.mlp_matrices))
  dq, dkv = a.q_width.astype(float), a.kv_width.astype(float)
  patt = attention_matrices(a).astype(float)
  v = np.asarray(a.vocab, float)
  head_tokens = s if head_positions == "all" else 1.0
  return {
      "qkvo": OpCost(2 * s * patt, p.weight_bytes * patt + p.act_bytes * s * (2 * dq + 2 * dkv) * 2,
                     layers),
      "attention": OpCost(2 * s**2 * dq, p.kv_bytes * 2 * s * dkv + p.act_bytes * s * dq, layers),
      "ffn": OpCost(2 * s * m * d * f, p.weight_bytes * m * d * f + p.act_bytes * s * (d + m * f),
                    a.dense_ffn_layers),
      "moe": _moe_costs(a, s, p, decode=False),
      "head": OpCost(2 * head_tokens * d * v, p.weight_bytes * d * v, np.ones_like(layers)),
  }


def decode_ops(a: Arch, context: int | np.ndarray,
               precision: Precision = PRECISIONS["fp16"]) -> dict[str, OpCost]:
  """Per-operator FLOPs and bytes of decoding one token at context length `context`."""
  c = np.asarray(context, float)
  p, layers = precision, np.asarray(a.num_layers)
  d, f, m = (np.asarray(x, float) for x in (a.d_model, a.ffn, a.mlp_matrices))
  dq, dkv = a.q_width.astype(float), a.kv_width.astype(float)
  patt = attention_matrices(a).astype(float)
  v = np.asarray(a.vocab, float)
  return {
      "qkvo": OpCost(2 * patt, p.weight_bytes * patt, layers),
      "attention": OpCost(4 * c * dq, p.kv_bytes * 2 * c * dkv, layers),
      "ffn": OpCost(2 * m * d * f, p.weight_bytes * m * d * f, a.dense_ffn_layers),
      "moe": _moe_costs(a, np.ones_like(c), p, decode=True),
      "head": OpCost(2 * d * v, p.weight_bytes * d * v, np.ones_like(layers)),
  }


def op_times(ops: dict[str, OpCost], device: Device, precision: Precision = PRECISIONS["fp16"],
             efficiency: Efficiency = Efficiency()) -> dict[str, np.ndarray]:
  """Seconds per pass of each operator: calls x (max(compute, memory time) + overhead).

  An operator with no calls (an FFN kind the model lacks) or no work costs nothing.
  """
  peak = device.peak[precision.compute] * efficiency.compute
  bandwidth = device.bandwidth * efficiency.memory
  out = {}
  for name, op in ops.items():
    roof = np.maximum(op.flops / peak, op.bytes / bandwidth)
    per_call = np.where(op.flops + op.bytes > 0, roof + efficiency.overhead, 0.0)
    out[name] = np.asarray(op.calls) * per_call
  return out


def ttft(a: Arch, seq_len: int, device: Device, precision: Precision = PRECISIONS["fp16"],
         efficiency: Efficiency = Efficiency(), head_positions: str = "last") -> np.ndarray:
  """Time to first token: the prefill of `seq_len` tokens (seconds); by default only the last
  position goes through the head, as in generation."""
  times = op_times(prefill_ops(a, seq_len, precision, head_positions), device, precision, efficiency)
  return sum(times.values())


def tpot(a: Arch, context: int | np.ndarray, device: Device,
         precision: Precision = PRECISIONS["fp16"], efficiency: Efficiency = Efficiency()) -> np.ndarray:
  """Time per output token at context length `context` (seconds)."""
  return sum(op_times(decode_ops(a, context, precision), device, precision, efficiency).values())


def end_to_end(a: Arch, prompt: int, new_tokens: int, device: Device,
               precision: Precision = PRECISIONS["fp16"],
               efficiency: Efficiency = Efficiency()) -> np.ndarray:
  """TTFT(prompt) + sum of TPOT(c) for c = prompt .. prompt + new_tokens - 1 (seconds)."""
  mid = prompt + (new_tokens - 1) / 2
  return (ttft(a, prompt, device, precision, efficiency)
          + new_tokens * tpot(a, mid, device, precision, efficiency))


def memory_bytes(a: Arch, tokens: int, precision: Precision = PRECISIONS["fp16"]) -> np.ndarray:
  """Weights plus the KV cache of `tokens` tokens: b_w N_total + l 2 d_kv b_kv tokens (bytes)."""
  return (precision.weight_bytes * param_counts(a).total
          + np.asarray(a.num_layers) * 2 * a.kv_width * precision.kv_bytes * tokens)


def totals(ops: dict[str, OpCost]) -> tuple[np.ndarray, np.ndarray]:
  """(FLOPs, bytes) of a whole pass: every operator times its calls."""
  flops = sum(np.asarray(op.calls) * op.flops for op in ops.values())
  moved = sum(np.asarray(op.calls) * op.bytes for op in ops.values())
  return flops, moved
