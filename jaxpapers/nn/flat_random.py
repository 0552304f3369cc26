"""Random draws made flat and reshaped: the same bits as the N-d draws, cheaper to compile.

With `jax_threefry_partitionable` (JAX's default) the bits of element i are threefry of its
row-major index, so a flat draw reshaped equals the N-d draw bit for bit; XLA on CPU compiles
the N-d draw (an N-d iota split into two 32-bit words) up to ~10x slower (measured: ten
[3, 3, 16, c] kernels, 23.6 CPU-s against 2.0 CPU-s to compile). Model init and test inputs are
mostly such draws.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def flat_uniform(key: jax.Array, shape: tuple[int, ...], minval: float = 0.0,
                 maxval: float = 1.0, dtype=jnp.float32) -> jax.Array:
  """`jax.random.uniform(key, shape, dtype, minval, maxval)`, bit for bit, drawn flat."""
  return jax.random.uniform(key, (math.prod(shape),), dtype, minval, maxval).reshape(shape)


def flat_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """`jax.random.normal(key, shape, dtype)`, bit for bit, drawn flat."""
  return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)
