"""2Mamba forms and mixers (arXiv 2602.17363): feature map, quadratic == recurrent == chunked
(Sec. 5.1, Alg. 6 and Mamba-2's SSD form), decode == parallel for every mixer kind, one
interface by config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn import second_order
from jaxpapers.nn.mixers import Mixer, MixerConfig
from kernels_pallas.second_order_attention import reference


def _inputs(n=40, heads=2, dim=8, seed=0):
  ks = jax.random.split(jax.random.key(seed), 4)
  q, k, v = (jax.random.normal(ks[i], (2, n, heads, dim)) for i in range(3))
  return q, k, v, -jax.nn.softplus(jax.random.normal(ks[3], (2, n, heads)))


@pytest.mark.parametrize("dim", [1, 5, 16])
def test_feature_map_dimension_and_identity(dim):
  x, y = np.random.default_rng(dim).normal(size=(2, 7, dim))
  fx, fy = second_order.feature_map(jnp.asarray(x)), second_order.feature_map(jnp.asarray(y))
  assert fx.shape == (7, dim * (dim + 1) // 2) == (7, second_order.feature_dim(dim))
  np.testing.assert_allclose(np.sum(np.asarray(fx) * np.asarray(fy), -1), np.sum(x * y, -1) ** 2,
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["square", "linear"])
def test_quadratic_recurrent_and_chunked_forms_agree(variant):
  q, k, v, a = _inputs()  # N = 40, d = 8, chunk 8
  quadratic = (reference.squared_attention if variant == "square" else reference.linear_attention)

  @jax.jit
  def forms(q, k, v, a):
    return (quadratic(q, k, v, a), second_order.recurrent_attention(q, k, v, a, variant=variant),
            second_order.chunked_attention(q, k, v, a, chunk=8, variant=variant))

  want, (rec, rec_state), (chunk, chunk_state) = forms(q, k, v, a)
  np.testing.assert_allclose(rec, want, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(chunk, want, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(chunk_state.s, rec_state.s, atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(chunk_state.z, rec_state.z, atol=1e-4, rtol=1e-4)
  features = second_order.feature_dim(8, variant)
  assert rec_state.s.shape == (2, 2, features, 8)


def test_chunked_form_continues_from_a_state():
  q, k, v, a = _inputs()

  @jax.jit
  def split_run(q, k, v, a):
    whole, _ = second_order.chunked_attention(q, k, v, a, chunk=8)
    first, state = second_order.chunked_attention(q[:, :16], k[:, :16], v[:, :16], a[:, :16],
                                                  chunk=8)
    second, _ = second_order.recurrent_attention(q[:, 16:], k[:, 16:], v[:, 16:], a[:, 16:],
                                                 state=state)
    return whole, first, second

  whole, first, second = split_run(q, k, v, a)
  np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, atol=1e-4, rtol=1e-4)


def test_state_is_constant_in_length_and_matches_the_formula():
  d = 16
  state = second_order.init_decode_state(1, 1, d)
  # Sec. 5.1: d D + D floats with D = d(d+1)/2 (the conv window adds 3d in a mixer).
  assert second_order.state_bytes(state) == 4 * (d * d * (d + 1) // 2 + d * (d + 1) // 2)


_KINDS = ["mamba2s", "2mamba", "2mamba_e", "softmax"]


@pytest.mark.parametrize("kind", _KINDS)
def test_decode_steps_reproduce_the_parallel_mixer(kind):
  x = jax.random.normal(jax.random.key(1), (2, 12, 24))
  mixer = Mixer(24, MixerConfig(kind=kind, num_heads=2, head_dim=8, decay_bias=True),
                rngs=nnx.Rngs(0))
  parallel = mixer(x)
  cache = mixer.init_cache(2, max_len=12)
  step = nnx.jit(lambda m, c, xt: m.decode_step(c, xt))
  outs = []
  for t in range(12):
    y, cache = step(mixer, cache, x[:, t])
    outs.append(y)
  np.testing.assert_allclose(jnp.stack(outs, 1), parallel, atol=1e-4, rtol=1e-4)
  assert int(cache.position) == 12


def test_one_interface_swapped_by_config():
  x = jax.random.normal(jax.random.key(2), (1, 16, 24))
  outs = {}
  for kind in _KINDS:
    mixer = Mixer(24, MixerConfig(kind=kind, num_heads=2, head_dim=8), rngs=nnx.Rngs(0))
    outs[kind] = mixer(x)
    assert outs[kind].shape == x.shape
  assert float(jnp.max(jnp.abs(outs["2mamba"] - outs["2mamba_e"]))) > 1e-3
  chunked = Mixer(24, MixerConfig(kind="2mamba", num_heads=2, head_dim=8, implementation="chunked",
                                  chunk=4), rngs=nnx.Rngs(0))
  np.testing.assert_allclose(chunked(x), outs["2mamba"], atol=1e-4, rtol=1e-4)
  pallas = Mixer(24, MixerConfig(kind="2mamba_e", num_heads=2, head_dim=8, implementation="pallas"),
                 rngs=nnx.Rngs(0))
  np.testing.assert_allclose(pallas(x), outs["2mamba_e"], atol=1e-5, rtol=1e-5)


def test_mamba2s_uses_dt_and_output_norm_2mamba_does_not():
  m2s = Mixer(24, MixerConfig(kind="mamba2s", num_heads=2, head_dim=8), rngs=nnx.Rngs(0))
  two = Mixer(24, MixerConfig(kind="2mamba", num_heads=2, head_dim=8), rngs=nnx.Rngs(0))
  assert m2s.w_dt is not None and m2s.out_norm is not None
  assert two.w_dt is None and two.out_norm is None
  # The conv starts as the identity on the current token: token 0's output sees only token 0.
  x = jax.random.normal(jax.random.key(3), (1, 5, 24))
  np.testing.assert_allclose(two(x)[:, :1], two(x[:, :1]), atol=1e-6)


def test_bad_configs_raise():
  with pytest.raises(ValueError, match="kind"):
    MixerConfig(kind="mamba3")
  with pytest.raises(ValueError, match="no chunked form"):
    MixerConfig(kind="softmax", implementation="chunked")
  with pytest.raises(ValueError, match="no Pallas kernel"):
    MixerConfig(kind="mamba2s", implementation="pallas")
  mixer = Mixer(24, MixerConfig(kind="2mamba", num_heads=2, head_dim=8), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="expects"):
    mixer(jnp.zeros((1, 4, 23)))
