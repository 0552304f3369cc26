"""A tiny RAFT-Stereo (Lipson et al., arXiv 2109.07547) with a ConvGRU or ConvSS2D updater, as
StereoAdapter-2 (arXiv 2602.16915, Sec. 3 / official `core/raft_stereo_*.py`) builds on it.

Pieces (channels last, images `[batch, H, W, 1]`, disparity in pixels, positive: the left pixel
x matches the right pixel x - d):

* `Encoder`: feature and context CNNs to 1/4 resolution (7x7 stride-2 conv, a residual block,
  3x3 stride-2 conv, a residual block, 1x1 conv), the feature one shared by both views. The
  context encoder initialises the hidden state (tanh); no context injection (StereoAdapter-2's
  "without_inp_list" variant; the same for both updaters).
* `correlation_pyramid` / `lookup`: RAFT-Stereo's 1-D correlation (all-pairs along each row,
  `<f1, f2> / sqrt(C)`), average-pooled along the right-image axis per level, looked up around
  `x - d` at offsets `-r..r` with linear interpolation (zero outside).
* `MotionEncoder`: correlation -> 1x1, 3x3 convs; disparity -> 7x7, 3x3 convs; a 3x3 conv to
  `hidden - 1` channels, concatenated with the disparity.
* Updater: `ConvGRU` (RAFT-Stereo's, 3x3 gates, no context biases) or `ConvSS2D`
  (`jaxpapers.nn.conv_ss2d`), chosen by `RAFTStereoConfig.updater`. With `hidden_levels` 2 or 3,
  StereoAdapter-2's multi-scale update block (official `BasicMultiUpdateBlock`): hidden states
  at 1/4, 1/8, 1/16 (the coarser context maps by stride-2 convs of the finer), updated coarsest
  first, each from the 3x3 / stride-2 average-pooled finer state and the coarser state resized
  bilinearly with aligned corners; the finest from the motion features and the next level.
* `FlowHead`: 3x3 conv, ReLU, 3x3 conv to the disparity update; upsampling to full resolution,
  bilinear (values times the factor) or RAFT's convex combination of 3x3 neighbours.
* The loop: the disparity is detached before each lookup (RAFT); every iteration's upsampled
  prediction is returned for the sequence loss (`sequence_loss`, RAFT-Stereo's weights
  `gamma^(n - i - 1)`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core.errors import ConfigError
from jaxpapers.nn.conv_ss2d import ConvSS2D, SS2DConfig, torch_default

UPDATERS = ("gru", "ss2d")
UPSAMPLING = ("bilinear", "convex")


@dataclasses.dataclass(frozen=True)
class RAFTStereoConfig:
  """A tiny RAFT-Stereo.

  Attributes:
    updater: "gru" (RAFT-Stereo's ConvGRU) or "ss2d" (StereoAdapter-2's ConvSS2D).
    hidden: C_h, hidden-state channels (also the motion features' width).
    feature_dim: matching features' channels.
    encoder_dims: widths of the encoders' 1/2- and 1/4-resolution stages.
    corr_levels: levels of the correlation pyramid.
    corr_radius: lookup radius r (2 r + 1 samples per level).
    motion_dims: widths of the motion encoder's correlation and disparity branches.
    head_dim: hidden width of the flow (and mask) head.
    upsample: "bilinear" or "convex".
    ss2d: the ConvSS2D block (its d_model is `hidden`).
    hidden_levels: hidden states (RAFT-Stereo's `n_gru_layers`): 1 (one updater at 1/4) or up
      to 3 (StereoAdapter-2's multi-scale update block at 1/4, 1/8, 1/16, one updater each).
  """

  updater: str = "gru"
  hidden: int = 48
  feature_dim: int = 64
  encoder_dims: tuple[int, int] = (32, 64)
  corr_levels: int = 2
  corr_radius: int = 4
  motion_dims: tuple[int, int] = (32, 32)
  head_dim: int = 64
  upsample: str = "bilinear"
  ss2d: SS2DConfig = SS2DConfig(48, d_state=8, dt_rank=3)
  hidden_levels: int = 1

  def __post_init__(self):
    if self.updater not in UPDATERS:
      raise ConfigError(f"RAFTStereoConfig.updater must be one of {UPDATERS}; got {self.updater!r}")
    if self.upsample not in UPSAMPLING:
      raise ConfigError(f"RAFTStereoConfig.upsample must be one of {UPSAMPLING}; got "
                       f"{self.upsample!r}")
    for name in ("hidden", "feature_dim", "corr_levels", "head_dim"):
      if getattr(self, name) < 1:
        raise ConfigError(f"RAFTStereoConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.hidden < 2 or self.corr_radius < 0:
      raise ConfigError("RAFTStereoConfig needs hidden >= 2 and corr_radius >= 0")
    if self.hidden_levels not in (1, 2, 3):
      raise ConfigError(f"RAFTStereoConfig.hidden_levels must be 1, 2 or 3; got "
                        f"{self.hidden_levels}")

  @property
  def factor(self) -> int:
    return 4  # two stride-2 stages

  @property
  def corr_channels(self) -> int:
    return self.corr_levels * (2 * self.corr_radius + 1)


def _conv(cin: int, cout: int, k: int, rngs: nnx.Rngs, stride: int = 1) -> nnx.Conv:
  return nnx.Conv(cin, cout, (k, k), strides=stride, padding="SAME", kernel_init=torch_default,
                  rngs=rngs)


class ResBlock(nnx.Module):
  """Two 3x3 convs with a skip connection, ReLU."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.conv1, self.conv2 = (_conv(channels, channels, 3, rngs) for _ in range(2))

  def __call__(self, x):
    return jax.nn.relu(x + self.conv2(jax.nn.relu(self.conv1(x))))


class Encoder(nnx.Module):
  """Image `[batch, H, W, cin]` -> features at 1/4 resolution `[batch, H/4, W/4, out]`."""

  def __init__(self, cin: int, dims: tuple[int, int], out: int, *, rngs: nnx.Rngs):
    self.stem = _conv(cin, dims[0], 7, rngs, stride=2)
    self.block1 = ResBlock(dims[0], rngs=rngs)
    self.down = _conv(dims[0], dims[1], 3, rngs, stride=2)
    self.block2 = ResBlock(dims[1], rngs=rngs)
    self.out = _conv(dims[1], out, 1, rngs)

  def __call__(self, x):
    x = self.block1(jax.nn.relu(self.stem(x)))
    return self.out(self.block2(jax.nn.relu(self.down(x))))


def correlation_pyramid(f1: jax.Array, f2: jax.Array, levels: int) -> list[jax.Array]:
  """RAFT-Stereo's 1-D correlation `[batch, H, W1, W2]` and its pooled levels (along W2)."""
  corr = jnp.einsum("bhwc,bhvc->bhwv", f1, f2) / jnp.sqrt(jnp.float32(f1.shape[-1]))
  pyramid = [corr]
  for _ in range(levels - 1):
    c = pyramid[-1]
    width = c.shape[-1] // 2 * 2
    pyramid.append(c[..., :width].reshape(*c.shape[:-1], width // 2, 2).mean(-1))
  return pyramid


def _interp(values: jax.Array, x: jax.Array) -> jax.Array:
  """Linear interpolation of `values [..., W]` at positions `x [..., S]` (zero outside)."""
  width = values.shape[-1]
  x0 = jnp.floor(x)
  frac = x - x0
  x0 = x0.astype(jnp.int32)

  def take(i):
    inside = (i >= 0) & (i < width)
    got = jnp.take_along_axis(values, jnp.clip(i, 0, width - 1), axis=-1)
    return jnp.where(inside, got, 0.0)

  return (1 - frac) * take(x0) + frac * take(x0 + 1)


def lookup(pyramid: list[jax.Array], disparity: jax.Array, radius: int) -> jax.Array:
  """Correlation features `[batch, H, W, levels (2 r + 1)]` around `x - d` at each level."""
  width = disparity.shape[2]
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  x = jnp.arange(width, dtype=jnp.float32)[None, None, :] - disparity  # [B, H, W]
  out = []
  for level, corr in enumerate(pyramid):
    out.append(_interp(corr, x[..., None] / 2**level + offsets))
  return jnp.concatenate(out, axis=-1)


class MotionEncoder(nnx.Module):
  """RAFT-Stereo's motion encoder (scaled down), output `hidden` channels."""

  def __init__(self, config: RAFTStereoConfig, *, rngs: nnx.Rngs):
    c, d = config.motion_dims
    self.corr1 = _conv(config.corr_channels, c, 1, rngs)
    self.corr2 = _conv(c, c, 3, rngs)
    self.disp1 = _conv(1, d, 7, rngs)
    self.disp2 = _conv(d, d, 3, rngs)
    self.out = _conv(c + d, config.hidden - 1, 3, rngs)

  def __call__(self, disparity, corr):
    disp = disparity[..., None]
    c = jax.nn.relu(self.corr2(jax.nn.relu(self.corr1(corr))))
    d = jax.nn.relu(self.disp2(jax.nn.relu(self.disp1(disp))))
    return jnp.concatenate([jax.nn.relu(self.out(jnp.concatenate([c, d], -1))), disp], -1)


class ConvGRU(nnx.Module):
  """RAFT-Stereo's ConvGRU: `z, r = sigmoid(conv([h ; x]))`, `q = tanh(conv([r h ; x]))`,
  `h_new = (1 - z) h + z q` (3x3 convs; one update reaches 2 pixels)."""

  def __init__(self, hidden: int, inputs: int, *, rngs: nnx.Rngs):
    self.convz, self.convr, self.convq = (_conv(hidden + inputs, hidden, 3, rngs)
                                          for _ in range(3))

  def __call__(self, h, *xs):
    x = jnp.concatenate(xs, axis=-1)
    hx = jnp.concatenate([h, x], axis=-1)
    z, r = jax.nn.sigmoid(self.convz(hx)), jax.nn.sigmoid(self.convr(hx))
    q = jnp.tanh(self.convq(jnp.concatenate([r * h, x], axis=-1)))
    return (1 - z) * h + z * q


def upsample_bilinear(disparity: jax.Array, factor: int) -> jax.Array:
  """`[batch, h, w]` -> `[batch, h f, w f]`, values times f (disparity in full-res pixels)."""
  b, h, w = disparity.shape
  return factor * jax.image.resize(disparity, (b, h * factor, w * factor), "linear")


def upsample_convex(disparity: jax.Array, mask: jax.Array, factor: int) -> jax.Array:
  """RAFT's convex upsampling: each full-res pixel a softmax-weighted mix of the 3x3 coarse
  neighbours (times f). `mask`: `[batch, h, w, 9 f^2]` logits."""
  b, h, w = disparity.shape
  weights = jax.nn.softmax(mask.reshape(b, h, w, 9, factor, factor), axis=3)
  padded = jnp.pad(factor * disparity, ((0, 0), (1, 1), (1, 1)))
  patches = jnp.stack([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], -1)
  up = jnp.einsum("bhwk,bhwkij->bhiwj", patches, weights)
  return up.reshape(b, h * factor, w * factor)


def avgpool2x(x: jax.Array) -> jax.Array:
  """3x3 average pool, stride 2, padding 1, zeros counted (PyTorch's `F.avg_pool2d(x, 3, 2, 1)`),
  `[batch, H, W, C]`."""
  summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 2, 2, 1),
                                 ((0, 0), (1, 1), (1, 1), (0, 0)))
  return summed / 9.0


def resize_align_corners(x: jax.Array, height: int, width: int) -> jax.Array:
  """Bilinear resize of `[batch, h, w, C]` to `[batch, height, width, C]` with aligned corners
  (PyTorch's `interpolate(..., mode="bilinear", align_corners=True)`)."""
  def axis(n_in, n_out):
    pos = jnp.arange(n_out, dtype=jnp.float32) * ((n_in - 1) / max(n_out - 1, 1))
    lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, n_in - 1)
    hi = jnp.clip(lo + 1, 0, n_in - 1)
    return lo, hi, pos - lo
  y0, y1, fy = axis(x.shape[1], height)
  x0, x1, fx = axis(x.shape[2], width)
  rows = (x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None])
  return rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]


