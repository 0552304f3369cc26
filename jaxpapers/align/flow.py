"""Rectified-flow alignment `g` of human tactile latents into the robot latent space (TactAlign,
arXiv 2602.13579, Sec. III-C).

With (h, r) a pseudo-pair of standardised human and robot latents, t ~ U[0, 1] and
x_t = (1 - t) h + t r, the velocity field is trained by least squares,

    L_RF(theta) = E_{(h, r), t} || v_theta(x_t, t) - (r - h) ||^2,

and `g(h) = x(1)` integrates dx/dt = v_theta(x, t) from x(0) = h (the paper's "ODE solver";
Euler, 20 steps, no reflow: our choice, the paper gives neither). Trained on random pairs it is
standard rectified flow (Liu et al., arXiv 2209.03003), a low-cost transport that ignores
correspondence; trained on pseudo-pairs it is steered to the intended correspondences, and since
flow paths cannot cross, noisy crossing pairs are rewired into a deterministic coupling.

The loss and the integrator are the shared ones of `jaxpapers.diffusion` (`interpolate`,
`flow_matching_loss`, `euler_sample`), wrapped: their convention is x_t = (1 - t) x_0 + t eps,
u = eps - x_0, so here x_0 = h and eps = r, and `euler_sample` (which runs t from 1 to 0) is
handed the time-reversed field -v(x, 1 - t).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers import diffusion
from jaxpapers.nn.dit import timestep_embedding


class VelocityMLP(nnx.Module):
  """v_theta: [x || sinusoidal emb(t)] -> hidden -> ... -> d, SiLU activations."""

  def __init__(self, dim: int, hidden: Sequence[int] = (128, 128), time_dim: int = 32, *,
               rngs: nnx.Rngs):
    if dim < 1 or time_dim < 2 or not hidden:
      raise ValueError(f"VelocityMLP needs dim >= 1, time_dim >= 2 and hidden layers, got {dim}, "
                       f"{time_dim}, {hidden}")
    self.time_dim = time_dim
    sizes = [dim + time_dim, *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    self.out = nnx.Linear(sizes[-1], dim, rngs=rngs)

  def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
    h = jnp.concatenate([x, timestep_embedding(t, self.time_dim)], -1)
    for layer in self.layers:
      h = jax.nn.silu(layer(h))
    return self.out(h)


def _as_diffusion_model(velocity):
  """`velocity(x, t)` as the `model(x, t, labels, attention)` the diffusion helpers call."""
  return lambda x, t, labels, attention: velocity(x, t)


def rectified_flow_loss(velocity, h: jax.Array, r: jax.Array, t: jax.Array,
                        mask: jax.Array | None = None) -> jax.Array:
  """L_RF: mean ||v(x_t, t) - (r - h)||^2 over elements, x_t = (1 - t) h + t r.

  Args:
    velocity: `velocity(x, t) -> v`.
    h: [B, d] sources (human latents).
    r: [B, d] targets (their paired robot latents).
    t: [B] times.
    mask: [B] example weights (padding rows 0), None: all 1.
  """
  return diffusion.flow_matching_loss(_as_diffusion_model(velocity), h, jnp.zeros(h.shape[0], jnp.int32),
                                      r, t, mask=mask)


def transport(velocity, h: jax.Array, steps: int = 20) -> jax.Array:
  """g(h) = x(1): dx/dt = v(x, t) integrated from x(0) = h in `steps` Euler steps."""
  def reversed_field(x, s, labels, attention):  # pylint: disable=unused-argument
    return -velocity(x, 1.0 - s)
  return diffusion.euler_sample(reversed_field, h, jnp.zeros(h.shape[0], jnp.int32), steps)


class RegressionMLP(nnx.Module):
  """A direct map h -> r (the pseudo-pair regression baseline): Linear/SiLU layers."""

  def __init__(self, dim: int, hidden: Sequence[int] = (128, 128), *, rngs: nnx.Rngs):
    sizes = [dim, *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
    self.out = nnx.Linear(sizes[-1], dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = x
    for layer in self.layers:
      h = jax.nn.silu(layer(h))
    return self.out(h)
