"""Chunked and recurrent forms of 2Mamba / Mamba-2S attention (Mongaras & Larson, arXiv 2602.17363).

Same contract as `kernels_pallas.second_order_attention` (layout `[batch, seq, heads, dim]`,
`log_decay` `[batch, seq, heads]`, each value <= 0), two more ways to compute it:

* `feature_map` (paper Sec. 5.1, App. A): `phi(x) = [x_i^2, sqrt(2) x_i x_j (i < j)]` of
  dimension `d(d+1)/2`, so that `phi(q) . phi(k) = (q . k)^2`.
* `chunked_attention` (our mapping of 2Mamba onto Mamba-2's chunked SSD algorithm): quadratic
  inside chunks of length Q, a first-order recurrence over chunk states in between; linear in the
  sequence length.
* `decode_step` / `recurrent_attention` (paper Sec. 5.1, Alg. 6): constant-size state
  `S in R^{D x d}`, `z in R^D` per head, updated token by token.

`variant="square"` is 2Mamba (squared scores, row-sum normalisation); `variant="linear"` is the
Mamba-2S core (plain scores, no normalisation; the mixer applies its RMSNorm).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from kernels_pallas.second_order_attention.ops import check_inputs

VARIANTS = ("square", "linear")
DEFAULT_EPS = 1e-6


def feature_dim(dim: int, variant: str = "square") -> int:
  """State feature dimension: `d(d+1)/2` for "square", `d` for "linear"."""
  return dim * (dim + 1) // 2 if variant == "square" else dim


def feature_map(x: jax.Array) -> jax.Array:
  """Unique-monomial second-order features (Sec. 5.1, App. A): `[..., d] -> [..., d(d+1)/2]`.

  The squares come first, then `sqrt(2) x_i x_j` for `i < j` in row-major order.
  """
  d = x.shape[-1]
  rows, cols = np.triu_indices(d, k=1)
  cross = np.sqrt(2.0).astype(x.dtype) * x[..., rows] * x[..., cols]
  return jnp.concatenate([x * x, cross], axis=-1)


def _acc(x: jax.Array) -> jax.Array:
  """x in its accumulation dtype: at least float32 (float64 stays float64)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _features(x: jax.Array, variant: str) -> jax.Array:
  return feature_map(x) if variant == "square" else x


def _check(q, k, v, log_decay, variant):
  check_inputs(q, k, v, log_decay)
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {VARIANTS}; got {variant!r}")


# ---------------------------------------------------------------------------
# Recurrent form (decode).
# ---------------------------------------------------------------------------


class DecodeState(NamedTuple):
  """Recurrent state of one layer (Sec. 5.1, Alg. 6).

  Attributes:
    s: numerator state, `[batch, heads, D, dim]` (D = feature_dim).
    z: denominator state, `[batch, heads, D]` (unused, kept at 0, for "linear").
  """

  s: jax.Array
  z: jax.Array


def init_decode_state(batch: int, heads: int, dim: int, variant: str = "square",
                      dtype=jnp.float32) -> DecodeState:
  """The empty state (no tokens seen)."""
  features = feature_dim(dim, variant)
  return DecodeState(jnp.zeros((batch, heads, features, dim), dtype),
                     jnp.zeros((batch, heads, features), dtype))


def decode_step(state: DecodeState, q: jax.Array, k: jax.Array, v: jax.Array,
                log_decay: jax.Array, *, variant: str = "square", scale: float | None = None,
                eps: float = DEFAULT_EPS) -> tuple[jax.Array, DecodeState]:
  """One token of the recurrence (Alg. 6):

  `S_t = a_t S_{t-1} + phi(k_t) v_t^T`, `z_t = a_t z_{t-1} + phi(k_t)`,
  `y_t = phi(q_t)^T S_t / max(phi(q_t)^T z_t, eps)`, with `a_t = exp(A_t)` and the keys
  pre-scaled by `scale` (default `1/sqrt(dim)`) before `phi`.

  Args:
    state: the layer's `DecodeState`.
    q, k, v: `[batch, heads, dim]` of the new token.
    log_decay: `[batch, heads]`, `A_t <= 0`.
    variant: "square" or "linear" (then `y_t = q_t^T S_t`, no normalisation).
    scale: score scale.
    eps: denominator clamp.

  Returns:
    `(y_t [batch, heads, dim], new state)`.
  """
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  a = jnp.exp(_acc(log_decay))[..., None]
  fk = _features(_acc(k) * scale, variant)
  fq = _features(_acc(q), variant)
  s = a[..., None] * state.s + fk[..., :, None] * _acc(v)[..., None, :]
  num = jnp.einsum("bhf,bhfd->bhd", fq, s)
  if variant == "linear":
    return num.astype(q.dtype), DecodeState(s.astype(state.s.dtype), state.z)
  z = a * state.z + fk
  den = jnp.einsum("bhf,bhf->bh", fq, z)
  y = num / jnp.maximum(den, eps)[..., None]
  return y.astype(q.dtype), DecodeState(s.astype(state.s.dtype), z.astype(state.z.dtype))


