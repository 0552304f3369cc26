"""Tactile encoder with single-query cross-attention pooling (TactAlign, arXiv 2602.13579, Sec. III-A).

TactAlign encodes each embodiment's tactile signal with its own self-supervised encoder; "a
learnable length-1 query" pools the encoder's tokens by cross-attention into one fixed-size
latent per observation, between the encoder and a decoder (the paper's "online probe"). Here:

* tokens are the sensor elements (one 3-axis glove sensor, or the 16 taxels of a Xela pad), each
  projected to `width` and given a learned embedding of its identity (`positional`);
* `depth` pre-norm transformer blocks (bidirectional self-attention, GELU MLP);
* `AttentionPool`: one learned query attends over the tokens (`nnx.MultiHeadAttention`), then a
  linear map to `latent_dim`. Without positional embeddings the latent is invariant to the
  order of the tokens;
* `TactileDecoder`: a per-token MLP on [latent || learned query of token k] reconstructs every
  token's raw reading.

Training (our CPU stand-in for the paper's JEPA objective, which the paper does not specify
further): masked reconstruction, `masked_reconstruction_loss`: a fraction of the tokens of each
observation is replaced by a learned mask token, and every token is reconstructed from the
pooled latent (MAE-style). A one-token signal (the glove) cannot be partly masked, so there it
is plain reconstruction.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class TactileConfig:
  """A tactile encoder/decoder pair.

  Attributes:
    tokens: sensor elements per observation (glove fingertip: 1; Xela pad: 16).
    channels: values per element (3 axes).
    width: token width.
    depth: transformer blocks.
    heads: attention heads (blocks and pooling).
    latent_dim: d_z, the pooled latent's size (equal in both embodiments).
    mlp_ratio: MLP hidden size / width in the blocks.
    positional: learned per-element embeddings (identity and position of each taxel).
    decoder_hidden: hidden size of the per-token decoder MLP.
  """

  tokens: int
  channels: int = 3
  width: int = 32
  depth: int = 1
  heads: int = 2
  latent_dim: int = 8
  mlp_ratio: int = 2
  positional: bool = True
  decoder_hidden: int = 64

  def __post_init__(self):
    for name in ("tokens", "channels", "width", "heads", "latent_dim", "mlp_ratio", "decoder_hidden"):
      if getattr(self, name) < 1:
        raise ValueError(f"TactileConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.depth < 0 or self.width % self.heads:
      raise ValueError(f"TactileConfig needs depth >= 0 and width ({self.width}) divisible by heads "
                       f"({self.heads})")


def _attention(config: TactileConfig, rngs: nnx.Rngs) -> nnx.MultiHeadAttention:
  return nnx.MultiHeadAttention(config.heads, config.width, decode=False, rngs=rngs)


class Block(nnx.Module):
  """Pre-norm transformer block over a token set (no causal mask)."""

  def __init__(self, config: TactileConfig, *, rngs: nnx.Rngs):
    w = config.width
    self.norm1, self.norm2 = nnx.LayerNorm(w, rngs=rngs), nnx.LayerNorm(w, rngs=rngs)
    self.attention = _attention(config, rngs)
    self.fc1 = nnx.Linear(w, config.mlp_ratio * w, rngs=rngs)
    self.fc2 = nnx.Linear(config.mlp_ratio * w, w, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.attention(self.norm1(x))
    return x + self.fc2(jax.nn.gelu(self.fc1(self.norm2(x))))


class AttentionPool(nnx.Module):
  """Cross-attention of one learned query over the tokens: [B, T, W] -> [B, W]."""

  def __init__(self, config: TactileConfig, *, rngs: nnx.Rngs):
    self.query = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, config.width)))
    self.attention = _attention(config, rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    q = jnp.broadcast_to(self.query[...], (tokens.shape[0],) + self.query.shape)
    return self.attention(q, tokens, tokens)[:, 0]


class TactileEncoder(nnx.Module):
  """Sensor tokens [B, T, C] -> latent [B, d_z]; `mask` [B, T] (True: masked) swaps in a mask token."""

  def __init__(self, config: TactileConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.embed = nnx.Linear(config.channels, config.width, rngs=rngs)
    self.position = (nnx.Param(0.02 * jax.random.normal(rngs.params(), (config.tokens, config.width)))
                     if config.positional else None)
    self.mask_token = nnx.Param(jnp.zeros((config.width,)))
    self.blocks = nnx.List([Block(config, rngs=rngs) for _ in range(config.depth)])
    self.norm = nnx.LayerNorm(config.width, rngs=rngs)
    self.pool = AttentionPool(config, rngs=rngs)
    self.out = nnx.Linear(config.width, config.latent_dim, rngs=rngs)

  def tokens(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """The encoded tokens [B, T, W] before pooling."""
    if x.shape[1:] != (self.config.tokens, self.config.channels):
      raise ValueError(f"tactile input of shape {x.shape}: expected [batch, {self.config.tokens}, "
                       f"{self.config.channels}]")
    h = self.embed(x)
    if mask is not None:
      h = jnp.where(mask[..., None], self.mask_token[...], h)
    if self.position is not None:
      h = h + self.position[...]
    for block in self.blocks:
      h = block(h)
    return self.norm(h)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    return self.out(self.pool(self.tokens(x, mask)))


class TactileDecoder(nnx.Module):
  """Latent [B, d_z] -> reconstructed tokens [B, T, C]: a per-token MLP on [z || query_k]."""

  def __init__(self, config: TactileConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.queries = nnx.Param(0.02 * jax.random.normal(rngs.params(), (config.tokens, config.width)))
    self.fc1 = nnx.Linear(config.latent_dim + config.width, config.decoder_hidden, rngs=rngs)
    self.fc2 = nnx.Linear(config.decoder_hidden, config.decoder_hidden, rngs=rngs)
    self.fc3 = nnx.Linear(config.decoder_hidden, config.channels, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    b, t = z.shape[0], self.config.tokens
    inputs = jnp.concatenate([jnp.broadcast_to(z[:, None], (b, t, z.shape[-1])),
                              jnp.broadcast_to(self.queries[...], (b, t, self.config.width))], -1)
    return self.fc3(jax.nn.silu(self.fc2(jax.nn.silu(self.fc1(inputs)))))


class TactileAutoencoder(nnx.Module):
  """Encoder and decoder of one embodiment; calling it encodes."""

  def __init__(self, config: TactileConfig, *, rngs: nnx.Rngs):
    self.encoder = TactileEncoder(config, rngs=rngs)
    self.decoder = TactileDecoder(config, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def reconstruct(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    return self.decoder(self.encoder(x, mask))


def token_mask(rng: jax.Array, batch: int, tokens: int, ratio: float) -> jax.Array:
  """[B, T] bool: exactly round(ratio * T) masked tokens per row, drawn uniformly."""
  count = int(round(ratio * tokens))
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(rng, (batch, tokens)), axis=1), axis=1)
  return ranks < count


def masked_reconstruction_loss(model: TactileAutoencoder, x: jax.Array, rng: jax.Array,
                               ratio: float = 0.25, weights: jax.Array | None = None) -> jax.Array:
  """Mean squared error of every token's reconstruction from the latent of the masked input.

  Args:
    model: the autoencoder.
    x: readings [B, T, C].
    rng: draws the mask.
    ratio: fraction of the tokens masked per observation (rounded; 0 for a one-token signal).
    weights: [B] example weights (e.g. the batch's padding mask), None: all 1.
  """
  mask = token_mask(rng, x.shape[0], x.shape[1], ratio)
  err = jnp.mean((model.reconstruct(x, mask) - x) ** 2, axis=(1, 2))
  if weights is None:
    return jnp.mean(err)
  return jnp.sum(err * weights) / jnp.maximum(jnp.sum(weights), 1.0)
