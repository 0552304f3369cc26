"""Rectified-flow alignment: Euler transport on analytic fields (spec 4.5 item 2), the loss by hand."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.align import VelocityMLP, rectified_flow_loss, transport


def test_constant_field_moves_by_c_and_pair_field_maps_h_to_r():
  h = jax.random.normal(jax.random.key(0), (6, 8))
  c = jnp.linspace(-1, 1, 8)
  np.testing.assert_allclose(transport(lambda x, t: jnp.broadcast_to(c, x.shape), h, 20), h + c, atol=1e-6)
  r = jax.random.normal(jax.random.key(1), (6, 8))
  np.testing.assert_allclose(transport(lambda x, t: r - h, h, 7), r, atol=1e-6)


def test_time_runs_forward_from_zero():
  """v = t c: forward Euler from t = 0 on the grid i / n gives h + c (n - 1) / (2 n)."""
  h, c, n = jnp.ones((2, 3)), jnp.array([1.0, 2.0, -1.0]), 10
  out = transport(lambda x, t: t[:, None] * c, h, n)
  np.testing.assert_allclose(out, h + c * (n - 1) / (2 * n), atol=1e-6)
  # v = x: Euler's product (1 + 1/n)^n
  np.testing.assert_allclose(transport(lambda x, t: x, h, n), h * (1 + 1 / n) ** n, rtol=1e-6)


def test_loss_is_the_least_squares_on_the_interpolant():
  model = VelocityMLP(4, (16, 16), 8, rngs=nnx.Rngs(0))
  k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
  h, r, t = jax.random.normal(k1, (5, 4)), jax.random.normal(k2, (5, 4)), jax.random.uniform(k3, (5,))
  x_t = (1 - t[:, None]) * h + t[:, None] * r
  expected = jnp.mean((model(x_t, t) - (r - h)) ** 2)
  np.testing.assert_allclose(rectified_flow_loss(model, h, r, t), expected, rtol=1e-5)
  mask = jnp.array([1.0, 1, 0, 0, 0])
  first = jnp.mean((model(x_t, t)[:2] - (r - h)[:2]) ** 2)
  np.testing.assert_allclose(rectified_flow_loss(model, h, r, t, mask), first, rtol=1e-5)
