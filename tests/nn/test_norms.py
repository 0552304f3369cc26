"""RMSNorm against the formula, in float32 whatever the input dtype."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.nn.norms import RMSNorm


def test_rms_norm_matches_the_formula_with_a_learned_scale():
  norm = RMSNorm(6, eps=1e-3)
  np.testing.assert_array_equal(norm.scale[...], np.ones(6))
  norm.scale[...] = jnp.arange(1.0, 7.0)
  x = np.asarray(jax.random.normal(jax.random.key(0), (3, 4, 6)), np.float64) * 5.0
  expected = x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-3) * np.arange(1.0, 7.0)
  np.testing.assert_allclose(norm(jnp.asarray(x, jnp.float32)), expected, rtol=1e-5)


def test_rms_norm_init_and_dtype():
  norm = RMSNorm(4, init=0.5)
  np.testing.assert_array_equal(norm.scale[...], np.full(4, 0.5, np.float32))
  x = jnp.array([[3.0, -4.0, 0.0, 0.0]], jnp.bfloat16)
  y = norm(x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32), [[0.6, -0.8, 0.0, 0.0]], rtol=1e-2)  # rms 2.5
