"""Networks of Unified Latents (Heek et al., arXiv 2602.17270): encoder, prior, decoder, base.

Every diffusion network predicts v (`jaxpapers.diffusion.unified_latents`) and is conditioned on
the log-SNR lambda through sinusoidal features (`lambda_embedding`).

Two architectures (`ULConfig.architecture`):

* "mlp", the CPU-scale networks (GELU MLPs on flattened images):
  encoder E: x (H W C) -> hidden x encoder_layers -> latent_dim;
  prior P: [z_t || emb(lambda)] -> hidden x denoiser_layers -> latent_dim (v);
  decoder D: [x_t || z_0 || emb(lambda)] -> hidden x denoiser_layers -> H W C (v);
  base model (stage 2): like P, its own width and depth.
* "paper", the paper's Sec. 5.1 architectures as far as the public descriptions go:
  a ResNet encoder (channels [128, 256, 512, 512], 2 residual blocks per down-sampling stage and
  3 in the last, 16x down-sampling, 32 latent channels); a single-level ViT prior (8 blocks,
  width 1024) over the latent grid; a UViT decoder (convolutional down/up path, channels
  [128, 256, 512], with skips, around a middle transformer of 8 blocks x 1024 whose tokens lie
  on the latent grid, where z_0 is added); a ViT base model. The transformer blocks are the
  shared adaLN-Zero `jaxpapers.nn.dit.DiTBlock`s, conditioned on emb(lambda). What we could not
  find and chose: the residual blocks' layout (GroupNorm, SiLU, 3x3 conv, lambda added between
  the convs), how z_0 enters the decoder (a linear map of its patch added to the middle
  tokens), the base model as one ViT level rather than the paper's 2-level ViT, and no dropout
  (the DiT blocks have none; the paper uses 0.1).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.core.config import check, check_choice
from jaxpapers.nn import dit
from jaxpapers.nn import partitioning as pt

ARCHITECTURES = ("mlp", "paper")


@dataclasses.dataclass(frozen=True)
class ULConfig:
  """Shapes of the stage-1 networks (E, P, D) and of the stage-2 base model.

  Attributes:
    architecture: "mlp" (CPU scale) or "paper" (ResNet / ViT / UViT).
    image_shape: (H, W, C) of one image.
    latent_dim: mlp: the latent vector's size.
    hidden: mlp: hidden width of E, P and D.
    encoder_layers: mlp: hidden layers of E.
    denoiser_layers: mlp: hidden layers of P and D.
    base_hidden, base_layers: mlp: the base model's hidden width and layers.
    embedding_dim: sinusoidal features of lambda.
    skip_std: mlp: data scale of the decoder's linear skip (`MLPDenoiser`; 0: the plain MLP).
    latent_skip_std: mlp: the same for the prior and the base model.
    latent_channels: paper: channels of the latent grid.
    encoder_channels, encoder_blocks: paper: the ResNet's stages (one 2x down-sampling after
      each) and residual blocks per stage.
    prior_width, prior_depth: paper: the ViT prior.
    decoder_channels: paper: the UViT's convolutional levels (2x down-sampling each).
    decoder_width, decoder_depth: paper: the UViT's middle transformer.
    base_width, base_depth: paper: the ViT base model.
    num_heads: paper: attention heads of every transformer.
  """

  architecture: str = "mlp"
  image_shape: tuple[int, ...] = (16, 16, 1)
  latent_dim: int = 16
  hidden: int = 256
  encoder_layers: int = 2
  denoiser_layers: int = 3
  base_hidden: int = 256
  base_layers: int = 3
  embedding_dim: int = 64
  skip_std: float = 0.5
  latent_skip_std: float = 1.0
  latent_channels: int = 32
  encoder_channels: tuple[int, ...] = (128, 256, 512, 512)
  encoder_blocks: tuple[int, ...] = (2, 2, 2, 3)
  prior_width: int = 1024
  prior_depth: int = 8
  decoder_channels: tuple[int, ...] = (128, 256, 512)
  decoder_width: int = 1024
  decoder_depth: int = 8
  base_width: int = 1024
  base_depth: int = 22
  num_heads: int = 16

  def __post_init__(self):
    check_choice("model.architecture", self.architecture, ARCHITECTURES)
    check(len(self.image_shape) == 3 and all(n >= 1 for n in self.image_shape),
          "model.image_shape", self.image_shape, "three positive sizes (H, W, C)")
    for name in ("latent_dim", "hidden", "encoder_layers", "denoiser_layers", "base_hidden",
                 "base_layers", "latent_channels", "prior_width", "prior_depth", "decoder_width",
                 "decoder_depth", "base_width", "base_depth", "num_heads"):
      check(getattr(self, name) >= 1, f"model.{name}", getattr(self, name), ">= 1")
    check(self.skip_std >= 0, "model.skip_std", self.skip_std, ">= 0 (0: no skip)")
    check(self.latent_skip_std >= 0, "model.latent_skip_std", self.latent_skip_std,
          ">= 0 (0: no skip)")
    check(self.embedding_dim >= 2 and self.embedding_dim % 2 == 0, "model.embedding_dim",
          self.embedding_dim, "an even number >= 2")
    if self.architecture == "paper":
      h, w, _ = self.image_shape
      down = 2 ** len(self.encoder_channels)
      check(len(self.encoder_blocks) == len(self.encoder_channels), "model.encoder_blocks",
            self.encoder_blocks, f"one count per encoder stage ({len(self.encoder_channels)})")
      check(h % down == 0 and w % down == 0, "model.image_shape", self.image_shape,
            f"H and W divisible by 2^len(encoder_channels) = {down}")
      middle = 2 ** len(self.decoder_channels)
      check(down % middle == 0, "model.decoder_channels", self.decoder_channels,
            "no more levels than the encoder has stages")
      for name in ("prior_width", "decoder_width", "base_width"):
        check(getattr(self, name) % self.num_heads == 0, f"model.{name}", getattr(self, name),
              f"a multiple of num_heads={self.num_heads}")
      for name in ("encoder_channels", "decoder_channels"):
        check(all(c % _groups(c) == 0 for c in getattr(self, name)), f"model.{name}",
              getattr(self, name), "channel counts divisible by their GroupNorm groups")

  @property
  def latent_shape(self) -> tuple[int, ...]:
    """Shape of one latent: (latent_dim,) or (H / 16, W / 16, latent_channels)."""
    if self.architecture == "mlp":
      return (self.latent_dim,)
    h, w, _ = self.image_shape
    down = 2 ** len(self.encoder_channels)
    return (h // down, w // down, self.latent_channels)

  @property
  def pixels(self) -> int:
    """H W of one image (bits per pixel divide by it)."""
    return self.image_shape[0] * self.image_shape[1]


def lambda_embedding(lam: jax.Array, dim: int) -> jax.Array:
  """Sinusoidal features [B, dim] of log-SNRs lam [B]: cos and sin of lam f, f from 1/16 to 4.

  Periods from about 1.6 to 100 log-SNR units span the schedules' ranges ([-15, 15]).
  """
  freqs = jnp.exp(jnp.linspace(math.log(1 / 16), math.log(4.0), dim // 2, dtype=jnp.float32))
  angles = lam.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def _linear(din: int, dout: int, rngs: nnx.Rngs, names: tuple, zero: bool = False) -> nnx.Linear:
  kwargs = {"kernel_init": nnx.initializers.zeros} if zero else {}
  return nnx.Linear(din, dout, rngs=rngs, kernel_metadata=pt.metadata(names),
                    bias_metadata=pt.metadata(names[1:]), **kwargs)


class MLP(nnx.Module):
  """GELU MLP: din -> hidden x layers -> dout (the last layer zero-initialised if `zero_out`)."""

  def __init__(self, din: int, hidden: int, layers: int, dout: int, *, zero_out: bool = False,
               rngs: nnx.Rngs):
    sizes = [din] + [hidden] * layers
    self.hidden = nnx.List([_linear(a, b, rngs, (pt.EMBED, pt.MLP) if i == 0 else (pt.MLP, pt.MLP))
                            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))])
    self.out = _linear(sizes[-1], dout, rngs, (pt.MLP, pt.EMBED), zero=zero_out)

  def __call__(self, h: jax.Array) -> jax.Array:
    for layer in self.hidden:
      h = jax.nn.gelu(layer(h))
    return self.out(h)


class MLPEncoder(nnx.Module):
  """E: images [B, H, W, C] -> z_clean [B, latent_dim] (deterministic)."""

  def __init__(self, config: ULConfig, *, rngs: nnx.Rngs):
    self.net = MLP(int(np.prod(config.image_shape)), config.hidden, config.encoder_layers,
                   config.latent_dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.net(x.reshape(x.shape[0], -1))


def linear_v(z_t: jax.Array, lam: jax.Array, data_std: float) -> jax.Array:
  """The v prediction of the optimal linear denoiser of data ~ N(0, data_std^2 I).

  `x_hat = alpha s^2 / (alpha^2 s^2 + sigma^2) z_t` gives `v_hat = (alpha z_t - x_hat) / sigma =
  alpha sigma / (alpha^2 s^2 + sigma^2) z_t` (no division by sigma left).
  """
  a2 = jax.nn.sigmoid(lam).reshape((-1,) + (1,) * (z_t.ndim - 1))
  s2 = 1.0 - a2
  return jnp.sqrt(a2 * s2) / (a2 * data_std ** 2 + s2) * z_t


class MLPDenoiser(nnx.Module):
  """v-prediction MLP on [z_t || condition || emb(lambda)], output shaped like z_t.

  With `skip_std` > 0 the MLP's (zero-initialised) output is added to `linear_v(z_t, lambda,
  skip_std)`: the network starts as the optimal linear denoiser of N(0, skip_std^2) data and
  learns the rest, an input-output skip in the spirit of EDM's preconditioning (Karras et al.,
  arXiv 2206.00364, Sec. 5). A plain MLP has to learn the near-identity map from z_t to v
  through its GELU layers, which 1,500 steps do not reach (see the experiment's README).

  Args:
    shape: shape of one z_t.
    condition_dim: size of the flattened condition (0: none).
    hidden, layers: hidden width and layers.
    embedding_dim: lambda features.
    skip_std: data scale of the linear skip (0: none, the plain MLP).
  """

  def __init__(self, shape: tuple[int, ...], condition_dim: int, hidden: int, layers: int,
               embedding_dim: int, skip_std: float = 0.0, *, rngs: nnx.Rngs):
    self.shape, self.embedding_dim, self.skip_std = tuple(shape), embedding_dim, skip_std
    size = int(np.prod(shape))
    self.net = MLP(size + condition_dim + embedding_dim, hidden, layers, size, zero_out=True,
                   rngs=rngs)

  def __call__(self, z_t: jax.Array, lam: jax.Array, condition: jax.Array | None = None) -> jax.Array:
    parts = [z_t.reshape(z_t.shape[0], -1)]
    if condition is not None:
      parts.append(condition.reshape(condition.shape[0], -1))
    parts.append(lambda_embedding(lam, self.embedding_dim))
    v = self.net(jnp.concatenate(parts, -1)).reshape(z_t.shape)
    return v + linear_v(z_t, lam, self.skip_std) if self.skip_std > 0 else v


# ------------------------------------------------------------------ the paper's architectures


def _groups(channels: int) -> int:
  return math.gcd(32, channels)


class ResBlock(nnx.Module):
  """GroupNorm, SiLU, 3x3 conv (+ a linear map of the condition), GroupNorm, SiLU, 3x3 conv, skip."""

  def __init__(self, cin: int, cout: int, condition_dim: int = 0, *, rngs: nnx.Rngs):
    self.norm1 = nnx.GroupNorm(cin, num_groups=_groups(cin), rngs=rngs)
    self.conv1 = nnx.Conv(cin, cout, (3, 3), rngs=rngs)
    self.cond = nnx.Linear(condition_dim, cout, rngs=rngs) if condition_dim else None
    self.norm2 = nnx.GroupNorm(cout, num_groups=_groups(cout), rngs=rngs)
    self.conv2 = nnx.Conv(cout, cout, (3, 3), kernel_init=nnx.initializers.zeros, rngs=rngs)
    self.skip = nnx.Conv(cin, cout, (1, 1), rngs=rngs) if cin != cout else None

  def __call__(self, x: jax.Array, c: jax.Array | None = None) -> jax.Array:
    h = self.conv1(jax.nn.silu(self.norm1(x)))
    if self.cond is not None:
      h = h + self.cond(c)[:, None, None]
    h = self.conv2(jax.nn.silu(self.norm2(h)))
    return h + (x if self.skip is None else self.skip(x))


class ResNetEncoder(nnx.Module):
  """E: [B, H, W, C] -> z_clean [B, H / 2^S, W / 2^S, latent_channels] (S stages)."""

  def __init__(self, config: ULConfig, *, rngs: nnx.Rngs):
    chans = config.encoder_channels
    self.stem = nnx.Conv(config.image_shape[-1], chans[0], (3, 3), rngs=rngs)
    stages, cin = [], chans[0]
    for cout, count in zip(chans, config.encoder_blocks):
      blocks = []
      for _ in range(count):
        blocks.append(ResBlock(cin, cout, rngs=rngs))
        cin = cout
      stages.append(nnx.List(blocks))
    self.stages = nnx.List(stages)
    self.down = nnx.List([nnx.Conv(c, c, (3, 3), strides=2, rngs=rngs) for c in chans])
    self.norm = nnx.GroupNorm(cin, num_groups=_groups(cin), rngs=rngs)
    self.out = nnx.Conv(cin, config.latent_channels, (3, 3), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.stem(x)
    for blocks, down in zip(self.stages, self.down):
      for block in blocks:
        h = block(h)
      h = down(h)
    return self.out(jax.nn.silu(self.norm(h)))


class _Transformer(nnx.Module):
  """Tokens [B, N, width] through DiT blocks conditioned on c; final adaLN and projection."""

  def __init__(self, num_tokens: int, width: int, depth: int, num_heads: int, dout: int, *,
               rngs: nnx.Rngs):
    self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (num_tokens, width)))
    self.blocks = nnx.List([dit.DiTBlock(width, num_heads, 4, rngs=rngs) for _ in range(depth)])
    self.final_norm = nnx.LayerNorm(width, use_scale=False, use_bias=False, epsilon=1e-6, rngs=rngs)
    self.final_ada = nnx.Linear(width, 2 * width, kernel_init=nnx.initializers.zeros, rngs=rngs)
    self.out = nnx.Linear(width, dout, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, h: jax.Array, c: jax.Array) -> jax.Array:
    h = h + self.pos[...]
    for block in self.blocks:
      h = block(h, c, dit.dense_attention)
    shift, scale = jnp.split(self.final_ada(jax.nn.silu(c)), 2, -1)
    return self.out(self.final_norm(h) * (1 + scale[:, None]) + shift[:, None])


class _LambdaConditioning(nnx.Module):
  """c = MLP(emb(lambda)), [B, width]."""

  def __init__(self, embedding_dim: int, width: int, *, rngs: nnx.Rngs):
    self.embedding_dim = embedding_dim
    self.l1 = nnx.Linear(embedding_dim, width, rngs=rngs)
    self.l2 = nnx.Linear(width, width, rngs=rngs)

  def __call__(self, lam: jax.Array) -> jax.Array:
    return self.l2(jax.nn.silu(self.l1(lambda_embedding(lam, self.embedding_dim))))


class ViTDenoiser(nnx.Module):
  """v-prediction ViT over a latent grid [B, h, w, c], one token per latent position."""

  def __init__(self, shape: tuple[int, ...], width: int, depth: int, num_heads: int,
               embedding_dim: int, *, rngs: nnx.Rngs):
    h, w, c = shape
    self.embed = nnx.Linear(c, width, rngs=rngs)
    self.lam = _LambdaConditioning(embedding_dim, width, rngs=rngs)
    self.body = _Transformer(h * w, width, depth, num_heads, c, rngs=rngs)

  def __call__(self, z_t: jax.Array, lam: jax.Array, condition: jax.Array | None = None) -> jax.Array:
    del condition
    b, h, w, c = z_t.shape
    return self.body(self.embed(z_t.reshape(b, h * w, c)), self.lam(lam)).reshape(z_t.shape)


class UViTDecoder(nnx.Module):
  """v-prediction UViT on images [B, H, W, C] given z_0 [B, h, w, c_z].

  Down path: a residual block and a 2x down-sampling per level; middle: patches of the lowest
  level (one per latent position) as tokens, plus a linear map of z_0, through the transformer;
  up path: 2x up-sampling and a residual block on the skip-concatenated features per level.
  """

  def __init__(self, config: ULConfig, *, rngs: nnx.Rngs):
    chans, width = config.decoder_channels, config.decoder_width
    height, _, cimg = config.image_shape
    lh, lw, cz = config.latent_shape
    self.patch = (height // 2 ** len(chans)) // lh
    self.grid = (lh, lw)
    self.lam = _LambdaConditioning(config.embedding_dim, width, rngs=rngs)
    self.stem = nnx.Conv(cimg, chans[0], (3, 3), rngs=rngs)
    self.down_blocks = nnx.List([ResBlock(c, c, width, rngs=rngs) for c in chans])
    self.down = nnx.List([nnx.Conv(a, b, (3, 3), strides=2, rngs=rngs)
                          for a, b in zip(chans, chans[1:] + chans[-1:])])
    patch_dim = self.patch ** 2 * chans[-1]
    self.tokens_in = nnx.Linear(patch_dim, width, rngs=rngs)
    self.latent_in = nnx.Linear(cz, width, rngs=rngs)
    self.middle = _Transformer(lh * lw, width, config.decoder_depth, config.num_heads, patch_dim,
                               rngs=rngs)
    self.up = nnx.List([nnx.ConvTranspose(b, b, (2, 2), strides=(2, 2), rngs=rngs)
                        for b in chans[1:] + chans[-1:]])
    self.up_blocks = nnx.List([ResBlock(b + a, a, width, rngs=rngs)
                               for a, b in zip(chans, chans[1:] + chans[-1:])])
    self.norm = nnx.GroupNorm(chans[0], num_groups=_groups(chans[0]), rngs=rngs)
    self.out = nnx.Conv(chans[0], cimg, (3, 3), kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x_t: jax.Array, lam: jax.Array, condition: jax.Array) -> jax.Array:
    c = self.lam(lam)
    h = self.stem(x_t)
    skips = []
    for block, down in zip(self.down_blocks, self.down):
      h = block(h, c)
      skips.append(h)
      h = down(h)
    b, hh, ww, ch = h.shape
    p = self.patch
    tokens = dit.patchify(h, (p, p))
    z = condition.reshape(b, -1, condition.shape[-1])
    tokens = self.middle(self.tokens_in(tokens) + self.latent_in(z), c)
    h = h + dit.unpatchify(tokens, (hh, ww), (p, p), ch)
    for i in reversed(range(len(skips))):
      h = self.up[i](h)
      h = self.up_blocks[i](jnp.concatenate([h, skips[i]], -1), c)
    return self.out(jax.nn.silu(self.norm(h)))


# ------------------------------------------------------------------ the containers


class UnifiedLatents(nnx.Module):
  """Stage 1: `encoder(x) -> z_clean`, `prior(z_t, lam) -> v`, `decoder(x_t, lam, z_0) -> v`."""

  def __init__(self, config: ULConfig, *, rngs: nnx.Rngs):
    self.config = config
    if config.architecture == "mlp":
      self.encoder = MLPEncoder(config, rngs=rngs)
      self.prior = MLPDenoiser(config.latent_shape, 0, config.hidden, config.denoiser_layers,
                               config.embedding_dim, config.latent_skip_std, rngs=rngs)
      self.decoder = MLPDenoiser(config.image_shape, config.latent_dim, config.hidden,
                                 config.denoiser_layers, config.embedding_dim, config.skip_std,
                                 rngs=rngs)
    else:
      self.encoder = ResNetEncoder(config, rngs=rngs)
      self.prior = ViTDenoiser(config.latent_shape, config.prior_width, config.prior_depth,
                               config.num_heads, config.embedding_dim, rngs=rngs)
      self.decoder = UViTDecoder(config, rngs=rngs)


class BaseModel(nnx.Module):
  """Stage 2: the latent generator `base(z_t, lam) -> v` (MLP or ViT by the architecture)."""

  def __init__(self, config: ULConfig, *, rngs: nnx.Rngs):
    self.config = config
    if config.architecture == "mlp":
      self.net = MLPDenoiser(config.latent_shape, 0, config.base_hidden, config.base_layers,
                             config.embedding_dim, config.latent_skip_std, rngs=rngs)
    else:
      self.net = ViTDenoiser(config.latent_shape, config.base_width, config.base_depth,
                             config.num_heads, config.embedding_dim, rngs=rngs)

  def __call__(self, z_t: jax.Array, lam: jax.Array) -> jax.Array:
    return self.net(z_t, lam)
