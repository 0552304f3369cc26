"""A toy RDT diffusion policy with a future prefix, and MiPA's parallel prefix-and-LoRA experts.

FRAPPE (arXiv 2602.17259):

* Base policy (Sec. 3.1, RDT): a DiT denoiser over condition tokens (image patches, proprio),
  learnable future-prefix tokens and noisy action tokens, conditioned on the diffusion step by
  adaLN (`jaxpapers.nn.dit.DiTBlock`), predicting the clean action chunk (x0-prediction).
* Future prefix alignment (Sec. 3.2): the prefix tokens' hidden state read out at about 3/4
  depth (layer 21 of 28), mean-pooled, projected by an MLP and aligned with a frozen teacher's
  embedding of the future frame: `L = 1 - cos(proj(p_t), sg(e_{t+h}))` (`alignment_loss`).
* MiPA (Sec. 3.3, Mixture of Prefix-and-LoRA experts): M experts, each its own prefix, LoRA
  (`flax.nnx.LoRA`, B zero-initialised) on q, k, v, o, fc1, fc2 of every block of the frozen
  backbone, and projector to its own teacher. A router gives logits g, weights
  `w' = (1 - eps) softmax(g) + eps / M` (gate smoothing, `gate_weights`), and the shared action
  head maps `sum_i w'_i z_i` (each expert's final action-token states) to actions. The
  anti-collapse loss is `mean_j (logsumexp_i g_ij)^2` (`balance_loss`, the router z-loss form).

The experts' parameters are stacked on a leading axis (created with `nnx.vmap`) and the streams
run with `jax.vmap` over that axis, the frozen backbone broadcast.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core.config import check
from jaxpapers.nn.dit import DiTBlock, dense_attention, patchify, timestep_embedding


@dataclasses.dataclass(frozen=True)
class RDTConfig:
  """Shape of the toy RDT policy.

  Attributes:
    image_size: square image side.
    channels: image channels.
    patch: square patch side (image tokens = (image_size / patch)^2).
    proprio_dim: proprioception features (one token).
    chunk: action chunk length T_a (one token per action).
    action_dim: action features.
    prefix: future-prefix tokens n.
    width: token width d.
    depth: DiT blocks.
    num_heads: attention heads.
    mlp_ratio: MLP hidden width over d.
    frequency_dim: sinusoidal features of the diffusion step.
    align_layer: blocks before the prefix read-out; 0: round(0.75 depth) (paper: 21 of 28).
    target_dim: the single-stream (mid-training) teacher's embedding width.
    projector_hidden: hidden width of the projector MLPs.
    diffusion_steps: DDPM steps K (the step embedding sees k / K).
  """

  image_size: int = 16
  channels: int = 3
  patch: int = 4
  proprio_dim: int = 2
  chunk: int = 8
  action_dim: int = 2
  prefix: int = 4
  width: int = 32
  depth: int = 4
  num_heads: int = 4
  mlp_ratio: int = 4
  frequency_dim: int = 32
  align_layer: int = 0
  target_dim: int = 96
  projector_hidden: int = 64
  diffusion_steps: int = 50

  def __post_init__(self):
    check(self.image_size % self.patch == 0, "model.patch", self.patch,
          f"a divisor of image_size={self.image_size}")
    check(self.width % self.num_heads == 0, "model.width", self.width,
          f"a multiple of num_heads={self.num_heads}")
    check(self.depth >= 1, "model.depth", self.depth, ">= 1")
    check(0 <= self.align_layer <= self.depth, "model.align_layer", self.align_layer,
          f"in [0, depth={self.depth}] (0: round(0.75 depth))")
    check(self.prefix >= 1 and self.chunk >= 1, "model.prefix", self.prefix,
          ">= 1 (and chunk >= 1)")
    check(self.frequency_dim % 2 == 0, "model.frequency_dim", self.frequency_dim, "even")

  @property
  def readout_layer(self) -> int:
    return self.align_layer or max(1, round(0.75 * self.depth))

  @property
  def image_tokens(self) -> int:
    return (self.image_size // self.patch) ** 2

  @property
  def prefix_start(self) -> int:
    return self.image_tokens + 1

  @property
  def action_start(self) -> int:
    return self.prefix_start + self.prefix


@dataclasses.dataclass(frozen=True)
class MiPAConfig:
  """MiPA experts.

  Attributes:
    experts: M.
    lora_rank: rank of every LoRA.
    target_dim: each expert's teacher embedding width (equal, so projectors stack).
    smoothing: gate smoothing eps (paper: 0.1).
    router_hidden: router MLP hidden width; 0: width / 4.
    prefix_noise: std of the noise added to the copied mid-training prefix.
  """

  experts: int = 3
  lora_rank: int = 8
  target_dim: int = 32
  smoothing: float = 0.1
  router_hidden: int = 0
  prefix_noise: float = 1e-3

  def __post_init__(self):
    check(self.experts >= 1, "mipa.experts", self.experts, ">= 1")
    check(self.lora_rank >= 1, "mipa.lora_rank", self.lora_rank, ">= 1")
    check(0 <= self.smoothing < 1, "mipa.smoothing", self.smoothing, "in [0, 1)")


def gate_weights(logits: jax.Array, smoothing: float) -> jax.Array:
  """`(1 - eps) softmax(g) + eps / M` over the last axis (every weight >= eps / M)."""
  m = logits.shape[-1]
  return (1 - smoothing) * jax.nn.softmax(logits, axis=-1) + smoothing / m


def balance_loss(logits: jax.Array) -> jax.Array:
  """`mean over the batch of (logsumexp_i g_i)^2` (router z-loss form), logits [B, M]."""
  return jnp.mean(jnp.square(jax.nn.logsumexp(logits, axis=-1)))


def alignment_loss(prediction: jax.Array, target: jax.Array,
                   weight: jax.Array | None = None) -> jax.Array:
  """`1 - cos(prediction, sg(target))` over the last axis, mean over the rest (or `weight`-ed)."""
  target = jax.lax.stop_gradient(target)
  p = prediction / jnp.maximum(jnp.linalg.norm(prediction, axis=-1, keepdims=True), 1e-8)
  t = target / jnp.maximum(jnp.linalg.norm(target, axis=-1, keepdims=True), 1e-8)
  loss = 1 - jnp.sum(p * t, axis=-1)
  if weight is None:
    return jnp.mean(loss)
  return jnp.sum(loss * weight) / jnp.maximum(jnp.sum(weight), 1.0)


class Projector(nnx.Module):
  """A 2-layer MLP d -> hidden -> D (REPA-style projector)."""

  def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(din, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, dout, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.gelu(self.fc1(x)))


class ActionHead(nnx.Module):
  """RDT's final layer: adaLN-modulated norm, then an MLP to the action features."""

  def __init__(self, width: int, action_dim: int, *, rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(width, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.ada = nnx.Linear(width, 2 * width, kernel_init=nnx.initializers.zeros, rngs=rngs)
    self.fc1 = nnx.Linear(width, width, rngs=rngs)
    self.fc2 = nnx.Linear(width, action_dim, rngs=rngs)

  def __call__(self, z: jax.Array, c: jax.Array) -> jax.Array:
    shift, scale = jnp.split(self.ada(jax.nn.silu(c)), 2, -1)
    h = self.norm(z) * (1 + scale[:, None]) + shift[:, None]
    return self.fc2(jax.nn.gelu(self.fc1(h)))


class BlockLoRA(nnx.Module):
  """One expert's LoRA adapters on one DiT block: q, k, v (the fused qkv), o, fc1, fc2."""

  def __init__(self, width: int, mlp_ratio: int, rank: int, *, rngs: nnx.Rngs):
    self.qkv = nnx.LoRA(width, rank, 3 * width, rngs=rngs)
    self.proj = nnx.LoRA(width, rank, width, rngs=rngs)
    self.fc1 = nnx.LoRA(width, rank, mlp_ratio * width, rngs=rngs)
    self.fc2 = nnx.LoRA(mlp_ratio * width, rank, width, rngs=rngs)


def block_forward(block: DiTBlock, x: jax.Array, c: jax.Array,
                  lora: BlockLoRA | None = None) -> jax.Array:
  """`block(x, c)` with dense attention, plus the LoRA deltas `x A B` on its four linears."""
  if lora is None:
    return block(x, c, dense_attention)
  b, n, w = x.shape
  shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(block.ada(jax.nn.silu(c)), 6, -1)
  h = block.norm1(x) * (1 + scale1[:, None]) + shift1[:, None]
  qkv = (block.qkv(h) + lora.qkv(h)).reshape(b, n, 3 * block.num_heads, w // block.num_heads)
  q, k, v = jnp.split(qkv, 3, 2)
  o = dense_attention(q, k, v).reshape(b, n, w)
  x = x + gate1[:, None] * (block.proj(o) + lora.proj(o))
  h = block.norm2(x) * (1 + scale2[:, None]) + shift2[:, None]
  g = jax.nn.gelu(block.fc1(h) + lora.fc1(h), approximate=True)
  return x + gate2[:, None] * (block.fc2(g) + lora.fc2(g))


class RDTPolicy(nnx.Module):
  """The single-stream toy RDT: tokens [image | proprio | prefix | actions], x0-prediction."""

  def __init__(self, config: RDTConfig, *, rngs: nnx.Rngs):
    self.config = config
    d = config.width
    self.image_embed = nnx.Linear(config.patch ** 2 * config.channels, d, rngs=rngs)
    self.image_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (config.image_tokens, d)))
    self.proprio_embed = nnx.Linear(config.proprio_dim, d, rngs=rngs)
    self.action_embed = nnx.Linear(config.action_dim, d, rngs=rngs)
    self.action_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (config.chunk, d)))
    self.prefix = nnx.Param(0.02 * jax.random.normal(rngs.params(), (config.prefix, d)))
    self.time1 = nnx.Linear(config.frequency_dim, d, rngs=rngs)
    self.time2 = nnx.Linear(d, d, rngs=rngs)
    self.blocks = nnx.List([DiTBlock(d, config.num_heads, config.mlp_ratio, rngs=rngs)
                            for _ in range(config.depth)])
    self.head = ActionHead(d, config.action_dim, rngs=rngs)
    self.projector = Projector(d, config.projector_hidden, config.target_dim, rngs=rngs)

  def embed(self, images: jax.Array, proprio: jax.Array, noisy_actions: jax.Array,
            k: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(condition tokens [B, N_c, d], action tokens [B, T_a, d], step embedding c [B, d])."""
    cfg = self.config
    img = self.image_embed(patchify(images, (cfg.patch, cfg.patch))) + self.image_pos[...]
    cond = jnp.concatenate([img, self.proprio_embed(proprio)[:, None]], axis=1)
    act = self.action_embed(noisy_actions) + self.action_pos[...]
    t = k.astype(jnp.float32) / cfg.diffusion_steps
    c = self.time2(jax.nn.silu(self.time1(timestep_embedding(t, cfg.frequency_dim))))
    return cond, act, c

  def backbone(self, cond: jax.Array, act: jax.Array, c: jax.Array, prefix: jax.Array,
               loras=None) -> tuple[jax.Array, jax.Array]:
    """Runs the blocks on [cond | prefix | act].

    Returns:
      (final action-token states z [B, T_a, d], mean-pooled prefix state after block
      `readout_layer` [B, d]).
    """
    cfg = self.config
    b = cond.shape[0]
    h = jnp.concatenate([cond, jnp.broadcast_to(prefix, (b, *prefix.shape)), act], axis=1)
    readout = None
    for i, block in enumerate(self.blocks):
      h = block_forward(block, h, c, None if loras is None else loras[i])
      if i + 1 == cfg.readout_layer:
        readout = jnp.mean(h[:, cfg.prefix_start:cfg.action_start], axis=1)
    return h[:, cfg.action_start:], readout

  def __call__(self, images: jax.Array, proprio: jax.Array, noisy_actions: jax.Array,
               k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x0 action chunk [B, T_a, action_dim], prefix read-out [B, d])."""
    cond, act, c = self.embed(images, proprio, noisy_actions, k)
    z, readout = self.backbone(cond, act, c, self.prefix[...])
    return self.head(z, c), readout


class Expert(nnx.Module):
  """One MiPA expert: prefix, LoRA on every block, projector to its teacher."""

  def __init__(self, config: RDTConfig, mipa: MiPAConfig, *, rngs: nnx.Rngs):
    self.prefix = nnx.Param(jnp.zeros((config.prefix, config.width)))
    self.loras = nnx.List([BlockLoRA(config.width, config.mlp_ratio, mipa.lora_rank, rngs=rngs)
                           for _ in range(config.depth)])
    self.projector = Projector(config.width, config.projector_hidden, mipa.target_dim, rngs=rngs)


TRAINABLE = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("base")))
"""MiPA post-training's `wrt`: prefixes, LoRAs, projectors, router, shared head; not `base`."""


