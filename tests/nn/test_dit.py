"""The small DiT (jaxpapers.nn.dit): patchify, adaLN-Zero, pluggable attention (its losses and
sampler: tests/diffusion)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.errors import ConfigError
from jaxpapers.nn import dit
from kernels_pallas.block_sparse_attention import ops

CONFIG = dit.DiTConfig(input_shape=(2, 8, 8), channels=2, patch=(1, 2, 2), width=32, depth=2,
                       num_heads=2, num_classes=4)


def _inputs(batch=3, seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(keys[0], (batch, *CONFIG.input_shape, CONFIG.channels))
  t = jax.random.uniform(keys[1], (batch,))
  labels = jax.random.randint(keys[2], (batch,), 0, CONFIG.num_classes)
  return x, t, labels


@functools.cache
def _jitted(graphdef, attention):
  return jax.jit(lambda state, x, t, labels: nnx.merge(graphdef, state)(x, t, labels, attention))


def _call(model, x, t, labels, attention=None):
  """model(x, t, labels, attention), jitted (eager NNX calls are slow on CPU)."""
  graphdef, state = nnx.split(model)
  return _jitted(graphdef, attention)(state, x, t, labels)


@functools.cache
def _initial_state():
  """One initialisation shared by the tests (random inits compile slowly on CPU)."""
  return nnx.split(dit.DiT(CONFIG, rngs=nnx.Rngs(0)))


def _fresh_model(attention=dit.dense_attention):
  graphdef, state = _initial_state()
  model = nnx.merge(graphdef, jax.tree.map(jnp.array, state))  # a copy: models are mutable
  model.attention = attention
  return model


@functools.cache
def _randomized_model():
  """A DiT whose zero-initialised (adaLN-Zero, output) layers are made non-zero."""
  model = _fresh_model()
  leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
  rng = np.random.default_rng(1)
  leaves = [x + 0.05 * rng.standard_normal(x.shape).astype(np.float32) for x in leaves]
  nnx.update(model, jax.tree.unflatten(treedef, leaves))
  return model


def test_patchify_order_and_round_trip():
  x = jax.random.normal(jax.random.key(0), (2, 4, 8, 8, 3))
  tokens = dit.patchify(x, (1, 2, 4))
  assert tokens.shape == (2, 4 * 4 * 2, 2 * 4 * 3)
  # Token 1 is frame 0, patch row 0, patch column 1; token 8 starts frame 1.
  np.testing.assert_array_equal(np.asarray(tokens[0, 1]), np.asarray(x[0, 0, 0:2, 4:8]).ravel())
  np.testing.assert_array_equal(np.asarray(tokens[1, 8]), np.asarray(x[1, 1, 0:2, 0:4]).ravel())
  np.testing.assert_array_equal(np.asarray(dit.unpatchify(tokens, (4, 8, 8), (1, 2, 4), 3)),
                                np.asarray(x))


def test_adaln_zero_init_output_and_identity_blocks():
  model = _fresh_model()
  x, t, labels = _inputs()
  assert float(jnp.max(jnp.abs(_call(model, x, t, labels)))) == 0.0
  h = jax.random.normal(jax.random.key(3), (3, CONFIG.num_tokens, CONFIG.width))
  graphdef, state = nnx.split(model)
  block = jax.jit(lambda state, h: (lambda m: m.blocks[0](h, m.condition(t, labels),
                                                           dit.dense_attention))(
                                                               nnx.merge(graphdef, state)))
  np.testing.assert_array_equal(np.asarray(block(state, h)), np.asarray(h))


def test_attention_is_pluggable():
  model = _randomized_model()
  x, t, labels = _inputs()
  dense = _call(model, x, t, labels)
  n = CONFIG.num_tokens
  all_blocks = jnp.ones((1, 1, n // 8, n // 8), bool)
  same = functools.partial(ops.block_sparse_attention, block_mask=all_blocks, block_q=8,
                           block_k=8, implementation="xla")
  np.testing.assert_allclose(np.asarray(_call(model, x, t, labels, same)), np.asarray(dense),
                             atol=1e-5)
  diagonal = jnp.eye(n // 8, dtype=bool)[None, None]
  local = functools.partial(ops.block_sparse_attention, block_mask=diagonal, block_q=8,
                            block_k=8, implementation="xla")
  sparse = _call(model, x, t, labels, local)
  assert float(jnp.max(jnp.abs(sparse - dense))) > 1e-3
  built_sparse = _fresh_model(attention=local)
  nnx.update(built_sparse, nnx.state(model))
  np.testing.assert_allclose(np.asarray(_call(built_sparse, x, t, labels)), np.asarray(sparse),
                             atol=1e-6)


def test_config_validation_and_shape_errors():
  with pytest.raises(ConfigError, match="model.patch"):
    dit.DiTConfig(input_shape=(8, 8), patch=(3, 2))
  with pytest.raises(ConfigError, match="model.width"):
    dit.DiTConfig(width=30, num_heads=4)
  model = _fresh_model()
  x, t, labels = _inputs()
  with pytest.raises(ValueError, match=r"DiT expects inputs \[batch, 2, 8, 8, 2\]"):
    model(x[:, :1], t, labels)
