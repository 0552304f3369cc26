"""Parameter counts against the real parameter counts of our NNX models and Qwen2.5-0.5B."""

import jax
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM
from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.tiny_lm import TinyLM
from jaxpapers.roofline import arch


def _count(model) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("d,l,heads,hidden,bias", [(32, 2, 4, 128, True), (48, 3, 3, 100, False)])
def test_dense_count_equals_tiny_lm(d, l, heads, hidden, bias):
  model = TinyLM(97, d, l, mixer=lambda r: CausalSelfAttention(d, heads, rngs=r),
                 mlp_hidden=hidden, mlp_bias=bias, head_bias=bias, rngs=nnx.Rngs(0))
  a = arch.Arch(d, l, heads, heads, d // heads, ffn=hidden, vocab=97, tied=False, mlp_matrices=2,
                mlp_bias=bias, head_bias=bias, norms_per_layer=2, final_norm=True)
  assert arch.param_counts(a).total == _count(model)


@pytest.mark.parametrize("dense_layers,experts,top_k,shared", [(0, 4, 1, 0), (1, 8, 2, 1), (3, 4, 2, 0)])
def test_moe_count_equals_afmoe(dense_layers, experts, top_k, shared):
  c = AfmoeConfig(vocab_size=50, d_model=32, num_layers=3, num_dense_layers=dense_layers,
                  num_heads=4, num_kv_heads=2, head_dim=8, dense_width=96, num_experts=experts,
                  top_k=top_k, expert_width=24, num_shared=shared)
  model = AfmoeLM(c, rngs=nnx.Rngs(0))
  a = arch.Arch(32, 3, 4, 2, 8, ffn=96, num_experts=experts, top_k=top_k, expert_ffn=24,
                num_shared=shared, dense_layers=dense_layers, vocab=50, tied=False,
                attn_gate=True, qk_norm=True, norms_per_layer=4, final_norm=True)
  counts = arch.param_counts(a)
  assert counts.total == _count(model)
  # active: the routed experts' share K/E of the expert weights (3 d f_e each), per MoE layer
  unused = (3 - dense_layers) * (experts - top_k) * 3 * 32 * 24
  assert counts.total - counts.active == unused


def test_qwen_counts_match_the_spec_and_the_release():
  counts = arch.param_counts(arch.qwen25_05b())
  # 24 x (2 d^2 (1 + 1/7) + 3 d 4864) and V d, by hand
  per_layer = 2 * 896**2 * (1 + 1 / 7) + 3 * 896 * 4864
  assert counts.non_embedding_total == pytest.approx(24 * per_layer, rel=1e-12)
  assert counts.non_embedding_total == 357_826_560
  assert counts.total == 357_826_560 + 151_936 * 896 == 493_961_216
  assert arch.param_counts(arch.qwen25_05b(with_biases_and_norms=True)).total == 494_032_768
  assert arch.kv_bytes_per_token(arch.qwen25_05b()) == 24 * 2 * 2 * 64 * 2 == 12_288


def test_spec_formulas_for_dense_and_moe():
  d, l, g, r, e, k = 1024, 8, 4, 4.0, 16, 2
  dense = arch.dense(d, l, r, g, vocab=1000, tied=False)
  p_att = 2 * d * d * (1 + 1 / g)
  assert arch.param_counts(dense).total == l * (p_att + 3 * d * r * d) + 2 * 1000 * d
  moe = arch.moe(d, l, e, k, r, g, vocab=1000)
  fe = r * d / 4
  counts = arch.param_counts(moe)
  assert counts.total == l * (p_att + e * 3 * d * fe + d * e) + 1000 * d
  assert counts.active == l * (p_att + k * 3 * d * fe + d * e) + 1000 * d
  assert moe.sparsity == pytest.approx(k / e)


def test_vectorized_counts_equal_one_by_one():
  d = np.array([512, 768, 1024])
  many = arch.moe(d, np.array([4, 6, 8]), np.array([4, 8, 16]), np.array([1, 2, 4]))
  totals = arch.param_counts(many).total
  for i in range(3):
    assert totals[i] == arch.param_counts(many[i]).total
  assert len(many) == 3
