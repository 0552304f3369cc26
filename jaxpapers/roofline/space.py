"""The enumerated design space of dense and MoE candidates (one `Arch` of arrays).

"Hardware Co-Design Scaling Laws via Roofline Modelling for On-Device LLMs" (Sun et al., arXiv
2602.10377, section 4) searches widths, depths, FFN ratios, GQA groups and expert counts; its
ranges were not available to us. The grid here is the spec's: d in 512..2048 (step 128), l in
4..32 (step 2), r in {2, 8/3, 4}, g in {1, 2, 4, 8} with n_h = d / 64 (only groups that divide
n_h, so n_kv is a whole number of heads), E in {1 (dense), 4, 8, 16, 32, 64}, K in {1, 2, 4, 8}
with K <= E, experts of width f_e = r d / 4; kept when the weights fit the memory budget
(FP16, 4 GB by default). That leaves about 24 thousand candidates (the spec's "~2,000" is
inconsistent with its own grid).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np

from jaxpapers.roofline.arch import Arch, param_counts


@dataclasses.dataclass(frozen=True)
class SpaceSpec:
  """The grid of candidates.

  Attributes:
    widths, depths, ffn_ratios, groups, experts, top_ks: the grid (experts 1 = dense, with K = 1).
    head_dim: d_h (n_h = d / d_h).
    granularity: f_e = r d / granularity.
    vocab, tied: the vocabulary and whether the head is tied.
    max_weight_bytes: keep candidates whose weights fit, at `weight_bytes` per parameter.
    weight_bytes: bytes per weight of the budget check.
  """

  widths: Sequence[int] = tuple(range(512, 2049, 128))
  depths: Sequence[int] = tuple(range(4, 33, 2))
  ffn_ratios: Sequence[float] = (2.0, 8 / 3, 4.0)
  groups: Sequence[int] = (1, 2, 4, 8)
  experts: Sequence[int] = (1, 4, 8, 16, 32, 64)
  top_ks: Sequence[int] = (1, 2, 4, 8)
  head_dim: int = 64
  granularity: float = 4.0
  vocab: int = 151_936
  tied: bool = True
  max_weight_bytes: float = 4e9
  weight_bytes: float = 2.0


def _expert_pairs(experts: Sequence[int], top_ks: Sequence[int]) -> list[tuple[int, int]]:
  pairs = []
  for e in experts:
    if e <= 1:
      pairs.append((1, 1))
    else:
      pairs += [(e, k) for k in top_ks if k <= e]
  return sorted(set(pairs))


def grid(spec: SpaceSpec = SpaceSpec()) -> Arch:
  """Every grid point with a whole number of KV heads, before the memory filter."""
  pairs = _expert_pairs(spec.experts, spec.top_ks)
  rows = [(d, l, r, g, e, k) for d, l, r, g, (e, k)
          in itertools.product(spec.widths, spec.depths, spec.ffn_ratios, spec.groups, pairs)
          if (d // spec.head_dim) % g == 0 and d % spec.head_dim == 0]
  d, l, r, g, e, k = (np.asarray(c) for c in zip(*rows))
  heads = d // spec.head_dim
  moe = e > 1
  return Arch(d_model=d, num_layers=l, num_heads=heads, num_kv_heads=heads // g,
              head_dim=spec.head_dim, ffn=np.where(moe, 0, np.round(r * d)),
              num_experts=e, top_k=k,
              expert_ffn=np.where(moe, np.round(r * d / spec.granularity), 0),
              vocab=spec.vocab, tied=spec.tied)


def ffn_ratio(a: Arch, granularity: float = 4.0) -> np.ndarray:
  """r of each candidate: f / d (dense) or granularity f_e / d (MoE)."""
  d = np.asarray(a.d_model, float)
  return np.where(a.is_moe, granularity * np.asarray(a.expert_ffn) / d, np.asarray(a.ffn) / d)


def design_space(spec: SpaceSpec = SpaceSpec()) -> Arch:
  """The grid's candidates whose weights fit `spec.max_weight_bytes`."""
  a = grid(spec)
  keep = spec.weight_bytes * param_counts(a).total <= spec.max_weight_bytes
  return a[np.flatnonzero(keep)]
