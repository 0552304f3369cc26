"""Rectified-flow training: interpolation, training times, flow-matching and distillation losses.

Rectified flow (Liu et al., arXiv 2209.03003; the objective of Wan2.1, arXiv 2503.20314, that
SpargeAttention2, arXiv 2602.13515, Sec. 4.2, fine-tunes): `x_t = (1 - t) x_0 + t eps` with
t = 1 pure noise, a network predicts the velocity `u = eps - x_0`, and the flow-matching loss is
`||u_theta(x_t, t, c) - (eps - x_0)||^2`. Velocity distillation (SpargeAttention2 Sec. 4.2,
Alg. 2) trains a student on `||u_student(x_t, t, c) - stop_grad(u_teacher(x_t, t, c))||^2` on
the same inputs, so the data only build x_t.

A model is any callable `model(x_t, t, labels, attention) -> u` with u shaped like x_t (for
example `jaxpapers.nn.dit.DiT`); `attention=None` keeps the model's own.

Masks: every loss takes an optional `mask`, the weights of a masked mean. A mask of shape [B]
weights examples (each example's mean squared error, averaged over the batch with these
weights: padded rows get 0); a mask of the input's rank, broadcastable to its shape, weights
single elements. An all-zero mask gives a loss of 0.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

Velocity = Callable[..., jax.Array]  # model(x_t, t, labels, attention) -> u, shaped like x_t
TIME_SAMPLING = ("uniform", "logit_normal")


def interpolate(x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
  """x_t = (1 - t) x_0 + t eps (rectified flow), t [B]."""
  tb = t.reshape((-1,) + (1,) * (x0.ndim - 1))
  return (1 - tb) * x0 + tb * noise


def sample_times(rng: jax.Array, batch: int, kind: str = "logit_normal") -> jax.Array:
  """Training times in (0, 1): "uniform" or "logit_normal" (sigmoid of N(0, 1), SD3/Wan style)."""
  if kind == "uniform":
    return jax.random.uniform(rng, (batch,))
  if kind == "logit_normal":
    return jax.nn.sigmoid(jax.random.normal(rng, (batch,)))
  raise ValueError(f"unknown time sampling {kind!r}; choose {' or '.join(TIME_SAMPLING)}")


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  total = jnp.sum(weights)
  return jnp.sum(values * weights) / jnp.where(total > 0, total, 1.0)


def mean_squared_error(prediction: jax.Array, target: jax.Array,
                       mask: jax.Array | None = None) -> jax.Array:
  """Mean of (prediction - target)^2 in float32, optionally masked (see the module docstring).

  Args:
    prediction: [B, ...].
    target: same shape.
    mask: None (every element), [B] weights of examples, or weights of elements with the rank
      of `prediction`, broadcastable to its shape.

  Returns:
    A float32 scalar.
  """
  chex.assert_equal_shape([prediction, target], exception_type=ValueError,
                          custom_message="prediction and target must have the same shape")
  err = (prediction.astype(jnp.float32) - target.astype(jnp.float32)) ** 2
  if mask is None:
    return jnp.mean(err)
  mask = jnp.asarray(mask, jnp.float32)
  if mask.ndim == 1 and mask.shape[0] == err.shape[0]:
    return _weighted_mean(jnp.mean(err, axis=tuple(range(1, err.ndim))), mask)
  fits = mask.ndim == err.ndim and all(m in (1, e) for m, e in zip(mask.shape, err.shape))
  if not fits:
    raise ValueError(f"mask of shape {mask.shape} fits neither the examples [{err.shape[0]}] "
                     f"nor the elements {err.shape} (broadcastable, same rank)")
  return _weighted_mean(err, jnp.broadcast_to(mask, err.shape))


def flow_matching_loss(model: Velocity, x0: jax.Array, labels: jax.Array, noise: jax.Array,
                       t: jax.Array, attention: Any = None, *,
                       mask: jax.Array | None = None) -> jax.Array:
  """Mean ||u_theta(x_t, t, c) - (eps - x_0)||^2 per element (masked mean when `mask` is given).

  Args:
    model: the velocity network.
    x0: data [B, ...].
    labels: conditions [B].
    noise: eps, shaped like x0.
    t: times [B] in [0, 1].
    attention: passed to the model (None: its own).
    mask: example or element weights (module docstring).
  """
  chex.assert_equal_shape([x0, noise], exception_type=ValueError,
                          custom_message="x0 and noise must have the same shape")
  chex.assert_shape(t, (x0.shape[0],), exception_type=ValueError,
                    custom_message="t must be one time per example, [batch]")
  u = model(interpolate(x0, noise, t), t, labels, attention)
  return mean_squared_error(u, noise - x0, mask)


def velocity_distillation_loss(student: Velocity, teacher: Velocity, x_t: jax.Array,
                               t: jax.Array, labels: jax.Array, student_attention: Any = None,
                               teacher_attention: Any = None, *,
                               mask: jax.Array | None = None) -> jax.Array:
  """SpargeAttention2's L_VD (Sec. 4.2): mean ||u_student - stop_grad(u_teacher)||^2.

  Args:
    student: the network being trained.
    teacher: the frozen reference (no gradient flows into it).
    x_t: noisy inputs [B, ...].
    t: times [B].
    labels: conditions [B].
    student_attention: passed to the student (None: its own).
    teacher_attention: passed to the teacher (None: its own).
    mask: example or element weights (module docstring).
  """
  chex.assert_shape(t, (x_t.shape[0],), exception_type=ValueError,
                    custom_message="t must be one time per example, [batch]")
  target = jax.lax.stop_gradient(teacher(x_t, t, labels, teacher_attention))
  u = student(x_t, t, labels, student_attention)
  return mean_squared_error(u, target, mask)
