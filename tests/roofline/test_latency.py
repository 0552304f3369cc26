"""Roofline latency: hand-computed operators, the Qwen2.5-0.5B test vector, the spec's
corrections re-derived, bandwidth scaling, MoE with K = E, end-to-end and memory."""

import numpy as np
import pytest

from jaxpapers.roofline import arch, devices, latency, space

AGX = devices.device("agx_orin")
FP16 = latency.PRECISIONS["fp16"]


def test_tiny_operators_by_hand():
  # d 8, 2 heads of 4, 1 KV head (g 2), f 16, V 10, one layer, s 3 tokens, c 5
  a = arch.Arch(8, 1, 2, 1, 4, ffn=16, vocab=10)
  p_att = 8 * 8 + 2 * 8 * 4 + 8 * 8  # Q, K+V, O = 2 d^2 (1 + 1/g) = 192
  pre = latency.prefill_ops(a, 3)
  assert pre["qkvo"].flops == 2 * 3 * p_att
  assert pre["qkvo"].bytes == 2 * p_att + 2 * 3 * (2 * 8 + 2 * 4) * 2
  assert pre["attention"].flops == 2 * 9 * 8
  assert pre["attention"].bytes == 2 * 2 * 3 * 4 + 2 * 3 * 8
  assert pre["ffn"].flops == 2 * 3 * 3 * 8 * 16
  assert pre["ffn"].bytes == 2 * 3 * 8 * 16 + 2 * 3 * (8 + 3 * 16)
  assert pre["head"].flops == 2 * 3 * 8 * 10 and pre["head"].bytes == 2 * 8 * 10
  assert latency.prefill_ops(a, 3, head_positions="last")["head"].flops == 2 * 8 * 10
  dec = latency.decode_ops(a, 5)
  assert dec["qkvo"].flops == 2 * p_att and dec["qkvo"].bytes == 2 * p_att
  assert dec["attention"].flops == 4 * 5 * 8 and dec["attention"].bytes == 2 * 2 * 5 * 4
  assert dec["ffn"].flops == 6 * 8 * 16 and dec["ffn"].bytes == 2 * 3 * 8 * 16
  assert dec["moe"].calls == 0  # a dense model has no MoE layer


def test_qwen_decode_test_vector():
  q = arch.qwen25_05b()
  weights = 2 * 493_961_216  # FP16, the tied head read once
  assert weights == pytest.approx(0.988e9, rel=1e-3)
  tpot = float(latency.tpot(q, 0, AGX))
  assert tpot == pytest.approx(weights / 204.8e9, rel=1e-12)  # every decode op memory-bound
  assert tpot * 1e3 == pytest.approx(4.82, rel=0.01)
  # the KV cache adds 12,288 bytes per token of context
  assert float(latency.tpot(q, 1000, AGX)) - tpot == pytest.approx(1000 * 12_288 / 204.8e9)


def test_qwen_prefill_flops_two_conventions_not_the_specs_053():
  """Re-derivation of the spec's prefill figure (the issue's correction): 2 s P per GEMM weight,
  2 s^2 d causal attention per layer, and the head 2 s d V at every position or 2 d V at the
  last. Neither convention gives the spec's 0.53 TFLOP."""
  s, d, v, l = 512, 896, 151_936, 24
  layer_weights = 357_826_560  # non-embedding
  gemms = 2 * s * layer_weights  # 366.4 GFLOP
  attention = l * 2 * s**2 * d  # 11.3 GFLOP
  head_all, head_last = 2 * s * d * v, 2 * d * v  # 139.4 and 0.27 GFLOP
  q = arch.qwen25_05b()
  all_pos = latency.totals(latency.prefill_ops(q, s, head_positions="all"))[0]
  last = latency.totals(latency.prefill_ops(q, s, head_positions="last"))[0]
  assert all_pos == pytest.approx(gemms + attention + head_all, rel=1e-12)
  assert last == pytest.approx(gemms + attention + head_last, rel=1e-12)
  assert all_pos / 1e12 == pytest.approx(0.517, abs=5e-4)
  assert last / 1e12 == pytest.approx(0.378, abs=5e-4)
  assert abs(all_pos / 1e12 - 0.53) > 0.01 and abs(last / 1e12 - 0.53) > 0.1


