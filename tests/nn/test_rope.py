"""RoPE: rotation of each channel pair, norm preservation, relative-position scores."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.nn.rope import rope


def test_rope_rotates_channel_pairs_by_position_times_frequency():
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 5, 3, 8)), np.float64)
  positions = np.array([[0, 1, 2, 3, 4], [7, 3, 0, 11, 2]])
  out = np.asarray(rope(jnp.asarray(x, jnp.float32), jnp.asarray(positions), theta=100.0))
  expected = np.zeros_like(x)
  for i in range(4):  # pair i = channels (i, i + 4), angle = position * theta^(-i / 4)
    angle = positions[..., None] * 100.0 ** (-i / 4)
    a, b = x[..., i], x[..., i + 4]
    expected[..., i] = a * np.cos(angle) - b * np.sin(angle)
    expected[..., i + 4] = b * np.cos(angle) + a * np.sin(angle)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(out[0, 0], np.asarray(x[0, 0], np.float32))  # position 0: identity


def test_rope_preserves_norms_and_encodes_relative_position():
  q = jax.random.normal(jax.random.key(2), (1, 1, 1, 8))
  k = jax.random.normal(jax.random.key(3), (1, 1, 1, 8))
  def score(i, j):
    return float(jnp.sum(rope(q, jnp.array([[i]])) * rope(k, jnp.array([[j]]))))
  np.testing.assert_allclose(score(5, 2), score(13, 10), rtol=1e-5)
  assert abs(score(5, 2) - score(5, 4)) > 1e-3  # but it does depend on the offset
  np.testing.assert_allclose(jnp.linalg.norm(rope(q, jnp.array([[7]]))), jnp.linalg.norm(q), rtol=1e-6)


def test_rope_keeps_the_input_dtype():
  x = jnp.ones((1, 3, 2, 4), jnp.bfloat16)
  assert rope(x, jnp.arange(3)[None]).dtype == jnp.bfloat16
