"""Tactile encoder: single-query pooling against a hand-written softmax attention, token-order
invariance without positions, masking counts and the masked reconstruction loss by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn.tactile import (
  AttentionPool,
  TactileAutoencoder,
  TactileConfig,
  masked_reconstruction_loss,
  token_mask,
)

encode = nnx.jit(lambda model, x: model(x))  # one compiled program per model: faster than eager


@pytest.fixture(scope="module")
def xela_tokens():
  return jax.random.normal(jax.random.key(1), (5, 16, 3))


def test_pool_equals_single_query_softmax_attention():
  config = TactileConfig(tokens=7, width=8, heads=2)
  pool = AttentionPool(config, rngs=nnx.Rngs(0))
  tokens = jax.random.normal(jax.random.key(2), (3, 7, 8))
  a = pool.attention
  q = jnp.einsum("w,whd->hd", pool.query[...][0], a.query.kernel[...]) + a.query.bias[...]
  k = jnp.einsum("btw,whd->bthd", tokens, a.key.kernel[...]) + a.key.bias[...]
  v = jnp.einsum("btw,whd->bthd", tokens, a.value.kernel[...]) + a.value.bias[...]
  weights = jax.nn.softmax(jnp.einsum("hd,bthd->bht", q, k) / np.sqrt(4), axis=-1)
  heads = jnp.einsum("bht,bthd->bhd", weights, v)
  expected = jnp.einsum("bhd,hdw->bw", heads, a.out.kernel[...]) + a.out.bias[...]
  np.testing.assert_allclose(nnx.jit(lambda p, t: p(t))(pool, tokens), expected, atol=1e-5)


def test_latent_shape_and_token_order_invariance(xela_tokens):
  perm = np.random.default_rng(0).permutation(16)
  plain = TactileAutoencoder(TactileConfig(tokens=16, positional=False), rngs=nnx.Rngs(3))
  z = encode(plain, xela_tokens)
  assert z.shape == (5, 8)
  np.testing.assert_allclose(encode(plain, xela_tokens[:, perm]), z, atol=1e-5)
  positional = TactileAutoencoder(TactileConfig(tokens=16), rngs=nnx.Rngs(3))
  assert np.abs(encode(positional, xela_tokens[:, perm]) - encode(positional, xela_tokens)).max() > 1e-3


def test_token_mask_masks_exactly_a_quarter():
  mask = token_mask(jax.random.key(4), 64, 16, 0.25)
  np.testing.assert_array_equal(mask.sum(1), 4)
  assert 0.15 < float(mask[:, 0].mean()) < 0.35  # every position is masked about as often
  assert not token_mask(jax.random.key(4), 8, 1, 0.25).any()  # one token: no masking


def test_masked_loss_equals_the_hand_computation(xela_tokens):
  model = TactileAutoencoder(TactileConfig(tokens=16), rngs=nnx.Rngs(5))
  rng = jax.random.key(6)
  mask = token_mask(rng, 5, 16, 0.25)
  expected = jnp.mean((model.decoder(model.encoder(xela_tokens, mask)) - xela_tokens) ** 2)
  np.testing.assert_allclose(masked_reconstruction_loss(model, xela_tokens, rng), expected, rtol=1e-6)
  unmasked = jnp.mean((model.reconstruct(xela_tokens) - xela_tokens) ** 2)
  assert abs(float(expected - unmasked)) > 1e-6  # the mask token changes the input
  weights = jnp.array([1.0, 0, 0, 0, 0])
  one = jnp.mean((model.decoder(model.encoder(xela_tokens, mask))[:1] - xela_tokens[:1]) ** 2)
  np.testing.assert_allclose(masked_reconstruction_loss(model, xela_tokens, rng, weights=weights),
                             one, rtol=1e-6)


def test_bad_shapes_are_refused():
  model = TactileAutoencoder(TactileConfig(tokens=1), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="expected"):
    model(jnp.zeros((2, 16, 3)))
  with pytest.raises(ValueError, match="divisible"):
    TactileConfig(tokens=1, width=30, heads=4)