def test_prefill_intensities_below_the_ridge_by_the_specs_bytes():
  """The issue's second correction: QKV/O at d = 640 and MoE expert GEMMs are memory-bound."""
  ridge = AGX.ridge()
  assert ridge == pytest.approx(208, rel=0.03)
  s = 512
  for g in (1, 2):
    a = arch.dense(640, 8, 4.0, g)
    i = float(latency.prefill_ops(a, s)["qkvo"].intensity)
    p_att = 2 * 640**2 * (1 + 1 / g)
    by_hand = 2 * s * p_att / (2 * p_att + 2 * s * (2 * 640 + 2 * 640 / g) * 2)
    assert i == pytest.approx(by_hand) and i < ridge
  moe = arch.moe(1024, 8, 64, 2)
  i = float(latency.prefill_ops(moe, s)["moe"].intensity)
  assert i == pytest.approx(s * 2 / 64, rel=0.05) and i < ridge  # ~ s K / E


def test_doubling_bandwidth_halves_decode_time():
  a = space.design_space()[::97]
  base = latency.tpot(a, 1024, AGX)
  np.testing.assert_allclose(latency.tpot(a, 1024, AGX.scaled(bandwidth=2.0)), base / 2, rtol=1e-12)
  np.testing.assert_allclose(latency.tpot(a, 1024, AGX.scaled(peak=2.0)), base, rtol=1e-12)


def test_moe_with_k_equal_e_is_the_dense_ffn_of_the_same_size():
  d, e, fe, s = 256, 4, 128, 32
  moe = arch.Arch(d, 1, 4, 4, 64, num_experts=e, top_k=e, expert_ffn=fe, vocab=100)
  dense = arch.Arch(d, 1, 4, 4, 64, ffn=e * fe, vocab=100)
  dm, dd = latency.decode_ops(moe, 8)["moe"], latency.decode_ops(dense, 8)["ffn"]
  assert float(dm.flops) - 2 * d * e == pytest.approx(float(dd.flops))
  assert float(dm.bytes) - 2 * d * e == pytest.approx(float(dd.bytes))
  pm, pd = latency.prefill_ops(moe, s)["moe"], latency.prefill_ops(dense, s)["ffn"]
  assert float(pm.flops) - 2 * s * d * e == pytest.approx(float(pd.flops))
  # weights equal; the spec's MoE bytes carry no activation term
  assert float(pm.bytes) - 2 * d * e == pytest.approx(float(pd.bytes) - 2 * s * (d + 3 * e * fe))


def test_touched_experts_in_prefill():
  moe = arch.moe(512, 2, 64, 2)
  one = latency.prefill_ops(moe, 1)["moe"]
  assert float(one.bytes) == pytest.approx(2 * (3 * 512 * 512 * 2 + 512 * 64))  # K experts of f_e = r d / 4
  many = latency.prefill_ops(moe, 4096)["moe"]
  assert float(many.bytes) == pytest.approx(2 * (3 * 512 * 512 * 64 + 512 * 64), rel=1e-6)


def test_end_to_end_equals_the_explicit_sum_and_memory():
  a = arch.moe(np.array([768, 1536]), np.array([12, 6]), np.array([16, 8]), np.array([2, 1]),
               group=np.array([2, 4]))
  prompt, n = 256, 40
  explicit = latency.ttft(a, prompt, AGX) + sum(latency.tpot(a, c, AGX) for c in range(prompt, prompt + n))
  np.testing.assert_allclose(latency.end_to_end(a, prompt, n, AGX), explicit, rtol=1e-12)
  counts = arch.param_counts(a)
  np.testing.assert_allclose(latency.memory_bytes(a, 100),
                             2 * counts.total + arch.kv_bytes_per_token(a) * 100)


def test_efficiency_and_overhead():
  q = arch.qwen25_05b()
  base = float(latency.tpot(q, 0, AGX))
  eff = latency.Efficiency(memory=0.5, overhead=1e-5)
  # 24 layers x (qkvo, ffn, attention) + head: 73 operators (attention has no work at c = 0)
  assert float(latency.tpot(q, 0, AGX, efficiency=eff)) == pytest.approx(2 * base + 49 * 1e-5)


def test_device_presets():
  assert set(devices.DEVICES) == {"agx_orin", "orin_nx", "orin_nano", "h200", "tpu_v5e"}
  assert devices.device("agx_orin").peak["fp16"] == pytest.approx(42.5e12, rel=0.01)
  assert devices.device("orin_nx").bandwidth == 102.4e9
  assert devices.device("orin_nano").bandwidth == 68e9
  with pytest.raises(Exception, match="choose one of"):
    devices.device("jetson")