class MiPAPolicy(nnx.Module):
  """M prefix-and-LoRA experts on a frozen `RDTPolicy`, a router and a shared action head.

  Built from a trained base (`from_base`), every expert starts as the base: its prefix is the
  base prefix plus N(0, prefix_noise^2), its LoRA B matrices are zero, and the head is a copy of
  the base head.
  """

  def __init__(self, config: RDTConfig, mipa: MiPAConfig, *, rngs: nnx.Rngs):
    self.config, self.mipa = config, mipa
    self.base = RDTPolicy(config, rngs=rngs)

    @nnx.split_rngs(splits=mipa.experts)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(r):
      return Expert(config, mipa, rngs=r)
    self.experts = make(rngs)
    hidden = mipa.router_hidden or max(1, config.width // 4)
    self.router1 = nnx.Linear(2 * config.width, hidden, rngs=rngs)
    self.router2 = nnx.Linear(hidden, mipa.experts, rngs=rngs)
    self.head = ActionHead(config.width, config.action_dim, rngs=rngs)

  def from_base(self, base_state, seed: int = 0) -> MiPAPolicy:
    """Loads a trained `RDTPolicy` state and initialises the experts and head from it.

    `seed` draws the prefix noise.
    """
    nnx.update(self.base, base_state)
    nnx.update(self.head, nnx.state(self.base.head))
    noise = self.mipa.prefix_noise * jax.random.normal(
        jax.random.key(seed), (self.mipa.experts, *self.base.prefix.shape))
    self.experts.prefix[...] = self.base.prefix[...][None] + noise
    return self

  def route(self, cond: jax.Array, c: jax.Array) -> jax.Array:
    """Router logits [B, M] from [mean-pooled image tokens | step embedding]."""
    pooled = jnp.mean(cond[:, :self.config.image_tokens], axis=1)
    return self.router2(jax.nn.gelu(self.router1(jnp.concatenate([pooled, c], -1))))

  def streams(self, cond: jax.Array, act: jax.Array, c: jax.Array):
    """Every expert's (z [M, B, T_a, d], read-out [M, B, d], projection [M, B, D])."""
    graphdef, state = nnx.split(self.experts)
    base = self.base

    def one(s):
      e = nnx.merge(graphdef, s)
      z, readout = base.backbone(cond, act, c, e.prefix[...], e.loras)
      return z, readout, e.projector(readout)
    return jax.vmap(one)(state)

  def __call__(self, images: jax.Array, proprio: jax.Array, noisy_actions: jax.Array,
               k: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(x0 action chunk, {"logits" [B, M], "weights" w' [B, M], "z", "readouts", "projections"})."""
    cond, act, c = self.base.embed(images, proprio, noisy_actions, k)
    logits = self.route(cond, c)
    weights = gate_weights(logits, self.mipa.smoothing)
    z, readouts, projections = self.streams(cond, act, c)
    mixed = jnp.einsum("bm,mbtd->btd", weights, z)
    return self.head(mixed, c), {"logits": logits, "weights": weights, "z": z,
                                 "readouts": readouts, "projections": projections}
