"""Random draws made flat and reshaped: the same bits as the N-d draws, cheaper to compile.

With `jax_threefry_partitionable` (JAX's default) the bits of element i are threefry of its
row-major index, so a flat draw reshaped equals the N-d draw bit for bit; XLA on CPU compiles
the N-d draw (an N-d iota split into two 32-bit words) up to ~10x slower (measured: ten
[3, 3, 16, c] kernels, 23.6 CPU-s against 2.0 CPU-s to compile). Model init and test inputs are
mostly such draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

Initializer = jax.nn.initializers.Initializer


def _default_float():
  return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def flat_uniform(key: jax.Array, shape: tuple[int, ...], minval: float = 0.0,
                 maxval: float = 1.0, dtype=jnp.float32) -> jax.Array:
  """`jax.random.uniform(key, shape, dtype, minval, maxval)`, bit for bit, drawn flat."""
  return jax.random.uniform(key, (math.prod(shape),), dtype, minval, maxval).reshape(shape)


def flat_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """`jax.random.normal(key, shape, dtype)`, bit for bit, drawn flat."""
  return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


# ---- flat-drawn `jax.nn.initializers` (the same values, bit for bit) ----
#
# NNX modules built eagerly compile each initializer's draw on its own; these draw flat, scale
# flat and reshape last, with the N-d shape's fans computed as `jax.nn.initializers` does.
# Measured (eager builds, fresh process, CPU-s user+sys): AFMoE tiny 6.7 -> 3.1, TinyLM 3.3 ->
# 2.7, DiT 4.6 -> 3.8 with the N-d draws made flat.


def compute_fans(shape: tuple[int, ...], in_axis: int | Sequence[int] = -2,
                 out_axis: int | Sequence[int] = -1,
                 batch_axis: int | Sequence[int] = ()) -> tuple[float, float]:
  """`(fan_in, fan_out)` of an N-d weight, in `jax.nn.initializers`' arithmetic and order.

  Axes in neither `in_axis`, `out_axis` nor `batch_axis` are the receptive field (a
  convolution's spatial axes).

  Raises:
    ValueError: for a weight of fewer than 2 dimensions with the default `in_axis`.
  """
  if isinstance(in_axis, int) and in_axis == -2 and len(shape) <= 1:
    raise ValueError(f"Can't compute input and output sizes of a {len(shape)}-dimensional "
                     "weights tensor with default in_axis: give in_axis explicitly.")
  size = lambda axes: shape[axes] if isinstance(axes, int) else math.prod([shape[i] for i in axes])
  in_size, out_size, batch_size = size(in_axis), size(out_axis), size(batch_axis)
  receptive_field_size = math.prod(shape) / in_size / out_size / batch_size
  return in_size * receptive_field_size, out_size * receptive_field_size


def variance_scaling(scale: float, mode: str, distribution: str,
                     in_axis: int | Sequence[int] = -2, out_axis: int | Sequence[int] = -1,
                     batch_axis: int | Sequence[int] = (), dtype=None) -> Initializer:
  """`jax.nn.initializers.variance_scaling`, bit for bit, drawn flat (real dtypes).

  Complex dtypes and an `out_sharding` go to the original (N-d) initializer.
  """
  original = jax.nn.initializers.variance_scaling(scale, mode, distribution, in_axis, out_axis,
                                                   batch_axis, dtype)

  def init(key: jax.Array, shape: Sequence[int], dtype=dtype, out_sharding=None) -> jax.Array:
    shape = tuple(int(d) for d in shape)
    dtype = _default_float() if dtype is None else dtype
    if out_sharding is not None or not jnp.issubdtype(dtype, jnp.floating):
      return original(key, shape, dtype, out_sharding)
    fan_in, fan_out = compute_fans(shape, in_axis, out_axis, batch_axis)
    denominators = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
                    "fan_geo_avg": (fan_in * fan_out) ** 0.5}
    if mode not in denominators:
      raise ValueError(f"invalid mode for variance scaling initializer: {mode}")
    variance = jnp.array(scale / denominators[mode], dtype=dtype)
    n = (math.prod(shape),)
    if distribution == "truncated_normal":
      # constant: the standard deviation of a standard normal truncated to (-2, 2)
      stddev = jnp.sqrt(variance) / jnp.array(.87962566103423978, dtype)
      values = jax.random.truncated_normal(key, -2, 2, n, dtype) * stddev
    elif distribution == "normal":
      values = jax.random.normal(key, n, dtype) * jnp.sqrt(variance)
    elif distribution == "uniform":
      values = jax.random.uniform(key, n, dtype, -1) * jnp.sqrt(3 * variance)
    else:
      raise ValueError(f"invalid distribution for variance scaling initializer: {distribution}")
    return values.reshape(shape)

  return init


def lecun_normal(in_axis: int | Sequence[int] = -2, out_axis: int | Sequence[int] = -1,
                 batch_axis: int | Sequence[int] = (), dtype=None) -> Initializer:
  """`jax.nn.initializers.lecun_normal` (nnx.Linear / nnx.Conv's default), drawn flat."""
  return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis, batch_axis, dtype)


def embed_init() -> Initializer:
  """nnx.Embed's default, `variance_scaling(1, "fan_in", "normal", out_axis=0)`, drawn flat."""
  return variance_scaling(1.0, "fan_in", "normal", out_axis=0)


def normal(stddev: float = 1e-2, dtype=None) -> Initializer:
  """`jax.nn.initializers.normal(stddev)`, bit for bit, drawn flat."""

  def init(key: jax.Array, shape: Sequence[int], dtype=dtype, out_sharding=None) -> jax.Array:
    shape = tuple(int(d) for d in shape)
    dtype = _default_float() if dtype is None else dtype
    if out_sharding is not None:
      return jax.nn.initializers.normal(stddev)(key, shape, dtype, out_sharding)
    values = jax.random.normal(key, (math.prod(shape),), dtype) * jnp.array(stddev, dtype)
    return values.reshape(shape)

  return init


def uniform(scale: float = 1e-2, dtype=None) -> Initializer:
  """`jax.nn.initializers.uniform(scale)` (U[0, scale)), bit for bit, drawn flat."""

  def init(key: jax.Array, shape: Sequence[int], dtype=dtype, out_sharding=None) -> jax.Array:
    shape = tuple(int(d) for d in shape)
    dtype = _default_float() if dtype is None else dtype
    if out_sharding is not None:
      return jax.nn.initializers.uniform(scale)(key, shape, dtype, out_sharding)
    values = jax.random.uniform(key, (math.prod(shape),), dtype) * jnp.array(scale, dtype)
    return values.reshape(shape)

  return init