def _updater(cfg: RAFTStereoConfig, inputs: int, rngs: nnx.Rngs) -> nnx.Module:
  if cfg.updater == "gru":
    return ConvGRU(cfg.hidden, inputs, rngs=rngs)
  return ConvSS2D(cfg.hidden, inputs, cfg.ss2d, rngs=rngs)


class RAFTStereo(nnx.Module):
  """The tiny RAFT-Stereo; `model(left, right, iters)` -> predictions `[iters, batch, H, W]`."""

  def __init__(self, config: RAFTStereoConfig, *, rngs: nnx.Rngs):
    self.config = config
    cfg = config
    self.fnet = Encoder(1, cfg.encoder_dims, cfg.feature_dim, rngs=rngs)
    self.cnet = Encoder(1, cfg.encoder_dims, cfg.hidden, rngs=rngs)
    self.motion = MotionEncoder(cfg, rngs=rngs)
    # The finest level's updater reads the motion features (and the next level up); a coarser
    # level reads the pooled finer state (and the next level up, upsampled); spec 1.3.
    levels = cfg.hidden_levels
    self.updater = _updater(cfg, cfg.hidden * (2 if levels > 1 else 1), rngs)
    self.coarse = nnx.List([_updater(cfg, cfg.hidden * (2 if lvl < levels - 1 else 1), rngs)
                            for lvl in range(1, levels)])
    self.context_down = nnx.List([_conv(cfg.hidden, cfg.hidden, 3, rngs, stride=2)
                                  for _ in range(1, levels)])
    self.head1 = _conv(cfg.hidden, cfg.head_dim, 3, rngs)
    self.head2 = _conv(cfg.head_dim, 1, 3, rngs)
    if cfg.upsample == "convex":
      self.mask1 = _conv(cfg.hidden, cfg.head_dim, 3, rngs)
      self.mask2 = _conv(cfg.head_dim, 9 * cfg.factor**2, 1, rngs)

  def update(self, hs, disparity, pyramid):
    """One refinement step: `(hidden states, disparity)` -> `(hidden states, disparity, full-res
    prediction)`; `hs` lists the hidden states finest first."""
    cfg = self.config
    hs = list(hs)
    disparity = jax.lax.stop_gradient(disparity)
    up = lambda x, like: resize_align_corners(x, like.shape[1], like.shape[2])
    for lvl in range(len(hs) - 1, 0, -1):  # coarsest first (StereoAdapter-2's order)
      inputs = [avgpool2x(hs[lvl - 1])]
      if lvl + 1 < len(hs):
        inputs.append(up(hs[lvl + 1], hs[lvl]))
      hs[lvl] = self.coarse[lvl - 1](hs[lvl], *inputs)
    corr = lookup(pyramid, disparity, cfg.corr_radius)
    inputs = [self.motion(disparity, corr)] + ([up(hs[1], hs[0])] if len(hs) > 1 else [])
    hs[0] = self.updater(hs[0], *inputs)
    h = hs[0]
    disparity = disparity + self.head2(jax.nn.relu(self.head1(h)))[..., 0]
    if cfg.upsample == "convex":
      mask = 0.25 * self.mask2(jax.nn.relu(self.mask1(h)))
      return hs, disparity, upsample_convex(disparity, mask, cfg.factor)
    return hs, disparity, upsample_bilinear(disparity, cfg.factor)

  def __call__(self, left: jax.Array, right: jax.Array, iters: int) -> jax.Array:
    cfg = self.config
    f = self.fnet(jnp.concatenate([left, right], axis=0))
    f1, f2 = jnp.split(f, 2, axis=0)
    pyramid = correlation_pyramid(f1, f2, cfg.corr_levels)
    context = [self.cnet(left)]
    for down in self.context_down:
      context.append(down(jax.nn.relu(context[-1])))
    hs = [jnp.tanh(c) for c in context]
    disparity = jnp.zeros(hs[0].shape[:3], hs[0].dtype)
    preds = []
    # A Python loop: under `lax.scan` XLA's CPU convolutions (and their gradients) ran 3-8x
    # slower in our timing, at the price of a longer compile.
    for _ in range(iters):
      hs, disparity, up = self.update(hs, disparity, pyramid)
      preds.append(up)
    return jnp.stack(preds)


def sequence_loss(preds: jax.Array, target: jax.Array, valid: jax.Array,
                  gamma: float = 0.9) -> jax.Array:
  """RAFT-Stereo's sequence loss: `sum_i w_i mean_valid |d_i - d_gt|`, `w_i = g^(n - i - 1)`,
  `g = gamma^(15 / (n - 1))` (StereoAdapter-2's training code).

  Args:
    preds: `[n, batch, H, W]` full-resolution predictions.
    target, valid: `[batch, H, W]` ground truth and its 0/1 mask.
    gamma: the base (0.9).
  """
  n = preds.shape[0]
  g = gamma ** (15.0 / (n - 1)) if n > 1 else 1.0
  weights = g ** jnp.arange(n - 1, -1, -1, dtype=jnp.float32)
  err = jnp.sum(jnp.abs(preds - target) * valid, axis=(1, 2, 3)) / jnp.maximum(jnp.sum(valid), 1)
  return jnp.sum(weights * err)
