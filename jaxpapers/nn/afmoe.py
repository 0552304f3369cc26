"""The AFMoE decoder of Arcee Trinity (arXiv 2602.17004) as an NNX language model.

The report's architecture (interleaved local/global attention, gated attention, depth-scaled
sandwich norm, sigmoid routing) in the form of the released code, Hugging Face transformers'
`models/afmoe/modeling_afmoe.py`.

Decoder layer with pre- and post-sublayer RMSNorm ("sandwich"):
  x = x + PostNorm_attn(Attn(PreNorm_attn(x)))
  x = x + PostNorm_mlp(MLP_or_MoE(PreNorm_mlp(x)))
Layer i (0-based) is global (NoPE, full causal) iff (i + 1) % global_every == 0, otherwise local
(RoPE, sliding window): 3 local : 1 global at global_every = 4. The first `num_dense_layers`
layers use a dense SwiGLU MLP, the rest a sigmoid-routed MoE with shared experts. Post-norm gains
start at 1/sqrt(L) (our reading of "depth-scaled sandwich norm"; the formula was not published).
Embedding output is scaled by sqrt(d_model).

Scanned layers (`scan_layers=True`, `jaxpapers.nn.scan`): the scan unit is a group of
`global_every` consecutive MoE layers `[local, ..., local, global]` starting on a multiple of
`global_every`, so every group has the same structure and one compiled group serves all of them
(compile time does not grow with depth). The layers before the first such group (the dense
prefix and a partial group) and the layers after the last one stay unscanned in `layers`. With
1 dense layer and `global_every` = 4, layers 0-3 are unscanned and 4-7, 8-11, ... form groups.
`remat` ("none" | "full" | "dots") rematerializes every layer (unscanned ones too).

`AfmoeLM.call_with_stats` also returns each MoE layer's router losses (`jaxpapers.nn.moe.
RouterStats`: the sequence-wise balance loss and the router z-loss the report trains with), for
a loss function to weigh; `__call__` returns the expert loads only.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core.config import check, check_choice
from jaxpapers.nn import partitioning as pt
from jaxpapers.nn import scan
from jaxpapers.nn.attention import GatedAttention
from jaxpapers.nn.embedding import embed_lookup
from jaxpapers.nn.moe import DISPATCHES, ROUTER_INITS, MoE, RouterStats, SwiGLU
from jaxpapers.nn.norms import RMSNorm


@dataclasses.dataclass(frozen=True)
class AfmoeConfig:
  """Shape of an AFMoE language model (defaults: the tiny model of our CPU-scale study,
  experiments/trinity/README.md).

  `scan_layers` runs the aligned groups of MoE layers in one scan (see the module docstring;
  off: the list of layers, the default) and `remat` ("none" | "full" | "dots") sets every
  layer's rematerialization in the backward pass. `router_init` is the MoE routers' init:
  "normal" (`N(0, 0.02^2)`, `MoE`'s default; the report does not state the router's init in
  what we could read of it) or "zeros" (the Hugging Face AFMoE reference's `_init_weights`);
  see `jaxpapers.nn.moe.MoE`. `dispatch` is the MoE layers' dispatch path ("dense", "ragged",
  "blocked" with `block_size` rows per block, "expert_parallel"; `jaxpapers.nn.moe`).
  """

  vocab_size: int = 256
  d_model: int = 64
  num_layers: int = 4
  num_dense_layers: int = 1
  num_heads: int = 4
  num_kv_heads: int = 2
  head_dim: int = 16
  dense_width: int = 128
  num_experts: int = 16
  top_k: int = 2
  expert_width: int = 64
  num_shared: int = 1
  route_scale: float = 1.0
  window: int = 32
  global_every: int = 4
  rope_theta: float = 10_000.0
  dispatch: str = "dense"
  block_size: int = 64
  init_std: float = 0.02
  router_init: str = "normal"
  scan_layers: bool = False
  remat: str = "none"

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                 "dense_width", "num_experts", "expert_width", "window", "global_every"):
      check(getattr(self, name) >= 1, f"model.{name}", getattr(self, name), ">= 1")
    check(0 <= self.num_dense_layers <= self.num_layers, "model.num_dense_layers",
          self.num_dense_layers, f"in [0, model.num_layers={self.num_layers}]")
    check(self.num_heads % self.num_kv_heads == 0, "model.num_kv_heads", self.num_kv_heads,
          f"a divisor of model.num_heads={self.num_heads}")
    check(1 <= self.top_k <= self.num_experts, "model.top_k", self.top_k,
          f"in [1, model.num_experts={self.num_experts}]")
    check(self.num_shared >= 0, "model.num_shared", self.num_shared, ">= 0")
    check(self.route_scale > 0, "model.route_scale", self.route_scale, "> 0")
    check(self.head_dim % 2 == 0, "model.head_dim", self.head_dim, "even (RoPE rotates pairs)")
    check_choice("model.dispatch", self.dispatch, DISPATCHES)
    check(self.block_size >= 1, "model.block_size", self.block_size, ">= 1")
    check(0 < self.init_std <= 1, "model.init_std", self.init_std, "in (0, 1]")
    check_choice("model.remat", self.remat, scan.REMAT)
    check_choice("model.router_init", self.router_init, ROUTER_INITS)

  @property
  def num_moe_layers(self) -> int:
    return self.num_layers - self.num_dense_layers

  def is_global(self, layer: int) -> bool:
    return (layer + 1) % self.global_every == 0

  def scan_plan(self) -> tuple[int, int]:
    """(first scanned layer, number of scanned groups of `global_every` layers); (L, 0) when
    `scan_layers` is off or no whole aligned group of MoE layers fits."""
    g = self.global_every
    start = -(-self.num_dense_layers // g) * g  # first group boundary at or after the dense ones
    groups = max(self.num_layers - start, 0) // g if self.scan_layers else 0
    return (start, groups) if groups else (self.num_layers, 0)


class DecoderLayer(nnx.Module):
  """One sandwich-norm decoder layer: gated attention, then a dense MLP or an MoE."""

  def __init__(self, config: AfmoeConfig, index: int, *, rngs: nnx.Rngs):
    c = config
    post_gain = 1 / math.sqrt(c.num_layers)
    self.attn_in, self.attn_out = RMSNorm(c.d_model), RMSNorm(c.d_model, init=post_gain)
    self.mlp_in, self.mlp_out = RMSNorm(c.d_model), RMSNorm(c.d_model, init=post_gain)
    self.attn = GatedAttention(c.d_model, c.num_heads, c.num_kv_heads, c.head_dim,
                               window=None if c.is_global(index) else c.window,
                               rope_theta=c.rope_theta, init_std=c.init_std, rngs=rngs)
    if index < c.num_dense_layers:
      self.mlp = SwiGLU(c.d_model, c.dense_width, init_std=c.init_std, rngs=rngs)
    else:
      self.mlp = MoE(c.d_model, c.num_experts, c.top_k, c.expert_width, num_shared=c.num_shared,
                     route_scale=c.route_scale, dispatch=c.dispatch, block_size=c.block_size,
                     router_init=c.router_init,
                     init_std=c.init_std, rngs=rngs)

  def __call__(self, x, segment_ids, mask) -> tuple[jax.Array, RouterStats | None]:
    """x [B, T, d] -> (x, the MoE layer's `RouterStats`, None for a dense layer)."""
    x = x + self.attn_out(self.attn(self.attn_in(x), segment_ids))
    h = self.mlp_in(x)
    if isinstance(self.mlp, MoE):
      h, stats = self.mlp.call_with_stats(h, mask)
    else:
      h, stats = self.mlp(h), None
    return x + self.mlp_out(h), stats


class DecoderGroup(nnx.Module):
  """`global_every` MoE decoder layers `[local, ..., global]` from layer `start`, the scan unit.

  `start` is a multiple of `global_every` at or after the dense layers; every group built with
  it has the same structure (the layers' index only decides local/global and dense/MoE).
  """

  def __init__(self, config: AfmoeConfig, start: int, *, rngs: nnx.Rngs):
    self.layers = nnx.List([DecoderLayer(config, start + j, rngs=rngs)
                            for j in range(config.global_every)])

  def __call__(self, x, segment_ids, mask) -> tuple[jax.Array, RouterStats]:
    """x [B, T, d] -> (x, `RouterStats` of the layers: counts [global_every, E], losses
    [global_every])."""
    stats = []
    for layer in self.layers:
      x, c = layer(x, segment_ids, mask)
      stats.append(c)
    return x, _stack(stats)


def _stack(stats: list[RouterStats]) -> RouterStats:
  return RouterStats(*(jnp.stack(field) for field in zip(*stats)))


def _flatten_groups(stats: RouterStats) -> RouterStats:
  """Scanned groups' stats `[G, global_every, ...]` -> `[G * global_every, ...]`."""
  return RouterStats(*(v.reshape(-1, *v.shape[2:]) for v in stats))


def _layer_call(layer: DecoderLayer, x, segment_ids, mask):
  return layer(x, segment_ids, mask)


class AfmoeLM(nnx.Module):
  """Token ids [B, T] -> (logits [B, T, V], expert counts [num MoE layers, E]).

  Attributes:
    layers: the unscanned decoder layers in order (all of them unless `config.scan_layers`).
    groups: with scanned layers, a `jaxpapers.nn.scan.Scanned` stack of `DecoderGroup`s
      (layers `start .. start + G * global_every - 1` of `config.scan_plan()`), else None.
  """

  def __init__(self, config: AfmoeConfig, *, rngs: nnx.Rngs):
    self.config = config
    init = nnx.initializers.normal(config.init_std)
    self.embed = pt.param(init(rngs.params(), (config.vocab_size, config.d_model)),
                          (pt.VOCAB, pt.EMBED))
    start, num_groups = config.scan_plan()
    end = start + num_groups * config.global_every
    self.layers = nnx.List([DecoderLayer(config, i, rngs=rngs) for i in range(start)])
    self.groups = (scan.Scanned(lambda r: DecoderGroup(config, start, rngs=r), num_groups,
                                rngs=rngs, remat=config.remat) if num_groups else None)
    self.layers.extend(DecoderLayer(config, i, rngs=rngs) for i in range(end, config.num_layers))
    self.final_norm = RMSNorm(config.d_model)
    self.head = pt.param(init(rngs.params(), (config.d_model, config.vocab_size)),
                         (pt.EMBED, pt.VOCAB))

  def moe_layers(self) -> list[MoE | scan.LayerView]:
    """Every MoE layer in layer order; a scanned one as a `scan.LayerView` of its group stack
    (its `expert_bias` and `bias_momentum` read and write that layer's row)."""
    start, num_groups = self.config.scan_plan()
    unscanned = [layer.mlp for layer in self.layers]
    scanned = [scan.layer_view(self.groups, g).layers[j].mlp
               for g in range(num_groups) for j in range(self.config.global_every)]
    moe = unscanned[:start] + scanned + unscanned[start:]
    return [mlp for mlp in moe if not isinstance(mlp, SwiGLU)]

  def __call__(self, tokens: jax.Array, segment_ids: jax.Array | None = None,
               mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Token ids [B, T] -> (logits [B, T, V], expert loads [num MoE layers, E])."""
    logits, stats = self.call_with_stats(tokens, segment_ids, mask)
    return logits, stats.counts

  def call_with_stats(self, tokens: jax.Array, segment_ids: jax.Array | None = None,
                      mask: jax.Array | None = None) -> tuple[jax.Array, RouterStats]:
    """`__call__` with every MoE layer's router losses.

    Args:
      tokens: `[B, T]` token ids.
      segment_ids: optional `[B, T]` document ids (document-causal attention).
      mask: optional `[B, T]` real-token mask (loads and router losses skip padding).

    Returns:
      logits `[B, T, V]` and `RouterStats` in layer order: `counts [L_moe, E]`,
      `balance_loss [L_moe]`, `z_loss [L_moe]` (`jaxpapers.nn.moe`).
    """
    x = embed_lookup(self.embed[...], tokens) * math.sqrt(self.config.d_model)
    start, _ = self.config.scan_plan()
    call = scan.checkpointed(_layer_call, self.config.remat)
    stats = []  # one RouterStats per unscanned MoE layer, a [G * global_every] block for the groups
    for i, layer in enumerate(self.layers):
      if i == start and self.groups is not None:
        x, c = self.groups(x, segment_ids, mask)  # fields [G, global_every, ...]
        stats.append(_flatten_groups(c))
      x, c = call(layer, x, segment_ids, mask)
      if c is not None:
        stats.append(jax.tree.map(lambda v: v[None], c))
    if self.groups is not None and len(self.layers) == start:  # the groups end the model
      x, c = self.groups(x, segment_ids, mask)
      stats.append(_flatten_groups(c))
    logits = self.final_norm(x) @ self.head[...]
    if not stats:
      e = self.config.num_experts
      return logits, RouterStats(jnp.zeros((0, e)), jnp.zeros((0,)), jnp.zeros((0,)))
    return logits, RouterStats(*(jnp.concatenate(field) for field in zip(*stats)))


def stack_layers(state: dict, config: AfmoeConfig) -> dict:
  """An unscanned model's pure state (`nnx.to_pure_dict`) in the layout of the scanned model.

  Args:
    state: the state of `AfmoeLM(dataclasses.replace(config, scan_layers=False))`.
    config: the scanned model's config.

  Returns:
    The same values for `AfmoeLM(config)` (`nnx.replace_by_pure_dict` it into that model's
    state): the unscanned layers renumbered in `layers`, layer `start + g * global_every + j`
    as row `g` of `groups.scanned.layers[j]`. `state` itself when nothing is scanned.
  """
  start, num_groups = config.scan_plan()
  if not num_groups:
    return state
  every, layers = config.global_every, state["layers"]
  end = start + num_groups * every
  kept = [*range(start), *range(end, config.num_layers)]
  groups = {j: scan.stack([layers[start + g * every + j] for g in range(num_groups)])
            for j in range(every)}
  return {**{k: v for k, v in state.items() if k != "layers"},
          "layers": {k: layers[i] for k, i in enumerate(kept)},
          "groups": {scan.STACKED: {"layers": groups}}}
