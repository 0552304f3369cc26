"""The shared tiny LM: shapes, causality, a hand-composed forward and the parameter draw order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.mixers import Mixer, MixerConfig
from jaxpapers.nn.tiny_lm import TinyLM

V, D, L, HIDDEN = 40, 16, 2, 24

MIXERS = {
    "attention": lambda r: CausalSelfAttention(D, 4, rngs=r),
    "2mamba": lambda r: Mixer(D, MixerConfig(kind="2mamba", num_heads=2, head_dim=8, decay_bias=True),
                              rngs=r),
}


def _lm(mixer: str, seed: int = 0, **kw) -> TinyLM:
  return TinyLM(V, D, L, mixer=MIXERS[mixer], mlp_hidden=HIDDEN, rngs=nnx.Rngs(seed), **kw)


def _tokens(seed: int, shape=(2, 9)) -> jax.Array:
  return jax.random.randint(jax.random.key(seed), shape, 0, V)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_shapes_and_parameter_layout(mixer):
  model = _lm(mixer, mlp_bias=False, head_bias=False)
  logits = model(_tokens(0))
  assert logits.shape == (2, 9, V) and logits.dtype == jnp.float32
  assert model.embed.shape == (V, D) and len(model.layers) == L
  block = model.layers[1]
  assert block.up.kernel.shape == (D, HIDDEN) and block.down.kernel.shape == (HIDDEN, D)
  assert block.up.bias is None and block.down.bias is None and model.head.bias is None
  assert _lm(mixer).layers[0].up.bias.shape == (HIDDEN,) and _lm(mixer).head.bias.shape == (V,)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_output_at_t_does_not_depend_on_later_tokens(mixer):
  model = _lm(mixer, seed=1)
  tokens = _tokens(1)
  base = model(tokens)
  t = 4
  later = tokens.at[:, t + 1:].set((tokens[:, t + 1:] + 7) % V)
  after = model(later)
  np.testing.assert_allclose(after[:, :t + 1], base[:, :t + 1], rtol=1e-6, atol=1e-6)
  assert float(jnp.max(jnp.abs(after[:, t + 1:] - base[:, t + 1:]))) > 1e-3  # later positions do see them
  earlier = tokens.at[:, t].set((tokens[:, t] + 3) % V)
  assert float(jnp.max(jnp.abs(model(earlier)[:, t] - base[:, t]))) > 1e-3  # and t sees itself


def _rms(x, scale):
  return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-5) * np.asarray(scale[...], np.float64)


def _gelu(x):  # jax.nn.gelu's default tanh approximation
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _linear(layer, x):
  y = x @ np.asarray(layer.kernel[...], np.float64)
  return y if layer.bias is None else y + np.asarray(layer.bias[...], np.float64)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_forward_matches_a_hand_composed_reference(mixer):
  """Embedding, per layer x + mixer(rms(x)) then x + down(gelu(up(rms(x)))), rms, head."""
  model = _lm(mixer, seed=2)
  model.layers[0].mlp_norm.scale[...] = jnp.linspace(0.5, 1.5, D)  # norms must be applied, not skipped
  tokens = _tokens(2)
  x = np.asarray(model.embed[...], np.float64)[np.asarray(tokens)]
  for layer in model.layers:
    h = _rms(x, layer.mixer_norm.scale)
    x = x + np.asarray(layer.mixer(jnp.asarray(h, jnp.float32)), np.float64)
    x = x + _linear(layer.down, _gelu(_linear(layer.up, _rms(x, layer.mlp_norm.scale))))
  expected = _linear(model.head, _rms(x, model.norm.scale))
  np.testing.assert_allclose(model(tokens), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_parameters_are_drawn_embedding_then_mixer_up_down_per_layer_then_head(mixer):
  """The documented draw order: the experiments' original models drew in exactly this order."""
  model = _lm(mixer, seed=3, embed_std=0.5)
  rngs = nnx.Rngs(3)
  embed = nnx.initializers.normal(0.5)(rngs.params(), (V, D))
  layers = []
  for _ in range(L):
    layers.append((MIXERS[mixer](rngs), nnx.Linear(D, HIDDEN, rngs=rngs), nnx.Linear(HIDDEN, D, rngs=rngs)))
  head = nnx.Linear(D, V, rngs=rngs)
  np.testing.assert_array_equal(model.embed[...], embed)
  for layer, (mix, up, down) in zip(model.layers, layers):
    jax.tree.map(np.testing.assert_array_equal, nnx.state(layer.mixer), nnx.state(mix))
    np.testing.assert_array_equal(layer.up.kernel[...], up.kernel[...])
    np.testing.assert_array_equal(layer.down.kernel[...], down.kernel[...])
  np.testing.assert_array_equal(model.head.kernel[...], head.kernel[...])
  assert float(jnp.std(model.embed[...])) == pytest.approx(0.5, rel=0.2)


def test_rejects_empty_shapes():
  with pytest.raises(ValueError, match="mlp_hidden"):
    TinyLM(V, D, L, mixer=MIXERS["attention"], mlp_hidden=0, rngs=nnx.Rngs(0))


class _SwiGLU(nnx.Module):
  """A bias-free SwiGLU MLP, to check that the LM takes any MLP module."""

  def __init__(self, rngs: nnx.Rngs):
    self.gate = nnx.Linear(D, HIDDEN, use_bias=False, rngs=rngs)
    self.up = nnx.Linear(D, HIDDEN, use_bias=False, rngs=rngs)
    self.down = nnx.Linear(HIDDEN, D, use_bias=False, rngs=rngs)

  def __call__(self, x):
    return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


def test_a_given_mlp_replaces_the_gelu_mlp():
  model = _lm("attention", mlp=_SwiGLU)
  tokens = _tokens(3)
  block = model.layers[0]
  assert not hasattr(block, "up") and isinstance(block.mlp, _SwiGLU)
  x = model.embed[...][tokens]
  for layer in model.layers:  # hand composition of the pre-norm blocks with the given MLP
    x = x + layer.mixer(layer.mixer_norm(x))
    h = layer.mlp_norm(x)
    m = layer.mlp
    x = x + (jax.nn.silu(h @ m.gate.kernel[...]) * (h @ m.up.kernel[...])) @ m.down.kernel[...]
  expected = model.head(model.norm(x))
  np.testing.assert_allclose(np.asarray(model(tokens)), np.asarray(expected), rtol=2e-5, atol=2e-6)
