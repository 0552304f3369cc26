"""Decoder-only architectures (dense and MoE) as arrays of hyper-parameters, and their sizes.

The design space of "Hardware Co-Design Scaling Laws via Roofline Modelling for On-Device LLMs"
(Sun et al., arXiv 2602.10377, section 3: width d, depth l, FFN ratio r, attention heads and
GQA, experts E and active experts K; the sparsity rho = K / E). Every field of `Arch` may be a
scalar or a numpy array (all broadcast together), so one `Arch` holds a whole design space and
every count below is one vectorized expression.

Per layer, with n_h query heads, n_kv key/value heads of width d_h (GQA group g = n_h / n_kv),
FFN hidden f and m FFN matrices (3 for SwiGLU, 2 for a GELU MLP):

  attention  P_att = d n_h d_h (Q) + 2 d n_kv d_h (K, V) + n_h d_h d (O)  = 2 d^2 (1 + 1/g)
             when d_h = d / n_h  [+ d n_h d_h for an output gate]
  dense FFN  P_ffn = m d f
  MoE FFN    P_moe_total  = E m d f_e + d E (router) + N_s m d f_e (shared experts)
             P_moe_active = K m d f_e + d E + N_s m d f_e
  N = l_dense (P_att + P_ffn) + l_moe (P_att + P_moe) + V d (x2 if untied)

plus, where a model has them, biases, RMSNorm gains and QK-norms (`Arch`'s flags), so the counts
equal the parameter counts of our NNX models exactly (tests/roofline/test_arch.py checks
`jaxpapers.nn.tiny_lm.TinyLM` and `jaxpapers.nn.afmoe.AfmoeLM`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

ArrayLike = Any  # a Python number or a numpy array (broadcastable with the other fields)


@dataclasses.dataclass(frozen=True)
class Arch:
  """Hyper-parameters of one decoder-only LM, or of many (array fields).

  Attributes:
    d_model: width d.
    num_layers: depth l.
    num_heads: query heads n_h.
    num_kv_heads: key/value heads n_kv (GQA group g = n_h / n_kv).
    head_dim: head width d_h (the spec's d / n_h).
    ffn: hidden width f of a dense FFN layer.
    num_experts: routed experts E of an MoE layer; E <= 1 means a dense model.
    top_k: active routed experts K.
    expert_ffn: hidden width f_e of each expert (the spec's r d / granularity).
    num_shared: shared experts N_s (each of width f_e, always active).
    dense_layers: leading dense FFN layers of an MoE model (all layers of a dense one).
    vocab: vocabulary V.
    tied: the LM head is the embedding matrix (one V x d matrix).
    mlp_matrices: matrices per FFN m (3: SwiGLU; 2: GELU MLP).
    attn_gate: an output-gate projection d x (n_h d_h) (AFMoE's gated attention).
    qkv_bias: biases on Q, K and V.
    mlp_bias: biases on every dense-FFN matrix.
    head_bias: a bias on the LM head.
    qk_norm: RMSNorm gains on q and k (d_h each) per layer.
    norms_per_layer: RMSNorm gains of width d per layer (2: pre-norm; 4: sandwich).
    final_norm: an RMSNorm before the head.
  """

  d_model: ArrayLike
  num_layers: ArrayLike
  num_heads: ArrayLike
  num_kv_heads: ArrayLike
  head_dim: ArrayLike
  ffn: ArrayLike = 0
  num_experts: ArrayLike = 1
  top_k: ArrayLike = 1
  expert_ffn: ArrayLike = 0
  num_shared: ArrayLike = 0
  dense_layers: ArrayLike = 0
  vocab: ArrayLike = 32_000
  tied: ArrayLike = True
  mlp_matrices: ArrayLike = 3
  attn_gate: ArrayLike = False
  qkv_bias: ArrayLike = False
  mlp_bias: ArrayLike = False
  head_bias: ArrayLike = False
  qk_norm: ArrayLike = False
  norms_per_layer: ArrayLike = 0
  final_norm: ArrayLike = False

  def __getitem__(self, index) -> Arch:
    """The candidates at `index` (array fields indexed, scalar fields kept)."""
    return Arch(**{f.name: (v[index] if np.ndim(v) else v)
                   for f in dataclasses.fields(self) for v in [getattr(self, f.name)]})

  def __len__(self) -> int:
    return int(np.broadcast(*[np.asarray(getattr(self, f.name))
                              for f in dataclasses.fields(self)]).size)

  @property
  def is_moe(self) -> np.ndarray:
    return np.asarray(self.num_experts) > 1

  @property
  def group(self) -> np.ndarray:
    """GQA group g = n_h / n_kv."""
    return np.asarray(self.num_heads) / np.asarray(self.num_kv_heads)

  @property
  def sparsity(self) -> np.ndarray:
    """rho = K / E (1 for a dense model)."""
    return np.where(self.is_moe, np.asarray(self.top_k) / np.maximum(self.num_experts, 1), 1.0)

  @property
  def moe_layers(self) -> np.ndarray:
    """Layers with an MoE FFN (0 for a dense model)."""
    return np.where(self.is_moe, np.asarray(self.num_layers) - np.asarray(self.dense_layers), 0)

  @property
  def dense_ffn_layers(self) -> np.ndarray:
    """Layers with a dense FFN."""
    return np.asarray(self.num_layers) - self.moe_layers

  @property
  def kv_width(self) -> np.ndarray:
    """n_kv d_h: the width of k (and of v) per token and layer."""
    return np.asarray(self.num_kv_heads) * np.asarray(self.head_dim)

  @property
  def q_width(self) -> np.ndarray:
    """n_h d_h: the width of q (and of the attention output)."""
    return np.asarray(self.num_heads) * np.asarray(self.head_dim)


def attention_matrices(a: Arch) -> np.ndarray:
  """Weights of one layer's attention projections (Q, K, V, O and the gate): its GEMM weights."""
  d = np.asarray(a.d_model)
  return d * a.q_width * (2 + np.asarray(a.attn_gate, float)) + 2 * d * a.kv_width


def attention_params(a: Arch) -> np.ndarray:
  """One layer's attention parameters: projections, QKV biases, QK-norm gains."""
  bias = np.asarray(a.qkv_bias, float) * (a.q_width + 2 * a.kv_width)
  return attention_matrices(a) + bias + np.asarray(a.qk_norm, float) * 2 * np.asarray(a.head_dim)


def dense_ffn_params(a: Arch) -> np.ndarray:
  """One dense FFN layer: m d f weights, plus (m - 1) f + d biases with `mlp_bias`."""
  d, f, m = (np.asarray(x) for x in (a.d_model, a.ffn, a.mlp_matrices))
  return m * d * f + np.asarray(a.mlp_bias, float) * ((m - 1) * f + d)


def moe_ffn_params(a: Arch) -> tuple[np.ndarray, np.ndarray]:
  """One MoE FFN layer's (total, active) parameters: experts, router, shared experts."""
  d, m, fe = (np.asarray(x) for x in (a.d_model, a.mlp_matrices, a.expert_ffn))
  expert = m * d * fe
  router_and_shared = d * np.asarray(a.num_experts) + np.asarray(a.num_shared) * expert
  return (np.asarray(a.num_experts) * expert + router_and_shared,
          np.asarray(a.top_k) * expert + router_and_shared)


def embedding_params(a: Arch) -> np.ndarray:
  """Embedding and head: V d (tied) or 2 V d, plus V with a head bias."""
  v, d = np.asarray(a.vocab), np.asarray(a.d_model)
  return v * d * (2 - np.asarray(a.tied, float)) + np.asarray(a.head_bias, float) * v


class ParamCounts(NamedTuple):
  """Parameter counts (arrays like the `Arch`'s fields).

  Attributes:
    total: every parameter.
    active: what one token touches (routed experts: K of E).
    non_embedding_total: `total` without the embedding and head.
    non_embedding_active: `active` without the embedding and head.
    embedding: the embedding and head.
  """

  total: np.ndarray
  active: np.ndarray
  non_embedding_total: np.ndarray
  non_embedding_active: np.ndarray
  embedding: np.ndarray


def param_counts(a: Arch) -> ParamCounts:
  """Total, active and non-embedding parameter counts of `a` (the module docstring's formulas)."""
  d = np.asarray(a.d_model, float)
  norms = (np.asarray(a.norms_per_layer) * d * np.asarray(a.num_layers)
           + np.asarray(a.final_norm, float) * d)
  shared = np.asarray(a.num_layers) * attention_params(a) + a.dense_ffn_layers * dense_ffn_params(a)
  moe_total, moe_active = moe_ffn_params(a)
  layers_total = shared + a.moe_layers * moe_total + norms
  layers_active = shared + a.moe_layers * moe_active + norms
  emb = embedding_params(a)
  return ParamCounts(layers_total + emb, layers_active + emb, layers_total, layers_active, emb)


def kv_bytes_per_token(a: Arch, kv_bytes: float = 2.0) -> np.ndarray:
  """KV-cache bytes per token of context: l x 2 (k and v) x n_kv d_h x bytes."""
  return np.asarray(a.num_layers) * 2 * a.kv_width * kv_bytes


def dense(d_model: ArrayLike, num_layers: ArrayLike, ffn_ratio: ArrayLike = 4.0,
          group: ArrayLike = 1, *, head_dim: int = 64, vocab: ArrayLike = 32_000,
          tied: bool = True) -> Arch:
  """A dense SwiGLU model of the spec's parametrization: n_h = d / d_h, n_kv = n_h / g,
  f = round(r d), no biases or norms counted."""
  d = np.asarray(d_model)
  heads = d // head_dim
  return Arch(d, num_layers, heads, heads // np.asarray(group), head_dim,
              ffn=np.round(np.asarray(ffn_ratio) * d), vocab=vocab, tied=tied)


def moe(d_model: ArrayLike, num_layers: ArrayLike, num_experts: ArrayLike, top_k: ArrayLike,
        ffn_ratio: ArrayLike = 4.0, group: ArrayLike = 1, *, granularity: float = 4.0,
        num_shared: int = 0, head_dim: int = 64, vocab: ArrayLike = 32_000,
        tied: bool = True) -> Arch:
  """An MoE model of the spec's parametrization: every layer routed, f_e = round(r d / granularity)."""
  base = dense(d_model, num_layers, ffn_ratio, group, head_dim=head_dim, vocab=vocab, tied=tied)
  fe = np.round(np.asarray(ffn_ratio) * np.asarray(d_model) / granularity)
  return dataclasses.replace(base, ffn=0, num_experts=num_experts, top_k=top_k, expert_ffn=fe,
                             num_shared=num_shared)


def qwen25_05b(*, with_biases_and_norms: bool = False) -> Arch:
  """Qwen2.5-0.5B: 24 layers, d 896, 14 query and 2 KV heads of 64, SwiGLU 4,864, vocabulary
  151,936, tied embeddings (its Hugging Face config.json: hidden_size, num_hidden_layers,
  num_attention_heads, num_key_value_heads, intermediate_size, vocab_size, tie_word_embeddings).

  Without `with_biases_and_norms` it is the spec's parametrization (0.4940B parameters, 0.3578B
  without the embedding); with them it adds Qwen2's QKV biases and the two RMSNorms per layer
  plus the final one, the 494,032,768 parameters of the released checkpoint.
  """
  extra = with_biases_and_norms
  return Arch(896, 24, 14, 2, 64, ffn=4864, vocab=151_936, tied=True, qkv_bias=extra,
              norms_per_layer=2 if extra else 0, final_norm=extra)
