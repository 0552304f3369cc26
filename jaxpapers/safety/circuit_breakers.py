"""Circuit breakers by representation rerouting (Zou et al., arXiv 2406.04313), NeST's baseline.

Representation Rerouting (RR, Algorithm 1 of 2406.04313) trains LoRA adapters so that the
representations of harmful inputs at the target layers point away from the frozen model's
(`ReLU(cos(rep_cb, rep_orig))`), while those of benign inputs stay where they were
(`||rep_cb - rep_orig||_2`). At step `t` of `T`, the loss is

    L = c_s ReLU(cos(rep_cb(x_s), rep_orig(x_s))) + c_r ||rep_cb(x_r) - rep_orig(x_r)||_2,
    c_s = alpha (1 - t / (2T)),  c_r = alpha t / (2T),

each term averaged over the target layers and the (masked) token positions. The adapters come
from `jaxpapers.safety.lora`; representations from `jaxpapers.safety.taps`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def coefficients(progress: jax.Array, alpha: float) -> tuple[jax.Array, jax.Array]:
  """`(c_s, c_r)` at `progress = t / T` (Algorithm 1's schedule)."""
  return alpha * (1.0 - progress / 2.0), alpha * progress / 2.0


def _masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
  if mask is None:
    return jnp.mean(x)
  mask = jnp.broadcast_to(mask.astype(x.dtype), x.shape)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def rerouting_loss(rep: jax.Array, rep_orig: jax.Array, mask: jax.Array | None = None,
                   eps: float = 1e-8) -> jax.Array:
  """Mean `ReLU(cos(rep, rep_orig))` over the positions (`[..., d]` representations)."""
  norm = lambda v: jnp.sqrt(jnp.sum(jnp.square(v), -1) + eps)  # noqa: E731  (finite gradient at 0)
  cos = jnp.sum(rep * rep_orig, -1) / (norm(rep) * norm(rep_orig))
  return _masked_mean(jax.nn.relu(cos), mask)


def retain_loss(rep: jax.Array, rep_orig: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean L2 distance `||rep - rep_orig||_2` over the positions."""
  return _masked_mean(jnp.sqrt(jnp.sum(jnp.square(rep - rep_orig), -1) + 1e-12), mask)


def rr_loss(harmful: list[tuple[jax.Array, jax.Array]], benign: list[tuple[jax.Array, jax.Array]],
            progress: jax.Array, alpha: float, harmful_mask: jax.Array | None = None,
            benign_mask: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The RR loss from `(rep_cb, rep_orig)` pairs at each target layer; returns (loss, parts)."""
  c_s, c_r = coefficients(progress, alpha)
  reroute = jnp.mean(jnp.stack([rerouting_loss(a, b, harmful_mask) for a, b in harmful]))
  retain = jnp.mean(jnp.stack([retain_loss(a, b, benign_mask) for a, b in benign]))
  return c_s * reroute + c_r * retain, {"reroute": reroute, "retain": retain}
