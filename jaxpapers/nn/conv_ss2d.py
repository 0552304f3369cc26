"""ConvSS2D: StereoAdapter-2's update operator (arXiv 2602.16915; official code
`core/ss2d_update_without_inp_list.py`), VMamba's SS2D (arXiv 2401.10166, `SS2Dv2`,
forward_type "v3") as a residual hidden-state update.

`ConvSS2D(h, x)`:  `hx = Linear([h ; x])`,  `h_new = h + tanh(SS2D(hx))` (no gates, no context
injection). `SS2D(x)` on a `[batch, H, W, C]` map (channels last):

1. `[xi ; z] = W_in x` (no bias), `z = SiLU(z)`; `xi = SiLU(DepthwiseConv3x3(xi) + b)`.
2. `cross_scan`: four sequences of the `L = H W` pixels (`mode="cross2d"`): row-major, column-
   major and both reversed; the scan runs across row ends (raster order). `"bidi"` (horizontal
   only): row-major twice and reversed twice; `"unidi"`: row-major four times. Always four
   parameter sets.
3. Per direction k: `[dt_low ; B ; C] = W_x[k] u`, `delta = softplus(W_dt[k] dt_low + b_dt[k])`,
   the Mamba-1 selective scan with `A = -exp(A_log[k])` and skip `D[k]`
   (`kernels_pallas.selective_scan`, one `jax.vmap` over the directions).
4. `cross_merge`: each direction's outputs back to pixel order, summed; LayerNorm over channels,
   times z, `W_out` (no bias).

Initialisation as Mamba's ("v0" in VMamba): `A_log[k, c, n] = log(n + 1)`, `D = 1`, `W_dt`
uniform in `+-dt_rank^-0.5`, `b_dt = softplus^-1(dt0)` with `dt0 = exp(U[log 1e-3, log 1e-1])`
clamped at >= 1e-4; the linear layers as PyTorch's default (uniform in `+-fan_in^-0.5`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

import kernels_pallas
from jaxpapers.core.errors import ConfigError
from jaxpapers.nn.flat_random import flat_uniform

MODES = ("cross2d", "bidi", "unidi")
SCANS = ("pallas", "associative", "sequential")
K = 4  # scan directions (parameter sets) in every mode


def torch_default(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """PyTorch's default Linear/Conv weight init (kaiming_uniform with a = sqrt(5)): U(+-fan_in^
  -0.5), fan_in = prod(shape[:-1]); the same values as `nnx.initializers.variance_scaling(1 / 3,
  "fan_in", "uniform")` (its formula, `uniform(-1, 1) * sqrt(3 variance)`), drawn flat."""
  dtype = dtype or jnp.float32
  receptive = math.prod(shape) / shape[-2] / shape[-1]  # variance_scaling's arithmetic, in order
  variance = jnp.array((1.0 / 3.0) / (shape[-2] * receptive), dtype=dtype)
  return flat_uniform(key, shape, -1.0, 1.0, dtype) * jnp.sqrt(3 * variance)


@dataclasses.dataclass(frozen=True)
class SS2DConfig:
  """An SS2D block (StereoAdapter-2's defaults: d_state 16, ssm_ratio 1.0, d_conv 3).

  Attributes:
    d_model: channels in and out.
    d_state: N, the scan's state size per channel.
    ssm_ratio: d_inner / d_model.
    dt_rank: R, rank of the step-size projection (0: ceil(d_model / 16)).
    d_conv: depthwise convolution size.
    mode: "cross2d" (four directions), "bidi" (horizontal only) or "unidi" (row-major only).
    scan: selective-scan implementation ("pallas", "associative", "sequential").
    dt_min, dt_max, dt_floor: the step-size bias init range.
  """

  d_model: int
  d_state: int = 16
  ssm_ratio: float = 1.0
  dt_rank: int = 0
  d_conv: int = 3
  mode: str = "cross2d"
  scan: str = "associative"
  dt_min: float = 1e-3
  dt_max: float = 1e-1
  dt_floor: float = 1e-4

  def __post_init__(self):
    for name in ("d_model", "d_state", "d_conv"):
      if getattr(self, name) < 1:
        raise ConfigError(f"SS2DConfig.{name} must be >= 1, got {getattr(self, name)}")
    if self.ssm_ratio <= 0 or self.dt_rank < 0:
      raise ConfigError(f"SS2DConfig needs ssm_ratio > 0 and dt_rank >= 0; got "
                       f"{self.ssm_ratio}, {self.dt_rank}")
    if self.mode not in MODES:
      raise ConfigError(f"SS2DConfig.mode must be one of {MODES}; got {self.mode!r}")
    if self.scan not in SCANS:
      raise ConfigError(f"SS2DConfig.scan must be one of {SCANS}; got {self.scan!r}")

  @property
  def d_inner(self) -> int:
    return int(self.ssm_ratio * self.d_model)

  @property
  def rank(self) -> int:
    return self.dt_rank or math.ceil(self.d_model / 16)


def cross_scan(x: jax.Array, mode: str = "cross2d") -> jax.Array:
  """`[batch, H, W, D]` -> the four scan sequences `[batch, 4, H W, D]` (VMamba's
  `cross_scan_fwd`, scans=0): row-major, column-major, and both reversed (see `MODES`)."""
  batch, h, w, d = x.shape
  row = x.reshape(batch, h * w, d)
  if mode == "unidi":
    return jnp.stack([row] * K, axis=1)
  if mode == "bidi":
    return jnp.stack([row, row, row[:, ::-1], row[:, ::-1]], axis=1)
  col = jnp.swapaxes(x, 1, 2).reshape(batch, h * w, d)
  return jnp.stack([row, col, row[:, ::-1], col[:, ::-1]], axis=1)


def cross_merge(y: jax.Array, height: int, width: int, mode: str = "cross2d") -> jax.Array:
  """`[batch, 4, H W, D]` -> `[batch, H, W, D]`: each direction back to pixel order, summed
  (VMamba's `cross_merge_fwd`); the adjoint of `cross_scan`."""
  batch, _, _, d = y.shape
  if mode == "unidi":
    row = jnp.sum(y, axis=1)
  else:
    row = y[:, 0] + y[:, 2, ::-1]
    if mode == "bidi":
      row = row + y[:, 1] + y[:, 3, ::-1]
  out = row.reshape(batch, height, width, d)
  if mode == "cross2d":
    col = (y[:, 1] + y[:, 3, ::-1]).reshape(batch, width, height, d)
    out = out + jnp.swapaxes(col, 1, 2)
  return out


def _dt_bias(key: jax.Array, shape: tuple[int, ...], config: SS2DConfig) -> jax.Array:
  """`softplus^-1(dt0)`, `dt0 = exp(U[log dt_min, log dt_max])` clamped at dt_floor (Mamba)."""
  lo, hi = math.log(config.dt_min), math.log(config.dt_max)
  dt = jnp.exp(flat_uniform(key, shape, lo, hi))
  dt = jnp.maximum(dt, config.dt_floor)
  return dt + jnp.log(-jnp.expm1(-dt))


class SS2D(nnx.Module):
  """VMamba's 2-D selective scan block (see the module docstring), channels last."""

  def __init__(self, config: SS2DConfig, *, rngs: nnx.Rngs):
    self.config = config
    c, d, n, r = config.d_model, config.d_inner, config.d_state, config.rank
    self.in_proj = nnx.Linear(c, 2 * d, use_bias=False, kernel_init=torch_default, rngs=rngs)
    self.conv = nnx.Conv(d, d, (config.d_conv,) * 2, feature_group_count=d, padding="SAME",
                         kernel_init=torch_default, rngs=rngs)
    bound = d ** -0.5  # x_proj: PyTorch Linear default per direction (fan_in = d_inner)
    self.x_proj = nnx.Param(flat_uniform(rngs.params(), (K, d, r + 2 * n), -bound, bound))
    bound = r ** -0.5
    self.dt_proj = nnx.Param(flat_uniform(rngs.params(), (K, r, d), -bound, bound))
    self.dt_bias = nnx.Param(_dt_bias(rngs.params(), (K, d), config))
    self.A_log = nnx.Param(jnp.broadcast_to(jnp.log(jnp.arange(1, n + 1, dtype=jnp.float32)),
                                            (K, d, n)))
    self.Ds = nnx.Param(jnp.ones((K, d)))
    self.out_norm = nnx.LayerNorm(d, rngs=rngs)
    self.out_proj = nnx.Linear(d, c, use_bias=False, kernel_init=torch_default, rngs=rngs)

  def scan(self, xs: jax.Array) -> jax.Array:
    """The four directions' selective scans: `[batch, 4, L, D]` -> `[batch, 4, L, D]`."""
    cfg = self.config
    n, r = cfg.d_state, cfg.rank
    proj = jnp.einsum("bkld,kde->bkle", xs, self.x_proj[...])
    dt_low, b, c = proj[..., :r], proj[..., r:r + n], proj[..., r + n:]
    delta = jax.nn.softplus(jnp.einsum("bklr,krd->bkld", dt_low, self.dt_proj[...])
                            + self.dt_bias[...][:, None, :])
    a = -jnp.exp(self.A_log[...])
    scan = lambda u, dt, a_k, b_k, c_k, d_k: kernels_pallas.selective_scan(
        u, dt, a_k, b_k, c_k, d_k, implementation=cfg.scan)
    return jax.vmap(scan, in_axes=(1, 1, 0, 1, 1, 0), out_axes=1)(
        xs, delta, a, b, c, self.Ds[...])

  def __call__(self, x: jax.Array) -> jax.Array:
    _, h, w, _ = x.shape
    xi, z = jnp.split(self.in_proj(x), 2, axis=-1)
    xi = jax.nn.silu(self.conv(xi))
    y = cross_merge(self.scan(cross_scan(xi, self.config.mode)), h, w, self.config.mode)
    return self.out_proj(self.out_norm(y) * jax.nn.silu(z))


class ConvSS2D(nnx.Module):
  """`h_new = h + tanh(SS2D(Linear([h ; x])))` (StereoAdapter-2's ConvGRU replacement).

  Args:
    hidden: C_h, channels of the hidden state.
    inputs: C_x, channels of the concatenated input maps.
    config: the SS2D block (its `d_model` is set to `hidden`).
  """

  def __init__(self, hidden: int, inputs: int, config: SS2DConfig | None = None, *,
               rngs: nnx.Rngs):
    config = dataclasses.replace(config or SS2DConfig(hidden), d_model=hidden)
    self.proj = nnx.Linear(hidden + inputs, hidden, kernel_init=torch_default, rngs=rngs)
    self.ss2d = SS2D(config, rngs=rngs)

  def update(self, h: jax.Array, *xs: jax.Array) -> jax.Array:
    """The residual update `tanh(SS2D(Linear([h ; x])))` alone (`__call__` adds it to h)."""
    return jnp.tanh(self.ss2d(self.proj(jnp.concatenate([h, *xs], axis=-1))))

  def __call__(self, h: jax.Array, *xs: jax.Array) -> jax.Array:
    return h + self.update(h, *xs)
