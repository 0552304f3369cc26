"""jaxpapers.diffusion: rectified-flow losses (with masks) and the Euler sampler, against
hand-written jnp / numpy references."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers import diffusion
from jaxpapers.nn import dit

SHAPE = (4, 3, 5)  # [B, tokens, channels]


def _arrays(seed: int = 0):
  keys = jax.random.split(jax.random.key(seed), 4)
  x0 = jax.random.normal(keys[0], SHAPE)
  noise = jax.random.normal(keys[1], SHAPE)
  t = jax.random.uniform(keys[2], (SHAPE[0],))
  labels = jax.random.randint(keys[3], (SHAPE[0],), 0, 3)
  return x0, noise, t, labels


class _Linear:
  """u = w * x_t + b[label] + t: a velocity model simple enough to write the loss by hand.

  Records the attention it was called with.
  """

  def __init__(self, w: jax.Array, b: jax.Array):
    self.w, self.b, self.attention = w, b, "unset"

  def __call__(self, x, t, labels, attention=None):
    self.attention = attention
    return self.w * x + self.b[labels][:, None, :] + t[:, None, None]


def _params(seed: int):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.standard_normal(SHAPE[1:]), jnp.float32),
          jnp.asarray(rng.standard_normal((3, SHAPE[2])), jnp.float32))


def _reference_loss(u: np.ndarray, target: np.ndarray, mask: np.ndarray | None) -> float:
  """Masked mean written out: per-example means weighted by a [B] mask, or element weights."""
  err = (np.asarray(u, np.float64) - np.asarray(target, np.float64)) ** 2
  if mask is None:
    return float(err.mean())
  mask = np.asarray(mask, np.float64)
  if mask.ndim == 1:
    per_example = err.reshape(err.shape[0], -1).mean(1)
    return float((per_example * mask).sum() / mask.sum())
  weights = np.broadcast_to(mask, err.shape)
  return float((err * weights).sum() / weights.sum())


def test_interpolate_and_times():
  x0, noise, t, _ = _arrays()
  x_t = diffusion.interpolate(x0, noise, t)
  want = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
  chex.assert_trees_all_close(x_t, want, rtol=1e-6)
  chex.assert_trees_all_close(diffusion.interpolate(x0, noise, jnp.zeros(4)), x0)  # t = 0: data
  chex.assert_trees_all_close(diffusion.interpolate(x0, noise, jnp.ones(4)), noise)  # t = 1: noise
  key = jax.random.key(7)
  np.testing.assert_array_equal(np.asarray(diffusion.sample_times(key, 6, "uniform")),
                                np.asarray(jax.random.uniform(key, (6,))))
  np.testing.assert_array_equal(np.asarray(diffusion.sample_times(key, 6)),
                                np.asarray(jax.nn.sigmoid(jax.random.normal(key, (6,)))))
  with pytest.raises(ValueError, match="uniform or logit_normal"):
    diffusion.sample_times(key, 6, "cosine")


@pytest.mark.parametrize("mask", [
    None,
    np.array([1.0, 1.0, 0.0, 1.0]),                        # a padded example
    np.array([0.5, 2.0, 1.0, 0.25]),                       # example weights
    (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3 == 0).astype(np.float32),  # element mask
    np.array([1.0, 0.0, 1.0, 1.0])[:, None, None] * np.array([1.0, 0.5, 0.0, 1.0, 2.0]),  # broadcast
], ids=["none", "examples", "example-weights", "elements", "broadcast-elements"])
def test_mean_squared_error_is_the_masked_mean(mask):
  u, target, _, _ = _arrays(1)
  got = diffusion.mean_squared_error(u, target, None if mask is None else jnp.asarray(mask))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), _reference_loss(u, target, mask), rtol=1e-6)


def test_mean_squared_error_edge_cases():
  u, target, _, _ = _arrays(2)
  assert float(diffusion.mean_squared_error(u, target, jnp.zeros(SHAPE[0]))) == 0.0  # all masked
  half = diffusion.mean_squared_error(u.astype(jnp.bfloat16), target)  # computed in float32
  assert half.dtype == jnp.float32
  with pytest.raises(ValueError, match="same shape"):
    diffusion.mean_squared_error(u, target[:, :2])
  with pytest.raises(ValueError, match="fits neither"):
    diffusion.mean_squared_error(u, target, jnp.ones(3))
  with pytest.raises(ValueError, match="fits neither"):
    diffusion.mean_squared_error(u, target, jnp.ones((SHAPE[0], 2, 1)))


@pytest.mark.parametrize("mask", [None, np.array([1.0, 0.0, 1.0, 1.0])], ids=["none", "padded"])
def test_flow_matching_loss_matches_the_hand_written_loss(mask):
  x0, noise, t, labels = _arrays(3)
  w, b = _params(0)
  model = _Linear(w, b)
  loss = diffusion.flow_matching_loss(model, x0, labels, noise, t, "my-attention",
                                      mask=None if mask is None else jnp.asarray(mask))
  assert model.attention == "my-attention"
  x_t = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
  u = w * x_t + b[labels][:, None, :] + t[:, None, None]
  np.testing.assert_allclose(float(loss), _reference_loss(u, noise - x0, mask), rtol=1e-6)


def test_masked_examples_neither_count_nor_train():
  x0, noise, t, labels = _arrays(4)
  mask = jnp.array([1.0, 1.0, 1.0, 0.0])
  garbage = x0.at[3].set(1e4)  # a padded row holding anything

  def loss(w, x0):
    return diffusion.flow_matching_loss(_Linear(w, _params(0)[1]), x0, labels, noise, t, mask=mask)

  w = _params(0)[0]
  np.testing.assert_allclose(float(loss(w, garbage)), float(loss(w, x0)), rtol=1e-6)
  grad_x0 = jax.grad(loss, argnums=1)(w, garbage)
  assert float(jnp.max(jnp.abs(grad_x0[3]))) == 0.0 and float(jnp.max(jnp.abs(grad_x0[:3]))) > 0
  # Same value as the loss on the three real examples alone.
  alone = diffusion.flow_matching_loss(_Linear(w, _params(0)[1]), x0[:3], labels[:3], noise[:3], t[:3])
  np.testing.assert_allclose(float(loss(w, x0)), float(alone), rtol=1e-6)


@pytest.mark.parametrize("mask", [None, np.array([0.0, 1.0, 1.0, 1.0])], ids=["none", "padded"])
def test_velocity_distillation_matches_the_hand_written_loss_and_stops_teacher_gradients(mask):
  x_t, _, t, labels = _arrays(5)
  (ws, bs), (wt, bt) = _params(1), _params(2)
  mask = None if mask is None else jnp.asarray(mask)

  def loss(student_w, teacher_w):
    student, teacher = _Linear(student_w, bs), _Linear(teacher_w, bt)
    out = diffusion.velocity_distillation_loss(student, teacher, x_t, t, labels, "sparse", "dense",
                                               mask=mask)
    assert (student.attention, teacher.attention) == ("sparse", "dense")
    return out

  value, (g_student, g_teacher) = jax.value_and_grad(loss, argnums=(0, 1))(ws, wt)
  u = ws * x_t + bs[labels][:, None, :] + t[:, None, None]
  target = wt * x_t + bt[labels][:, None, :] + t[:, None, None]
  np.testing.assert_allclose(float(value), _reference_loss(u, target, mask), rtol=1e-6)
  assert float(jnp.max(jnp.abs(g_teacher))) == 0.0  # stop_gradient on the teacher
  assert float(jnp.max(jnp.abs(g_student))) > 0.0
  same = _Linear(ws, bs)
  assert float(diffusion.velocity_distillation_loss(same, same, x_t, t, labels)) == 0.0


def test_losses_on_the_dit():
  """The DiT starts at u = 0 (adaLN-Zero), so its losses are those of a zero prediction."""
  config = dit.DiTConfig(input_shape=(4, 4), channels=2, patch=(2, 2), width=16, depth=1,
                         num_heads=2, num_classes=3)
  graphdef, params, rest = nnx.split(dit.DiT(config, rngs=nnx.Rngs(0)), nnx.Param, ...)
  keys = jax.random.split(jax.random.key(6), 3)
  x0 = jax.random.normal(keys[0], (3, 4, 4, 2))
  noise = jax.random.normal(keys[1], x0.shape)
  t = jax.random.uniform(keys[2], (3,))
  labels = jnp.array([0, 2, 1])
  mask = jnp.array([1.0, 0.0, 1.0])
  fm = jax.jit(lambda p: diffusion.flow_matching_loss(nnx.merge(graphdef, p, rest), x0, labels,
                                                      noise, t, mask=mask))
  np.testing.assert_allclose(float(fm(params)), _reference_loss(np.zeros(x0.shape), noise - x0,
                                                                np.asarray(mask)), rtol=1e-6)
  x_t = diffusion.interpolate(x0, noise, t)
  vd = jax.jit(lambda p: diffusion.velocity_distillation_loss(
      nnx.merge(graphdef, p, rest), nnx.merge(graphdef, p, rest), x_t, t, labels))
  assert float(vd(params)) == 0.0


class _TimeVelocity:
  """A stand-in model with velocity u(x, t) = t (for the Euler sampler's arithmetic)."""

  def __call__(self, x, t, labels, attention=None):
    return jnp.broadcast_to(t.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)


def test_euler_sampler_integrates_from_noise_to_data():
  noise = jnp.zeros((2, 3))
  steps = 4
  out = diffusion.euler_sample(_TimeVelocity(), noise, jnp.zeros(2, jnp.int32), steps)
  # x(0) = x(1) - sum_i dt * t_i over the left endpoints t_i = 1, 3/4, 1/2, 1/4.
  np.testing.assert_allclose(np.asarray(out), -(steps + 1) / (2 * steps), rtol=1e-6)
