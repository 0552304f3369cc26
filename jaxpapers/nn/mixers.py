"""Sequence mixers of 2Mamba2Furious (Mongaras & Larson, arXiv 2602.17363) behind one interface.

`Mixer(d_model, MixerConfig(kind=...), rngs=...)` maps `[batch, seq, d_model]` to the same
shape. The paper walks from Mamba-2 to 2Mamba by switching components on and off (Secs. 3-5,
Tables 1-3; the authors' code keeps each variant as a dict of switches,
`GPT_Trainer/LlamaDecoderLayerClean.py`); here every switch is a `MixerConfig` field and a
`kind` only sets their defaults, so any rung of that ladder is a kind plus overrides:

| kind | scores | norm | conv | decay `A` | other |
|---|---|---|---|---|---|
| "softmax" | exp | SM (softmax) | none | none | RoPE: the paper's softmax baseline |
| "softmax_decay" | exp | SM | k=2 | softplus | RoPE (2Mamba-E plus RoPE) |
| "linear" | linear | SM | none | none | ReLU on q, k (plain linear attention, Table 1) |
| "mamba2" | linear | gated RMSNorm | k=2, no bias | `-exp(A_log) dt` | SiLU on q, k, v; V dt; D; z gate; no `1/sqrt d` |
| "mamba2s" | linear | RMSNorm | k=2 | softplus | V dt (Alg. 4) |
| "2mamba" | square | SM | k=2 | softplus | (Alg. 5) |
| "2mamba_e" | exp | SM | k=2 | softplus | NoPE (Sec. 6) |

The pieces, in order (h = the mixer's input):

* `[Q | K | V] = act(causal_depthwise_conv(h W_QKV))`: the conv has window `conv_size` (0 or 1:
  none), a bias unless `conv_bias=False`, and starts as the identity on the current token (our
  init); `qk_activation` / `v_activation` act on its output (Mamba-2 applies SiLU to all three).
  Q and K have `state_dim` channels per head (Mamba-2's `d_state`; default `head_dim`).
* RoPE on Q, K when `rope`.
* Decay: "softplus" `A = -softplus(h W_A [+ b_A])` (Sec. 4), "discretize" Mamba-2's
  `A = -exp(A_log) dt` with `dt = softplus(h W_dt [+ b_dt])` and `A_log = log U[1, 16]`, or
  "none". `decay_bias` adds the bias, initialised like Mamba's dt bias (softplus of it
  log-uniform in [1e-3, 1e-1]).
* `value_discretization`: `V <- V dt` (with the decay's dt under "discretize", else
  `dt = softplus(h W_dt)`); `d_residual` keeps `D * V` (taken before dt, D per channel, init 1).
* Weights `w_ij = f(q_i . k_j * c) exp(Acs_i - Acs_j)`, `f` from `score` ("linear", "square",
  "exp"), `c = 1/sqrt(state_dim)` unless `qk_scale=False`; `norm="sm"` divides each row by its
  sum, `norm="output"` leaves it and applies an RMSNorm over the heads after the z gate
  (`y * SiLU(h W_z)` when `z_gate`; Mamba-2's gated RMSNorm with the gate before the norm).
* Mamba-2's gated-MLP branch (`gated_mlp` channels, `SiLU(h W_z0) * (h W_x0)`, concatenated
  before the output projection), for its module's `d_ssm < d_inner` layout (`mamba2_module`).

Decoding: `init_cache` / `decode_step` run one token at a time. Linear scores with the output
norm and squared scores with SM norm keep the constant-size recurrent state of Sec. 5.1 / Alg. 6
(plus the conv window); every other configuration keeps a KV cache and recomputes its weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn import partitioning as pt
from jaxpapers.nn import second_order
from jaxpapers.nn.norms import RMSNorm
from jaxpapers.nn.rope import rope
from kernels_pallas.second_order_attention import ops as attention_ops
from kernels_pallas.second_order_attention import reference

IMPLEMENTATIONS = ("xla", "pallas", "chunked")
SCORES = reference.SCORES
NORMS = ("sm", "output")
ACTIVATIONS = ("none", "relu", "silu")
DECAYS = ("none", "softplus", "discretize")

# Every switch a kind does not name takes its value from _BASE.
_BASE = dict(score="square", norm="sm", qk_activation="none", v_activation="none", conv_size=2,
             conv_bias=True, decay="softplus", decay_bias=False, value_discretization=False,
             d_residual=False, z_gate=False, rope=False, qk_scale=True)
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "softmax": dict(score="exp", conv_size=0, decay="none", rope=True),
    "softmax_decay": dict(score="exp", rope=True),
    "linear": dict(score="linear", conv_size=0, decay="none", qk_activation="relu"),
    "mamba2": dict(score="linear", norm="output", conv_bias=False, decay="discretize",
                   decay_bias=True, qk_activation="silu", v_activation="silu",
                   value_discretization=True, d_residual=True, z_gate=True, qk_scale=False),
    "mamba2s": dict(score="linear", norm="output", value_discretization=True),
    "2mamba": dict(),
    "2mamba_e": dict(score="exp"),
}
KINDS = tuple(KIND_DEFAULTS)
SWITCHES = tuple(_BASE)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
  if value not in choices:
    raise ValueError(f"mixer {name} must be one of {choices}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class MixerConfig:
  """What a mixer computes and how (see the module docstring for the pieces).

  Every switch left None takes the value of `kind` (`KIND_DEFAULTS`), so
  `dataclasses.replace(config, kind=...)` moves to another kind and keeps only the overrides.

  Attributes:
    kind: one of KINDS.
    num_heads, head_dim: heads H and the width d of their values.
    state_dim: width of q and k per head (Mamba-2's `d_state`); None = head_dim.
    score: "linear", "square" or "exp".
    norm: "sm" (row-sum normalisation; softmax for "exp") or "output" (RMSNorm over the heads).
    qk_activation, v_activation: "none", "relu" or "silu" after the conv.
    conv_size: causal depthwise conv window on QKV (0 or 1: no conv).
    conv_bias: a bias on that conv.
    decay: "none", "softplus" or "discretize".
    decay_bias: a bias on the decay's projection (W_A, or W_dt for "discretize").
    value_discretization: multiply V by dt.
    d_residual: add `D * V` to the output.
    z_gate: multiply the output by `SiLU(h W_z)` (before the output norm).
    rope: rotary embedding on q, k.
    qk_scale: scale the scores by `1/sqrt(state_dim)`.
    gated_mlp: width of Mamba-2's gated-MLP branch (0: none).
    implementation: "xla" (dense quadratic), "pallas" (the flash-style kernel; square or exp
      scores with SM norm) or "chunked" (Mamba-2's SSD form; linear scores with the output
      norm, or squared scores with SM norm).
    chunk: chunk length of the chunked form.
    eps: clamp of the SM-norm denominator.
  """

  kind: str = "2mamba"
  num_heads: int = 4
  head_dim: int = 16
  state_dim: int | None = None
  score: str | None = None
  norm: str | None = None
  qk_activation: str | None = None
  v_activation: str | None = None
  conv_size: int | None = None
  conv_bias: bool | None = None
  decay: str | None = None
  decay_bias: bool | None = None
  value_discretization: bool | None = None
  d_residual: bool | None = None
  z_gate: bool | None = None
  rope: bool | None = None
  qk_scale: bool | None = None
  gated_mlp: int = 0
  implementation: str = "xla"
  chunk: int = 64
  eps: float = reference.DEFAULT_EPS

  def __post_init__(self):
    _check_choice("kind", self.kind, KINDS)
    _check_choice("implementation", self.implementation, IMPLEMENTATIONS)
    s = self.switches
    _check_choice("score", s["score"], SCORES)
    _check_choice("norm", s["norm"], NORMS)
    _check_choice("qk_activation", s["qk_activation"], ACTIVATIONS)
    _check_choice("v_activation", s["v_activation"], ACTIVATIONS)
    _check_choice("decay", s["decay"], DECAYS)
    if self.num_heads < 1 or self.head_dim < 2 or self.state_width < 2 or self.chunk < 1:
      raise ValueError("num_heads >= 1, head_dim >= 2, state_dim >= 2 and chunk >= 1 required; "
                       f"got {self.num_heads}, {self.head_dim}, {self.state_width}, {self.chunk}")
    if s["conv_size"] < 0 or self.gated_mlp < 0:
      raise ValueError(f"conv_size and gated_mlp must be >= 0; got {s['conv_size']}, "
                       f"{self.gated_mlp}")
    if s["score"] == "exp" and s["norm"] != "sm":
      raise ValueError("exponential scores need norm='sm' (unnormalised exp weights overflow)")
    if s["rope"] and self.state_width % 2:
      raise ValueError(f"rope needs an even state_dim; got {self.state_width}")
    pair = (s["score"], s["norm"])
    if self.implementation == "chunked" and (pair not in _RECURRENT or self.state_dim_differs):
      raise ValueError(f"kind {self.kind!r} with score={pair[0]!r}, norm={pair[1]!r} has no "
                       "chunked form (linear+output or square+sm with state_dim == head_dim); "
                       "use implementation='xla'" + ("" if pair[0] == "linear" else " or 'pallas'"))
    if self.implementation == "pallas" and (pair[1] != "sm" or pair[0] == "linear"
                                            or self.state_dim_differs):
      raise ValueError(f"kind {self.kind!r} with score={pair[0]!r}, norm={pair[1]!r} has no "
                       "Pallas kernel (square or exp scores with norm='sm', state_dim == "
                       "head_dim); use implementation='xla' or 'chunked'")

  @property
  def switches(self) -> dict[str, Any]:
    """Every switch resolved: the field if set, else the kind's default."""
    defaults = {**_BASE, **KIND_DEFAULTS[self.kind]}
    return {k: defaults[k] if getattr(self, k) is None else getattr(self, k) for k in SWITCHES}

  @property
  def state_width(self) -> int:
    return self.head_dim if self.state_dim is None else self.state_dim

  @property
  def state_dim_differs(self) -> bool:
    return self.state_width != self.head_dim

  @property
  def recurrent(self) -> bool:
    """Whether decoding keeps a constant-size state (else a KV cache)."""
    s = self.switches
    return (s["score"], s["norm"]) in _RECURRENT


_RECURRENT = {("linear", "output"): "linear", ("square", "sm"): "square"}


def mamba2_module(d_model: int, head_dim: int = 64, d_state: int = 128,
                  **overrides: Any) -> MixerConfig:
  """The authors' Mamba-2 baseline layer as a MixerConfig.

  Their code (`GPT_Trainer/LlamaDecoderLayerClean.py`, config "mamba") builds
  `mamba_ssm.Mamba2(d_model, d_conv=2, expand=1, headdim=head_dim, d_ssm=head_dim, ngroups=1,
  A_init_range=(1, 16), D_has_hdim=True, rmsnorm=True, norm_before_gate=False, bias=False,
  conv_bias=False)` with the default `d_state=128`: one SSM head of width `head_dim` whose B and
  C (our k and q) have `d_state` channels, and the remaining `d_model - head_dim` channels of
  the block as Mamba's SiLU-gated MLP branch.
  """
  if not 0 < head_dim <= d_model:
    raise ValueError(f"head_dim must be in (0, d_model={d_model}]; got {head_dim}")
  return MixerConfig(**{"kind": "mamba2", "num_heads": 1, "head_dim": head_dim,
                        "state_dim": d_state, "gated_mlp": d_model - head_dim, **overrides})


class MixerCache(NamedTuple):
  """Decoding cache of one mixer.

  Attributes:
    conv: the last `conv_size - 1` pre-conv QKV rows, `[batch, conv_size - 1, width]`.
    position: tokens seen so far (int32 scalar).
    state: recurrent state (`MixerConfig.recurrent`), or None.
    keys, values: `[batch, max_len, H, state_dim]` and `[batch, max_len, H, d]` KV cache
      (otherwise), or None.
    acs: cumulative log-decay of each cached key, `[batch, max_len, H]`, and at `acs_now`
      `[batch, H]` the current one (KV cache), or None.
  """

  conv: jax.Array
  position: jax.Array
  state: second_order.DecodeState | None = None
  keys: jax.Array | None = None
  values: jax.Array | None = None
  acs: jax.Array | None = None
  acs_now: jax.Array | None = None


def _activation(name: str, x: jax.Array) -> jax.Array:
  if name == "relu":
    return jax.nn.relu(x)
  if name == "silu":
    return jax.nn.silu(x)
  return x


def _mamba_dt_bias(key: jax.Array, heads: int) -> jax.Array:
  """Mamba's dt bias: `softplus(b)` log-uniform in [1e-3, 1e-1] (floor 1e-4), per head."""
  rate = jnp.exp(jax.random.uniform(key, (heads,), jnp.float32, jnp.log(1e-3), jnp.log(1e-1)))
  rate = jnp.maximum(rate, 1e-4)
  return rate + jnp.log(-jnp.expm1(-rate))  # inverse softplus


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
    s = config.switches
    h, d, n = config.num_heads, config.head_dim, config.state_width
    width = h * (2 * n + d)
    init = nnx.initializers.lecun_normal()
    draw = lambda shape, names: pt.param(init(rngs.params(), shape, jnp.float32), names)
    # Draw order: qkv, w_decay, b_decay, w_dt (the original kinds' order), then the rest.
    self.qkv = draw((d_model, width), (pt.EMBED, pt.HEADS))
    conv = s["conv_size"] > 1
    self.conv_kernel = (nnx.Param(jnp.zeros((s["conv_size"], width), jnp.float32).at[-1].set(1.0))
                        if conv else None)
    self.conv_bias = nnx.Param(jnp.zeros((width,), jnp.float32)) if conv and s["conv_bias"] else None
    softplus = s["decay"] == "softplus"
    self.w_decay = draw((d_model, h), (pt.EMBED, None)) if softplus else None
    self.b_decay = (nnx.Param(_mamba_dt_bias(rngs.params(), h)) if softplus and s["decay_bias"]
                    else None)
    discretize = s["decay"] == "discretize"
    needs_dt = s["value_discretization"] or discretize
    self.w_dt = draw((d_model, h), (pt.EMBED, None)) if needs_dt else None
    self.b_dt = (nnx.Param(_mamba_dt_bias(rngs.params(), h)) if discretize and s["decay_bias"]
                 else None)
    self.a_log = (nnx.Param(jnp.log(jax.random.uniform(rngs.params(), (h,), jnp.float32, 1.0,
                                                       16.0))) if discretize else None)
    self.d_skip = nnx.Param(jnp.ones((h, d), jnp.float32)) if s["d_residual"] else None
    self.w_z = draw((d_model, h * d), (pt.EMBED, pt.HEADS)) if s["z_gate"] else None
    self.w_mlp = (draw((d_model, 2 * config.gated_mlp), (pt.EMBED, pt.MLP))
                  if config.gated_mlp else None)
    self.out_norm = RMSNorm(h * d) if s["norm"] == "output" else None
    self.out = draw((h * d + config.gated_mlp, d_model), (pt.HEADS, pt.EMBED))

  @property
  def spec(self) -> dict[str, Any]:
    """The config's resolved switches (`MixerConfig.switches`)."""
    return self.config.switches

  # ---- shared pieces ----

  def _log_decay(self, x, dt):
    if self.spec["decay"] == "softplus":
      z = x @ self.w_decay[...]
      if self.b_decay is not None:
        z = z + self.b_decay[...]
      return -jax.nn.softplus(z)
    if self.spec["decay"] == "discretize":
      return -jnp.exp(self.a_log[...]) * dt
    return jnp.zeros(x.shape[:-1] + (self.config.num_heads,), jnp.float32)

  def _conv(self, u, history):
    """Causal depthwise conv of u `[b, t, c]` after `history` `[b, K-1, c]` (pre-conv rows, or
    None for zeros)."""
    if self.conv_kernel is None:
      return u
    size = self.spec["conv_size"]
    if history is None:  # start of a sequence: zero history (pad keeps u's sharding)
      padded = jnp.pad(u, ((0, 0), (size - 1, 0), (0, 0)))
    else:
      padded = jnp.concatenate([history.astype(u.dtype), u], axis=1)
    kernel = self.conv_kernel[...]
    t = u.shape[1]
    out = sum(padded[:, m:m + t] * kernel[m] for m in range(size))
    return out if self.conv_bias is None else out + self.conv_bias[...]

  def _project(self, x, history, positions):
    """q, k `[b, t, H, n]`, v `[b, t, H, d]`, log-decay `[b, t, H]` and the D-residual term
    (or None) of x `[b, t, d_model]`."""
    cfg, s = self.config, self.spec
    h, n = cfg.num_heads, cfg.state_width
    qkv = self._conv(x @ self.qkv[...], history)
    q, k, v = jnp.split(qkv, [h * n, 2 * h * n], axis=-1)
    q = _activation(s["qk_activation"], q.reshape(q.shape[:-1] + (h, n)))
    k = _activation(s["qk_activation"], k.reshape(k.shape[:-1] + (h, n)))
    v = _activation(s["v_activation"], v.reshape(v.shape[:-1] + (h, cfg.head_dim)))
    if s["rope"]:
      q, k = rope(q, positions), rope(k, positions)
    dt = None
    if self.w_dt is not None:
      z = x @ self.w_dt[...]
      dt = jax.nn.softplus(z if self.b_dt is None else z + self.b_dt[...])
    skip = v * self.d_skip[...] if self.d_skip is not None else None
    if s["value_discretization"]:
      v = v * dt[..., None]
    return q, k, v, self._log_decay(x, dt), skip

  def _finish(self, y, x, skip):
    """Output projection of the heads' outputs y `[..., H, d]` (x: the mixer's input)."""
    if skip is not None:
      y = y + skip
    y = y.reshape(y.shape[:-2] + (-1,))
    if self.w_z is not None:
      y = y * jax.nn.silu(x @ self.w_z[...])
    if self.out_norm is not None:
      y = self.out_norm(y)
    if self.w_mlp is not None:
      gate, up = jnp.split(x @ self.w_mlp[...], 2, axis=-1)
      y = jnp.concatenate([jax.nn.silu(gate) * up, y], axis=-1)  # Mamba-2's order
    return y @ self.out[...]

  @property
  def _scale(self) -> float:
    return self.config.state_width ** -0.5 if self.spec["qk_scale"] else 1.0

  def _attend(self, q, k, v, a):
    cfg, s = self.config, self.spec
    score, normalize = s["score"], s["norm"] == "sm"
    if cfg.implementation == "chunked":
      seq = q.shape[1]
      padded = -(-seq // cfg.chunk) * cfg.chunk  # zero padding at the end is exact (causal)
      if padded != seq:
        pad = lambda x: jnp.pad(x, [(0, 0), (0, padded - seq)] + [(0, 0)] * (x.ndim - 2))
        q, k, v, a = pad(q), pad(k), pad(v), pad(a)
      y, _ = second_order.chunked_attention(q, k, v, a, chunk=cfg.chunk, scale=self._scale,
                                            variant=_RECURRENT[(score, s["norm"])], eps=cfg.eps)
      return y[:, :seq]
    if cfg.implementation == "pallas" or (normalize and score != "linear"
                                          and not cfg.state_dim_differs):
      return attention_ops.second_order_attention(
          q, k, v, a, variant=score, scale=self._scale, eps=cfg.eps,
          implementation=cfg.implementation)
    if score == "linear" and not normalize:
      return reference.linear_attention(q, k, v, a, scale=self._scale)
    return reference.decayed_attention(q, k, v, a, score=score, normalize=normalize,
                                       scale=self._scale, eps=cfg.eps)

  # ---- parallel forward ----

  def __call__(self, x: jax.Array) -> jax.Array:
    """Mixes x `[batch, seq, d_model]` causally."""
    if x.ndim != 3 or x.shape[-1] != self.d_model:
      raise ValueError(f"Mixer expects [batch, seq, {self.d_model}]; got {tuple(x.shape)}")
    positions = jnp.arange(x.shape[1])[None]
    q, k, v, a, skip = self._project(x, None, positions)
    return self._finish(self._attend(q, k, v, a), x, skip)

  # ---- decoding ----

  def init_cache(self, batch: int, max_len: int | None = None) -> MixerCache:
    """An empty decoding cache; a KV-cache configuration needs `max_len`."""
    cfg = self.config
    h, d, n = cfg.num_heads, cfg.head_dim, cfg.state_width
    conv = jnp.zeros((batch, max(self.spec["conv_size"] - 1, 0), h * (2 * n + d)), jnp.float32)
    position = jnp.zeros((), jnp.int32)
    if cfg.recurrent:
      features = second_order.feature_dim(n, self._variant)
      state = second_order.DecodeState(jnp.zeros((batch, h, features, d), jnp.float32),
                                       jnp.zeros((batch, h, features), jnp.float32))
      return MixerCache(conv, position, state=state)
    if max_len is None:
      raise ValueError(f"kind {cfg.kind!r} (score={self.spec['score']!r}, "
                       f"norm={self.spec['norm']!r}) decodes with a KV cache: pass max_len")
    return MixerCache(conv, position, keys=jnp.zeros((batch, max_len, h, n), jnp.float32),
                      values=jnp.zeros((batch, max_len, h, d), jnp.float32),
                      acs=jnp.zeros((batch, max_len, h)), acs_now=jnp.zeros((batch, h)))

  @property
  def _variant(self) -> str:
    return _RECURRENT[(self.spec["score"], self.spec["norm"])]

  def decode_step(self, cache: MixerCache, x: jax.Array) -> tuple[jax.Array, MixerCache]:
    """Mixes one new token x `[batch, d_model]` given the cache; returns `(y, new cache)`."""
    cfg = self.config
    if x.ndim != 2 or x.shape[-1] != self.d_model:
      raise ValueError(f"decode_step expects [batch, {self.d_model}]; got {tuple(x.shape)}")
    xt = x[:, None]
    positions = jnp.broadcast_to(cache.position, (x.shape[0], 1))
    q, k, v, a, skip = (None if p is None else p[:, 0]
                        for p in self._project(xt, cache.conv, positions))
    conv = cache.conv
    if self.conv_kernel is not None:
      conv = jnp.concatenate([cache.conv, xt @ self.qkv[...]], axis=1)[:, 1:]
    if cfg.recurrent:
      y, state = second_order.decode_step(cache.state, q, k, v, a, variant=self._variant,
                                          scale=self._scale, eps=cfg.eps)
      cache = cache._replace(conv=conv, position=cache.position + 1, state=state)
      return self._finish(y, x, skip), cache
    y, cache = _kv_decode(cache, q, k, v, a, score=self.spec["score"],
                          normalize=self.spec["norm"] == "sm", scale=self._scale, eps=cfg.eps)
    return self._finish(y, x, skip), cache._replace(conv=conv)


def _kv_decode(cache: MixerCache, q, k, v, a, *, score: str = "exp", normalize: bool = True,
               scale: float | None = None, eps: float = reference.DEFAULT_EPS):
  """One step of causal decayed attention over a KV cache (any score and normalisation)."""
  pos = cache.position
  acs_now = cache.acs_now + a
  keys = jax.lax.dynamic_update_slice_in_dim(cache.keys, k[:, None].astype(cache.keys.dtype), pos, 1)
  values = jax.lax.dynamic_update_slice_in_dim(cache.values, v[:, None].astype(cache.values.dtype),
                                               pos, 1)
  acs = jax.lax.dynamic_update_slice_in_dim(cache.acs, acs_now[:, None], pos, 1)
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  logits = jnp.einsum("bhd,bjhd->bhj", q.astype(jnp.float32), keys) * scale
  decay = jnp.minimum(acs_now[:, :, None] - jnp.swapaxes(acs, 1, 2), 0.0)
  valid = jnp.arange(keys.shape[1]) <= pos
  if score == "exp":
    p = jax.nn.softmax(jnp.where(valid, logits + decay, -jnp.inf), axis=-1)
  else:
    p = (logits if score == "linear" else logits * logits) * jnp.exp(
        jnp.where(valid, decay, -jnp.inf))
    if normalize:
      p = p / jnp.maximum(jnp.sum(p, axis=-1, keepdims=True), eps)
  y = jnp.einsum("bhj,bjhd->bhd", p, values).astype(q.dtype)
  return y, cache._replace(position=pos + 1, keys=keys, values=values, acs=acs, acs_now=acs_now)


def kv_cache_decode_step(cache: MixerCache, q: jax.Array, k: jax.Array, v: jax.Array,
                         log_decay: jax.Array) -> tuple[jax.Array, MixerCache]:
  """Softmax-with-decay decode on raw `[batch, heads, dim]` q, k, v (the KV-cache baseline)."""
  return _kv_decode(cache, q, k, v, log_decay)
