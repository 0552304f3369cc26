"""Flat-drawn initializers equal the `jax.nn.initializers` originals bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.nn import flat_random as fr

init = jax.nn.initializers

# (ours, the original, shape, dtype): every variant jaxpapers.nn uses (nnx.Linear / nnx.Conv's
# lecun_normal, nnx.Embed's fan_in normal with out_axis=0, normal(std)), plus the other modes,
# distributions and axis choices of variance_scaling.
CASES = [
    (fr.lecun_normal(), init.lecun_normal(), (5, 7), jnp.float32),
    (fr.lecun_normal(), init.lecun_normal(), (3, 3, 2, 4), jnp.float32),  # a conv kernel
    (fr.lecun_normal(), init.lecun_normal(), (5, 7), jnp.bfloat16),
    (fr.lecun_normal(), init.lecun_normal(), (3, 3, 2, 4), jnp.float16),
    (fr.lecun_normal(in_axis=0, out_axis=(1, 2)), init.lecun_normal(in_axis=0, out_axis=(1, 2)),
     (4, 2, 3), jnp.float32),
    (fr.embed_init(), init.variance_scaling(1.0, "fan_in", "normal", out_axis=0), (6, 4),
     jnp.float32),
    (fr.variance_scaling(2.0, "fan_out", "normal"), init.variance_scaling(2.0, "fan_out", "normal"),
     (2, 3, 5), jnp.bfloat16),
    (fr.variance_scaling(1 / 3, "fan_in", "uniform"),
     init.variance_scaling(1 / 3, "fan_in", "uniform"), (3, 3, 2, 4), jnp.float32),
    (fr.variance_scaling(1.0, "fan_avg", "uniform", batch_axis=0),
     init.variance_scaling(1.0, "fan_avg", "uniform", batch_axis=0), (2, 5, 7), jnp.float32),
    (fr.variance_scaling(0.5, "fan_geo_avg", "truncated_normal", in_axis=1, out_axis=0),
     init.variance_scaling(0.5, "fan_geo_avg", "truncated_normal", in_axis=1, out_axis=0),
     (4, 6, 2), jnp.float32),
    (fr.variance_scaling(1.0, "fan_in", "normal"), init.variance_scaling(1.0, "fan_in", "normal"),
     (2, 3), jnp.complex64),  # complex: handed to the original
    (fr.normal(0.02), init.normal(0.02), (5, 7), jnp.float32),
    (fr.normal(0.3), init.normal(0.3), (4, 2, 6), jnp.float32),
    (fr.normal(0.02), init.normal(0.02), (3, 4, 5), jnp.bfloat16),
    (fr.uniform(0.1), init.uniform(0.1), (3, 4, 5), jnp.float32),
]


@pytest.mark.parametrize("ours, original, shape, dtype", CASES,
                         ids=[f"{i}-{c[2]}-{jnp.dtype(c[3]).name}" for i, c in enumerate(CASES)])
def test_equals_the_jax_initializer_bit_for_bit(ours, original, shape, dtype):
  key = jax.random.key(7)
  got, want = np.asarray(ours(key, shape, dtype)), np.asarray(original(key, shape, dtype))
  assert got.shape == want.shape == shape and got.dtype == want.dtype == jnp.dtype(dtype)
  assert got.tobytes() == want.tobytes()
  assert np.std(got.astype(np.complex128)) > 0  # a draw, not a constant


def test_fans_follow_jax_and_a_1d_weight_needs_an_in_axis():
  assert fr.compute_fans((3, 3, 2, 4)) == (18.0, 36.0)
  assert fr.compute_fans((4, 6, 2), in_axis=1, out_axis=0) == (12.0, 8.0)
  assert fr.compute_fans((2, 5, 7), batch_axis=0) == (5.0, 7.0)
  with pytest.raises(ValueError, match="in_axis"):
    fr.lecun_normal()(jax.random.key(0), (5,))


def test_default_dtype_and_bad_arguments():
  key = jax.random.key(1)
  assert fr.lecun_normal()(key, (2, 3)).dtype == jnp.float32
  with pytest.raises(ValueError, match="mode"):
    fr.variance_scaling(1.0, "fan_sum", "normal")(key, (2, 3))
  with pytest.raises(ValueError, match="distribution"):
    fr.variance_scaling(1.0, "fan_in", "cauchy")(key, (2, 3))
