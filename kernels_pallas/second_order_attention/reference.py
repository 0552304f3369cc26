"""Pure-jnp references for 2Mamba's second-order attention (arXiv 2602.17363).

Layout `[batch, seq, heads, dim]`; `log_decay` is `A_t <= 0` of shape `[batch, seq, heads]`.
With `Acs = cumsum(A)` along the sequence and `s_ij = q_i . k_j * scale`:

* squared (2Mamba, paper Sec. 5, Alg. 5):
  `w_ij = s_ij^2 exp(Acs_i - Acs_j)` for j <= i, `o_i = sum_j w_ij v_j / max(sum_j w_ij, eps)`.
* exponential (2Mamba-E, paper Sec. 6): `w_ij = exp(s_ij + Acs_i - Acs_j)`, i.e. causal softmax
  attention with an additive, data-dependent log-decay bias.

`decayed_attention` is the general dense form behind both and the other members of the paper's
ablation family (Tables 1-3): plain, squared or exponential scores, with or without the
row-sum ("SM") normalisation; q and k may be wider than v (Mamba-2's state size).

These dense `O(N^2)` forms are the oracles of the kernel tests and the "quadratic (XLA)" path
of the op. Numerics (ours): the exponent is masked to -inf above the diagonal *before* the
exponential and clamped at 0 on it, so no inf ever enters the graph (nor its gradient).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_EPS = 1e-6


def _acc(x: jax.Array) -> jax.Array:
  """x in its accumulation dtype: at least float32 (float64 stays float64)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def decay_exponent(log_decay: jax.Array) -> jax.Array:
  """`Acs_i - Acs_j` masked to -inf for j > i, as `[batch, heads, seq_q, seq_k]` (>= fp32)."""
  acs = jnp.cumsum(_acc(log_decay), axis=1)  # [b, n, h]
  acs = jnp.swapaxes(acs, 1, 2)  # [b, h, n]
  n = acs.shape[-1]
  causal = jnp.tril(jnp.ones((n, n), bool))
  diff = acs[..., :, None] - acs[..., None, :]
  return jnp.where(causal, jnp.minimum(diff, 0.0), -jnp.inf)


def _scores(q: jax.Array, k: jax.Array, scale: float) -> jax.Array:
  return jnp.einsum("bqhd,bkhd->bhqk", _acc(q), _acc(k)) * scale


def squared_weights(q, k, log_decay, scale: float | None = None) -> jax.Array:
  """Unnormalised 2Mamba weights `w_ij`, `[batch, heads, seq_q, seq_k]` (fp32)."""
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  s = _scores(q, k, scale)
  return s * s * jnp.exp(decay_exponent(log_decay))


def squared_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array, *,
                      scale: float | None = None, eps: float = DEFAULT_EPS) -> jax.Array:
  """2Mamba attention, dense reference (Sec. 5, Alg. 5). Returns `[batch, seq, heads, dim]`."""
  w = squared_weights(q, k, log_decay, scale)
  r = jnp.sum(w, axis=-1, keepdims=True)
  o = jnp.einsum("bhqk,bkhd->bqhd", w / jnp.maximum(r, eps), _acc(v))
  return o.astype(q.dtype)


def exp_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array, *,
                  scale: float | None = None) -> jax.Array:
  """2Mamba-E attention (Sec. 6): causal softmax of `s_ij + Acs_i - Acs_j`."""
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  logits = _scores(q, k, scale) + decay_exponent(log_decay)
  p = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum("bhqk,bkhd->bqhd", p, _acc(v)).astype(q.dtype)


def linear_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array, *,
                     scale: float | None = None) -> jax.Array:
  """Mamba-2S core (Alg. 4): `((Q K^T * scale) o AM o M) V`, no normalisation."""
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  w = _scores(q, k, scale) * jnp.exp(decay_exponent(log_decay))
  return jnp.einsum("bhqk,bkhd->bqhd", w, _acc(v)).astype(q.dtype)


SCORES = ("linear", "square", "exp")


def decayed_attention(q: jax.Array, k: jax.Array, v: jax.Array, log_decay: jax.Array, *,
                      score: str = "square", normalize: bool = True, scale: float | None = None,
                      eps: float = DEFAULT_EPS) -> jax.Array:
  """Dense causal attention with the decay mask, any score and normalisation (Secs. 2-6).

  `w_ij = f(s_ij) exp(Acs_i - Acs_j)` for j <= i with `f(s) = s`, `s^2` or `exp(s)` ("linear",
  "square", "exp"); `o_i = sum_j w_ij v_j`, divided by `max(sum_j w_ij, eps)` when
  `normalize` (for "exp": the causal softmax of `s_ij + Acs_i - Acs_j`, computed stably).
  q and k are `[batch, seq, heads, n]`, v `[batch, seq, heads, d]` (n may differ from d).
  """
  if score not in SCORES:
    raise ValueError(f"score must be one of {SCORES}; got {score!r}")
  if score == "exp" and not normalize:
    raise ValueError("unnormalised exponential weights overflow; use normalize=True")
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  s = _scores(q, k, scale)
  expo = decay_exponent(log_decay)
  if score == "exp":
    w = jax.nn.softmax(s + expo, axis=-1)
  else:
    w = (s if score == "linear" else s * s) * jnp.exp(expo)
    if normalize:
      w = w / jnp.maximum(jnp.sum(w, axis=-1, keepdims=True), eps)
  return jnp.einsum("bhqk,bkhd->bqhd", w, _acc(v)).astype(q.dtype)