def recurrent_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array, *,
                        variant: str = "square", scale: float | None = None,
                        eps: float = DEFAULT_EPS,
                        state: DecodeState | None = None) -> tuple[jax.Array, DecodeState]:
  """`decode_step` scanned over the sequence: `([batch, seq, heads, dim], final state)`."""
  _check(q, k, v, log_decay, variant)
  batch, _, heads, dim = q.shape
  if state is None:
    state = init_decode_state(batch, heads, dim, variant, _acc(q).dtype)

  def step(carry, xs):
    y, carry = decode_step(carry, *xs, variant=variant, scale=scale, eps=eps)
    return carry, y

  xs = tuple(jnp.swapaxes(x, 0, 1) for x in (q, k, v, log_decay))
  state, ys = jax.lax.scan(step, state, xs)
  return jnp.swapaxes(ys, 0, 1), state


# ---------------------------------------------------------------------------
# Chunked form.
# ---------------------------------------------------------------------------


def _segsum(a: jax.Array) -> jax.Array:
  """Stable `sum_{j < s <= i} a_s` for i >= j, -inf above the diagonal; a: `[..., Q]`."""
  q = a.shape[-1]
  tiled = jnp.broadcast_to(a[..., :, None], a.shape + (q,))  # [..., i, j] = a_i
  below = jnp.tril(jnp.ones((q, q), bool), -1)
  sums = jnp.cumsum(jnp.where(below, tiled, 0.0), axis=-2)
  return jnp.where(jnp.tril(jnp.ones((q, q), bool)), sums, -jnp.inf)


def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array, *,
                      chunk: int = 64, variant: str = "square", scale: float | None = None,
                      eps: float = DEFAULT_EPS,
                      state: DecodeState | None = None) -> tuple[jax.Array, DecodeState]:
  """SSD-style chunked form (Mamba-2's SSD algorithm); returns `(output, final DecodeState)`.

  Per chunk c (length Q): `y = Y_diag + Y_off` with the intra-chunk quadratic term
  `Y_diag_i = sum_{j<=i} w_ij [v_j, 1]` (`w_ij = (q_i.k_j*scale)^2 exp(segsum)`; no features
  needed) and `Y_off_i = exp(Acs_i) phi(q_i)^T [S, z]` from the state entering the chunk;
  the state then advances as `S <- exp(Acs_Q) S + sum_j exp(Acs_Q - Acs_j) phi(k_j) [v_j, 1]^T`.
  The loop over chunks is a `lax.scan`, so memory is one chunk plus one state.

  Args:
    q, k, v, log_decay: as in `recurrent_attention`; seq must be a multiple of `chunk`.
    chunk: chunk length Q.
    variant: "square" or "linear".
    scale, eps: as in `decode_step`.
    state: optional initial state (e.g. from a prompt).
  """
  _check(q, k, v, log_decay, variant)
  batch, seq, heads, dim = q.shape
  if chunk < 1 or seq % chunk:
    raise ValueError(f"chunk={chunk} must be >= 1 and divide the sequence length {seq}")
  scale = dim ** -0.5 if scale is None else scale
  if state is None:
    state = init_decode_state(batch, heads, dim, variant, _acc(q).dtype)
  n_chunks = seq // chunk

  def split(x):  # [b, n, h, ...] -> [chunks, b, h, Q, ...]
    x = x.reshape((batch, n_chunks, chunk) + x.shape[2:])
    return jnp.moveaxis(jnp.moveaxis(x, 1, 0), 3, 2)

  xs = (split(_acc(q)), split(_acc(k) * scale),
        split(_acc(v)), split(_acc(log_decay)))

  def step(carry, xs):
    s_state, z_state = carry
    qc, kc, vc, ac = xs  # [b, h, Q, d], a: [b, h, Q]
    acs = jnp.cumsum(ac, axis=-1)
    scores = jnp.einsum("bhid,bhjd->bhij", qc, kc)
    if variant == "square":
      scores = scores * scores
    w = scores * jnp.exp(_segsum(ac))
    fq, fk = _features(qc, variant), _features(kc, variant)
    in_decay = jnp.exp(acs)[..., None]  # decay from the chunk start to i
    num = jnp.einsum("bhij,bhjd->bhid", w, vc) + in_decay * jnp.einsum("bhif,bhfd->bhid", fq,
                                                                       s_state)
    out_decay = jnp.exp(acs[..., -1:] - acs)  # from j to the chunk end
    total = jnp.exp(acs[..., -1])[..., None]
    s_state = total[..., None] * s_state + jnp.einsum("bhjf,bhjd->bhfd", fk * out_decay[..., None],
                                                      vc)
    if variant == "linear":
      return (s_state, z_state), num
    den = jnp.sum(w, -1) + in_decay[..., 0] * jnp.einsum("bhif,bhf->bhi", fq, z_state)
    z_state = total * z_state + jnp.einsum("bhjf,bhj->bhf", fk, out_decay)
    return (s_state, z_state), num / jnp.maximum(den, eps)[..., None]

  (s_state, z_state), ys = jax.lax.scan(step, (state.s, state.z), xs)
  ys = jnp.moveaxis(ys, 0, 1).swapaxes(2, 3).reshape(batch, seq, heads, dim)
  return ys.astype(q.dtype), DecodeState(s_state, z_state)


def state_bytes(state: DecodeState, variant: str = "square") -> int:
  """Bytes of the arrays a decoder must keep (z only for "square")."""
  if variant == "linear":
    return int(state.s.nbytes)
  return int(state.s.nbytes + state.z.nbytes)
