"""A small Diffusion Transformer with rectified-flow velocity prediction, for diffusion papers.

Architecture: DiT with adaLN-Zero conditioning (Peebles & Xie, arXiv 2212.09748, section 3.2):
patchify the input grid (images [B, H, W, C] or videos [B, T, H, W, C]) into tokens, add a
learned position embedding, run `depth` blocks

  (shift, scale, gate) x 2 = Linear(SiLU(c)),  c = time embedding + class embedding,
  x += gate1 * Attn(LN(x) (1 + scale1) + shift1),   x += gate2 * MLP(LN(x) (1 + scale2) + shift2),

(the modulation layers start at zero, so every block starts as the identity), and a final
adaLN + linear layer (zero-initialised) that unpatchifies to the input's shape.

The network predicts the rectified-flow velocity `u = eps - x_0` of its input
`x_t = (1 - t) x_0 + t eps` (the training objective of Wan2.1, used by SpargeAttention2, arXiv
2602.13515, Sec. 4.2). Its losses (flow matching, velocity distillation) and samplers live in
`jaxpapers.diffusion`; this module is the network only.

Attention is pluggable: every block calls `attention(q, k, v)` on `[batch, tokens, heads, dim]`
arrays; pass one at construction or per call (e.g. dense teacher and block-sparse student on
the same weights).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.core.config import check
from jaxpapers.nn import partitioning as pt

AttentionFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def dense_attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
  """Full softmax attention on [B, N, H, D] (XLA's fused implementation)."""
  return jax.nn.dot_product_attention(q, k, v)


@dataclasses.dataclass(frozen=True)
class DiTConfig:
  """Shape of a DiT.

  Attributes:
    input_shape: spatial grid of one example, (H, W) for images or (T, H, W) for videos.
    channels: channels per grid cell.
    patch: patch size per spatial axis (divides input_shape).
    width: token width.
    depth: number of transformer blocks.
    num_heads: attention heads (divide width).
    mlp_ratio: MLP hidden width over token width.
    num_classes: class labels of the condition.
    frequency_dim: sinusoidal features of the time embedding.
  """

  input_shape: tuple[int, ...] = (8, 8)
  channels: int = 1
  patch: tuple[int, ...] = (2, 2)
  width: int = 64
  depth: int = 2
  num_heads: int = 2
  mlp_ratio: int = 4
  num_classes: int = 10
  frequency_dim: int = 64

  def __post_init__(self):
    check(len(self.input_shape) in (2, 3), "model.input_shape", self.input_shape,
          "(H, W) or (T, H, W)")
    check(len(self.patch) == len(self.input_shape)
          and all(p >= 1 and n % p == 0 for n, p in zip(self.input_shape, self.patch)),
          "model.patch", self.patch, f"one divisor of each of {self.input_shape}")
    check(self.channels >= 1, "model.channels", self.channels, ">= 1")
    check(self.num_heads >= 1 and self.width % self.num_heads == 0, "model.width", self.width,
          f"a multiple of num_heads={self.num_heads}")
    check(self.depth >= 1, "model.depth", self.depth, ">= 1")
    check(self.mlp_ratio >= 1, "model.mlp_ratio", self.mlp_ratio, ">= 1")
    check(self.num_classes >= 1, "model.num_classes", self.num_classes, ">= 1")
    check(self.frequency_dim >= 2 and self.frequency_dim % 2 == 0, "model.frequency_dim",
          self.frequency_dim, "an even number >= 2")

  @property
  def grid(self) -> tuple[int, ...]:
    """Tokens per spatial axis."""
    return tuple(n // p for n, p in zip(self.input_shape, self.patch))

  @property
  def num_tokens(self) -> int:
    return int(np.prod(self.grid))

  @property
  def patch_dim(self) -> int:
    return int(np.prod(self.patch)) * self.channels


def patchify(x: jax.Array, patch: tuple[int, ...]) -> jax.Array:
  """[B, *grid*patch, C] -> [B, tokens, prod(patch) * C], tokens in row-major grid order."""
  def one(x):  # per example, so a batch sharded over devices stays as it is
    *spatial, c = x.shape
    grid = [n // p for n, p in zip(spatial, patch)]
    x = x.reshape([s for g, p in zip(grid, patch) for s in (g, p)] + [c])
    nd = len(patch)
    order = [2 * i for i in range(nd)] + [1 + 2 * i for i in range(nd)] + [2 * nd]
    return x.transpose(order).reshape(int(np.prod(grid)), -1)
  return jax.vmap(one)(x)


def unpatchify(tokens: jax.Array, input_shape: tuple[int, ...], patch: tuple[int, ...],
               channels: int) -> jax.Array:
  """Inverse of `patchify`: [B, tokens, prod(patch) * C] -> [B, *input_shape, C]."""
  nd = len(patch)
  grid = [n // p for n, p in zip(input_shape, patch)]

  def one(tokens):
    x = tokens.reshape(grid + list(patch) + [channels])
    order = [v for i in range(nd) for v in (i, nd + i)] + [2 * nd]
    return x.transpose(order).reshape((*input_shape, channels))
  return jax.vmap(one)(tokens)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal features [B, dim] of times t in [0, 1] (scaled by 1000 as in DiT)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = 1000.0 * t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def _modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  return x * (1 + scale[:, None]) + shift[:, None]


def _zeros_linear(din: int, dout: int, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(din, dout, kernel_init=nnx.initializers.zeros, rngs=rngs)


class DiTBlock(nnx.Module):
  """One adaLN-Zero transformer block with pluggable attention."""

  def __init__(self, width: int, num_heads: int, mlp_ratio: int, *, rngs: nnx.Rngs):
    self.num_heads = num_heads
    self.norm1 = nnx.LayerNorm(width, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.norm2 = nnx.LayerNorm(width, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.qkv = nnx.Linear(width, 3 * width, rngs=rngs, kernel_metadata=pt.metadata((pt.EMBED, pt.HEADS)),
                          bias_metadata=pt.metadata((pt.HEADS,)))
    self.proj = nnx.Linear(width, width, rngs=rngs, kernel_metadata=pt.metadata((pt.HEADS, pt.EMBED)))
    self.fc1 = nnx.Linear(width, mlp_ratio * width, rngs=rngs,
                          kernel_metadata=pt.metadata((pt.EMBED, pt.MLP)),
                          bias_metadata=pt.metadata((pt.MLP,)))
    self.fc2 = nnx.Linear(mlp_ratio * width, width, rngs=rngs,
                          kernel_metadata=pt.metadata((pt.MLP, pt.EMBED)))
    self.ada = _zeros_linear(width, 6 * width, rngs)

  def modulated_input(self, x: jax.Array, c: jax.Array) -> jax.Array:
    """The attention branch's input LN(x) (1 + scale1) + shift1 (what TeaCache watches)."""
    shift1, scale1 = jnp.split(self.ada(jax.nn.silu(c)), 6, -1)[:2]
    return _modulate(self.norm1(x), shift1, scale1)

  def __call__(self, x: jax.Array, c: jax.Array, attention: AttentionFn,
               mlp_adapters: tuple[Callable, Callable] | None = None) -> jax.Array:
    """One block; `mlp_adapters` = (a1, a2) adds a1(h) to fc1(h) and a2(g) to fc2(g) (LoRA)."""
    b, n, w = x.shape
    shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(self.ada(jax.nn.silu(c)), 6, -1)
    h = _modulate(self.norm1(x), shift1, scale1)
    q, k, v = jnp.split(self.qkv(h).reshape(b, n, 3 * self.num_heads, w // self.num_heads), 3, 2)
    x = x + gate1[:, None] * self.proj(attention(q, k, v).reshape(b, n, w))
    h = _modulate(self.norm2(x), shift2, scale2)
    if mlp_adapters is None:
      return x + gate2[:, None] * self.fc2(jax.nn.gelu(self.fc1(h), approximate=True))
    a1, a2 = mlp_adapters
    g = jax.nn.gelu(self.fc1(h) + a1(h), approximate=True)
    return x + gate2[:, None] * (self.fc2(g) + a2(g))


class DiT(nnx.Module):
  """Class-conditional DiT predicting the rectified-flow velocity of its input.

  Args:
    config: the shape.
    attention: default attention of every block (dense softmax attention unless given).
    rngs: parameter initialisation.
  """

  def __init__(self, config: DiTConfig, *, attention: AttentionFn = dense_attention,
               rngs: nnx.Rngs):
    self.config = config
    self.attention = attention
    w = config.width
    self.embed = nnx.Linear(config.patch_dim, w, rngs=rngs)
    self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (config.num_tokens, w)))
    self.time1 = nnx.Linear(config.frequency_dim, w, rngs=rngs)
    self.time2 = nnx.Linear(w, w, rngs=rngs)
    self.classes = nnx.Embed(config.num_classes, w, rngs=rngs)
    self.blocks = nnx.List([DiTBlock(w, config.num_heads, config.mlp_ratio, rngs=rngs)
                            for _ in range(config.depth)])
    self.final_norm = nnx.LayerNorm(w, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.final_ada = _zeros_linear(w, 2 * w, rngs)
    self.out = _zeros_linear(w, config.patch_dim, rngs)

  def condition(self, t: jax.Array, labels: jax.Array) -> jax.Array:
    """c = MLP(sinusoid(t)) + class embedding, [B, width]."""
    temb = self.time2(jax.nn.silu(self.time1(timestep_embedding(t, self.config.frequency_dim))))
    return temb + self.classes(labels)

  def __call__(self, x: jax.Array, t: jax.Array, labels: jax.Array,
               attention: AttentionFn | None = None) -> jax.Array:
    """Velocity u(x_t, t, c), same shape as x [B, *input_shape, channels].

    Args:
      x: noisy inputs x_t.
      t: times [B] in [0, 1] (1 = pure noise).
      labels: int classes [B].
      attention: overrides the module's attention for this call.
    """
    cfg = self.config
    if tuple(x.shape[1:]) != (*cfg.input_shape, cfg.channels):
      raise ValueError(f"DiT expects inputs [batch, {', '.join(map(str, cfg.input_shape))}, "
                       f"{cfg.channels}]; got {x.shape}")
    attention = self.attention if attention is None else attention
    h = self.embed(patchify(x, cfg.patch)) + self.pos[...]
    c = self.condition(t, labels)
    for block in self.blocks:
      h = block(h, c, attention)
    shift, scale = jnp.split(self.final_ada(jax.nn.silu(c)), 2, -1)
    tokens = self.out(_modulate(self.final_norm(h), shift, scale))
    return unpatchify(tokens, cfg.input_shape, cfg.patch, cfg.channels)
