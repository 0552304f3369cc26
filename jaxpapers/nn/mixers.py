"""Sequence mixers of 2Mamba2Furious (Mongaras & Larson, arXiv 2602.17363) behind one interface.

`Mixer(d_model, MixerConfig(kind=...), rngs=...)` maps `[batch, seq, d_model]` to the same
shape; the kind is a config field, so a model swaps mixers without code changes:

* "mamba2s" (paper Secs. 3-4, Alg. 4): linear attention `((Q K^T / sqrt d) o AM) (V dt)` with
  the softplus decay mask, then an RMSNorm over the heads.
* "2mamba" (Sec. 5, Alg. 5): squared scores with row-sum ("SM") normalisation, no dt, no norm.
* "2mamba_e" (Sec. 6): exponential scores with SM norm, i.e. causal softmax attention with
  the additive log-decay `Acs_i - Acs_j`; NoPE.
* "softmax": the softmax baseline with the same decay, and RoPE on q and k by default.

All kinds share the front end: `QKV = causal_depthwise_conv(h W_QKV)` (kernel `conv_size`,
bias, no activation; initialised as the identity on the current token), and the per-token,
per-head log-decay `A = -softplus(h W_A [+ b_A])`.

Decoding: `init_cache` / `decode_step` run one token at a time. The "mamba2s" and "2mamba"
caches have constant size (conv window plus the recurrent state of Sec. 5.1 and Alg. 6); the
exponential kinds keep a KV cache.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn import partitioning as pt
from jaxpapers.nn import second_order
from jaxpapers.nn.norms import RMSNorm
from jaxpapers.nn.rope import rope
from kernels_pallas.second_order_attention import ops as attention_ops
from kernels_pallas.second_order_attention import reference

KINDS = ("mamba2s", "2mamba", "2mamba_e", "softmax")
IMPLEMENTATIONS = ("xla", "pallas", "chunked")


@dataclasses.dataclass(frozen=True)
class MixerConfig:
  """What a mixer computes and how.

  Attributes:
    kind: one of KINDS.
    num_heads, head_dim: heads H and their width d.
    conv_size: causal depthwise conv window on QKV (0 or 1: no conv).
    decay_bias: add a bias to the decay projection (`A = -softplus(h W_A + b_A)`), initialised
      like Mamba's dt bias so that `softplus(b_A)` is log-uniform in [1e-3, 1e-1] (slow decay).
    value_discretization: multiply V by `dt = softplus(h W_dt)`; None = only for "mamba2s".
    rope: rotary embedding on q, k; None = only for "softmax".
    implementation: "xla" (dense quadratic), "pallas" (the flash-style kernel; 2mamba and the
      exponential kinds) or "chunked" (Mamba-2's SSD chunked form; mamba2s and 2mamba).
    chunk: chunk length of the chunked form.
    eps: clamp of the 2Mamba denominator.
  """

  kind: str = "2mamba"
  num_heads: int = 4
  head_dim: int = 16
  conv_size: int = 2
  decay_bias: bool = False
  value_discretization: bool | None = None
  rope: bool | None = None
  implementation: str = "xla"
  chunk: int = 64
  eps: float = reference.DEFAULT_EPS

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"mixer kind must be one of {KINDS}; got {self.kind!r}")
    if self.implementation not in IMPLEMENTATIONS:
      raise ValueError(f"mixer implementation must be one of {IMPLEMENTATIONS}; got "
                       f"{self.implementation!r}")
    if self.implementation == "chunked" and self.exponential:
      raise ValueError(f"kind {self.kind!r} has no chunked form (it needs a KV cache); use "
                       "implementation='xla' or 'pallas'")
    if self.implementation == "pallas" and self.kind == "mamba2s":
      raise ValueError("kind 'mamba2s' has no Pallas kernel; use implementation='xla' or 'chunked'")
    if self.num_heads < 1 or self.head_dim < 2 or self.conv_size < 0 or self.chunk < 1:
      raise ValueError("num_heads >= 1, head_dim >= 2, conv_size >= 0 and chunk >= 1 required; "
                       f"got {self.num_heads}, {self.head_dim}, {self.conv_size}, {self.chunk}")

  @property
  def exponential(self) -> bool:
    return self.kind in ("2mamba_e", "softmax")

  @property
  def uses_dt(self) -> bool:
    return self.kind == "mamba2s" if self.value_discretization is None else self.value_discretization

  @property
  def uses_rope(self) -> bool:
    return self.kind == "softmax" if self.rope is None else self.rope


class MixerCache(NamedTuple):
  """Decoding cache of one mixer.

  Attributes:
    conv: the last `conv_size - 1` pre-conv QKV rows, `[batch, conv_size - 1, 3 H d]`.
    position: tokens seen so far (int32 scalar).
    state: recurrent state (mamba2s / 2mamba), or None.
    keys, values: `[batch, max_len, H, d]` KV cache (exponential kinds), or None.
    acs: cumulative log-decay of each cached key, `[batch, max_len, H]`, and at `acs_now`
      `[batch, H]` the current one (exponential kinds), or None.
  """

  conv: jax.Array
  position: jax.Array
  state: second_order.DecodeState | None = None
  keys: jax.Array | None = None
  values: jax.Array | None = None
  acs: jax.Array | None = None
  acs_now: jax.Array | None = None


class Mixer(nnx.Module):
  """One 2Mamba-family mixer (see the module docstring).

  Args:
    d_model: model width.
    config: the mixer's `MixerConfig`.
    rngs: parameter initialisation.
  """

  def __init__(self, d_model: int, config: MixerConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.d_model = d_model
    h, d = config.num_heads, config.head_dim
    width = 3 * h * d
    init = nnx.initializers.lecun_normal()
    self.qkv = pt.param(init(rngs.params(), (d_model, width), jnp.float32), (pt.EMBED, pt.HEADS))
    if config.conv_size > 1:
      identity = jnp.zeros((config.conv_size, width), jnp.float32).at[-1].set(1.0)
      self.conv_kernel = nnx.Param(identity)
      self.conv_bias = nnx.Param(jnp.zeros((width,), jnp.float32))
    self.w_decay = pt.param(init(rngs.params(), (d_model, h), jnp.float32), (pt.EMBED, None))
    b_decay = None
    if config.decay_bias:  # Mamba-2's dt init (paper Sec. 2.3): softplus(b) log-uniform in [1e-3, 1e-1]
      rate = jnp.exp(jax.random.uniform(rngs.params(), (h,), jnp.float32, jnp.log(1e-3),
                                        jnp.log(1e-1)))
      b_decay = nnx.Param(rate + jnp.log(-jnp.expm1(-rate)))  # inverse softplus
    self.b_decay = b_decay
    self.w_dt = (pt.param(init(rngs.params(), (d_model, h), jnp.float32), (pt.EMBED, None))
                 if config.uses_dt else None)
    self.out_norm = RMSNorm(h * d) if config.kind == "mamba2s" else None
    self.out = pt.param(init(rngs.params(), (h * d, d_model), jnp.float32), (pt.HEADS, pt.EMBED))

  # ---- shared pieces ----

  def _heads(self, x):
    return x.reshape(x.shape[:-1] + (self.config.num_heads, self.config.head_dim))

  def _log_decay(self, x):
    z = x @ self.w_decay[...]
    if self.b_decay is not None:
      z = z + self.b_decay[...]
    return -jax.nn.softplus(z)

  def _conv(self, u, history):
    """Causal depthwise conv of u `[b, t, c]` after `history` `[b, K-1, c]` (pre-conv rows, or
    None for zeros)."""
    if self.config.conv_size <= 1:
      return u
    size = self.config.conv_size
    if history is None:  # start of a sequence: zero history (pad keeps u's sharding)
      padded = jnp.pad(u, ((0, 0), (size - 1, 0), (0, 0)))
    else:
      padded = jnp.concatenate([history.astype(u.dtype), u], axis=1)
    kernel = self.conv_kernel[...]
    t = u.shape[1]
    out = sum(padded[:, m:m + t] * kernel[m] for m in range(size))
    return out + self.conv_bias[...]

  def _project(self, x, history, positions):
    """q, k, v `[b, t, H, d]` and log-decay `[b, t, H]` of x `[b, t, d_model]`."""
    cfg = self.config
    qkv = self._conv(x @ self.qkv[...], history)
    q, k, v = (self._heads(p) for p in jnp.split(qkv, 3, axis=-1))
    if cfg.uses_rope:
      q, k = rope(q, positions), rope(k, positions)
    if cfg.uses_dt:
      v = v * jax.nn.softplus(x @ self.w_dt[...])[..., None]
    return q, k, v, self._log_decay(x)

  def _finish(self, y):
    y = y.reshape(y.shape[:-2] + (-1,))
    if self.out_norm is not None:
      y = self.out_norm(y)
    return y @ self.out[...]

  # ---- parallel forward ----

  def __call__(self, x: jax.Array) -> jax.Array:
    """Mixes x `[batch, seq, d_model]` causally."""
    if x.ndim != 3 or x.shape[-1] != self.d_model:
      raise ValueError(f"Mixer expects [batch, seq, {self.d_model}]; got {tuple(x.shape)}")
    cfg = self.config
    positions = jnp.arange(x.shape[1])[None]
    q, k, v, a = self._project(x, None, positions)
    if cfg.kind == "mamba2s":
      if cfg.implementation == "chunked":
        y, _ = second_order.chunked_attention(q, k, v, a, chunk=cfg.chunk, variant="linear")
      else:
        y = reference.linear_attention(q, k, v, a)
    elif cfg.implementation == "chunked":
      y, _ = second_order.chunked_attention(q, k, v, a, chunk=cfg.chunk, eps=cfg.eps)
    else:
      y = attention_ops.second_order_attention(
          q, k, v, a, variant="exp" if cfg.exponential else "square", eps=cfg.eps,
          implementation=cfg.implementation)
    return self._finish(y)

  # ---- decoding ----

  def init_cache(self, batch: int, max_len: int | None = None) -> MixerCache:
    """An empty decoding cache; the exponential kinds need `max_len` (their KV cache)."""
    cfg = self.config
    h, d = cfg.num_heads, cfg.head_dim
    conv = jnp.zeros((batch, max(cfg.conv_size - 1, 0), 3 * h * d), jnp.float32)
    position = jnp.zeros((), jnp.int32)
    if not cfg.exponential:
      variant = "linear" if cfg.kind == "mamba2s" else "square"
      return MixerCache(conv, position, state=second_order.init_decode_state(batch, h, d, variant))
    if max_len is None:
      raise ValueError(f"kind {cfg.kind!r} decodes with a KV cache: pass max_len")
    kv = jnp.zeros((batch, max_len, h, d), jnp.float32)
    return MixerCache(conv, position, keys=kv, values=kv, acs=jnp.zeros((batch, max_len, h)),
                      acs_now=jnp.zeros((batch, h)))

  def decode_step(self, cache: MixerCache, x: jax.Array) -> tuple[jax.Array, MixerCache]:
    """Mixes one new token x `[batch, d_model]` given the cache; returns `(y, new cache)`."""
    cfg = self.config
    if x.ndim != 2 or x.shape[-1] != self.d_model:
      raise ValueError(f"decode_step expects [batch, {self.d_model}]; got {tuple(x.shape)}")
    xt = x[:, None]
    positions = jnp.broadcast_to(cache.position, (x.shape[0], 1))
    q, k, v, a = (p[:, 0] for p in self._project(xt, cache.conv, positions))
    pre = xt @ self.qkv[...]
    conv = jnp.concatenate([cache.conv, pre], axis=1)[:, 1:] if cfg.conv_size > 1 else cache.conv
    if not cfg.exponential:
      variant = "linear" if cfg.kind == "mamba2s" else "square"
      y, state = second_order.decode_step(cache.state, q, k, v, a, variant=variant, eps=cfg.eps)
      cache = cache._replace(conv=conv, position=cache.position + 1, state=state)
      return self._finish(y), cache
    y, cache = _kv_decode(cache, q, k, v, a)
    return self._finish(y), cache._replace(conv=conv)


def _kv_decode(cache: MixerCache, q, k, v, a):
  """One step of causal softmax attention with the additive log-decay over a KV cache."""
  pos = cache.position
  acs_now = cache.acs_now + a
  keys = jax.lax.dynamic_update_slice_in_dim(cache.keys, k[:, None].astype(cache.keys.dtype), pos, 1)
  values = jax.lax.dynamic_update_slice_in_dim(cache.values, v[:, None].astype(cache.values.dtype),
                                               pos, 1)
  acs = jax.lax.dynamic_update_slice_in_dim(cache.acs, acs_now[:, None], pos, 1)
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bhd,bjhd->bhj", q.astype(jnp.float32), keys) * scale
  logits = logits + jnp.minimum(acs_now[:, :, None] - jnp.swapaxes(acs, 1, 2), 0.0)
  valid = jnp.arange(keys.shape[1]) <= pos
  p = jax.nn.softmax(jnp.where(valid, logits, -jnp.inf), axis=-1)
  y = jnp.einsum("bhj,bjhd->bhd", p, values).astype(q.dtype)
  return y, cache._replace(position=pos + 1, keys=keys, values=values, acs=acs, acs_now=acs_now)


def kv_cache_decode_step(cache: MixerCache, q: jax.Array, k: jax.Array, v: jax.Array,
                         log_decay: jax.Array) -> tuple[jax.Array, MixerCache]:
  """Softmax-with-decay decode on raw `[batch, heads, dim]` q, k, v (the KV-cache baseline)."""
  return _kv_decode(cache, q, k, v, log_decay)
