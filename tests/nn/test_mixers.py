"""2Mamba forms and mixers (arXiv 2602.17363): feature map, quadratic == recurrent == chunked
(Sec. 5.1, Alg. 6 and Mamba-2's SSD form), decode == parallel for every mixer kind, the
baselines against independent references (softmax: jax.nn.dot_product_attention; Mamba-2: its
token-by-token recurrence), the Mamba-2 -> Mamba-2S ladder by overrides."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn import mixers, second_order
from jaxpapers.nn.mixers import Mixer, MixerConfig
from jaxpapers.nn.rope import rope
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


_CONFIGS = {kind: MixerConfig(kind=kind, num_heads=2, head_dim=8, decay_bias=True)
            for kind in mixers.KINDS}
_CONFIGS["mamba2_module"] = mixers.mamba2_module(24, head_dim=8, d_state=12)


@pytest.mark.parametrize("name", list(_CONFIGS))
def test_decode_steps_reproduce_the_parallel_mixer(name):
  x = jax.random.normal(jax.random.key(1), (2, 12, 24))
  mixer = Mixer(24, _CONFIGS[name], rngs=nnx.Rngs(0))
  parallel = mixer(x)
  cache = mixer.init_cache(2, max_len=12)
  assert (cache.state is not None) == _CONFIGS[name].recurrent
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
  for kind in ("2mamba", "2mamba_e"):
    mixer = Mixer(24, MixerConfig(kind=kind, num_heads=2, head_dim=8), rngs=nnx.Rngs(0))
    outs[kind] = mixer(x)
    assert outs[kind].shape == x.shape
  assert float(jnp.max(jnp.abs(outs["2mamba"] - outs["2mamba_e"]))) > 1e-3
  chunked = Mixer(24, MixerConfig(kind="2mamba", num_heads=2, head_dim=8, implementation="chunked",
                                  chunk=5), rngs=nnx.Rngs(0))  # 16 tokens: pads to 20
  np.testing.assert_allclose(chunked(x), outs["2mamba"], atol=1e-4, rtol=1e-4)
  pallas = Mixer(24, MixerConfig(kind="2mamba_e", num_heads=2, head_dim=8, implementation="pallas"),
                 rngs=nnx.Rngs(0))
  np.testing.assert_allclose(pallas(x), outs["2mamba_e"], atol=1e-5, rtol=1e-5)


def _heads(mixer, x):
  """The mixer's q, k, v and log-decay recomputed from its parameters (no conv: the baselines)."""
  cfg = mixer.config
  h, d, n = cfg.num_heads, cfg.head_dim, cfg.state_width
  q, k, v = jnp.split(x @ mixer.qkv[...], [h * n, 2 * h * n], -1)
  return q.reshape(x.shape[:2] + (h, n)), k.reshape(x.shape[:2] + (h, n)), v.reshape(
      x.shape[:2] + (h, d))


def test_softmax_baseline_is_plain_causal_attention_with_rope():
  # The paper's baseline: no conv, no decay; jax.nn.dot_product_attention is the reference.
  x = jax.random.normal(jax.random.key(4), (2, 10, 24))
  mixer = Mixer(24, MixerConfig(kind="softmax", num_heads=2, head_dim=8), rngs=nnx.Rngs(0))
  assert mixer.conv_kernel is None and mixer.w_decay is None and mixer.w_dt is None
  q, k, v = _heads(mixer, x)
  positions = jnp.arange(10)[None]
  y = jax.nn.dot_product_attention(rope(q, positions), rope(k, positions), v, is_causal=True)
  np.testing.assert_allclose(mixer(x), y.reshape(2, 10, 16) @ mixer.out[...], atol=1e-5)


def test_linear_baseline_is_relu_linear_attention_with_row_sums():
  x = jax.random.normal(jax.random.key(5), (2, 10, 24))
  mixer = Mixer(24, MixerConfig(kind="linear", num_heads=2, head_dim=8), rngs=nnx.Rngs(0))
  q, k, v = _heads(mixer, x)
  w = jnp.einsum("bqhd,bkhd->bhqk", jax.nn.relu(q), jax.nn.relu(k)) / jnp.sqrt(8.0)
  w = w * jnp.tril(jnp.ones((10, 10)))
  y = jnp.einsum("bhqk,bkhd->bqhd", w / jnp.maximum(w.sum(-1, keepdims=True), 1e-6), v)
  np.testing.assert_allclose(mixer(x), y.reshape(2, 10, 16) @ mixer.out[...], atol=1e-5)


def _mamba2_scan(mixer, x):
  """Mamba-2 token by token as `mamba_ssm`'s Mamba2.step writes it (float64 numpy): conv window
  then SiLU on x, B, C; dA = exp(dt A); state = dA state + dt B x^T; y = C state + D x; gated
  RMSNorm norm(y * SiLU(z)); gated-MLP branch first; output projection."""
  p = jax.tree.map(lambda v: np.asarray(v, np.float64), nnx.to_pure_dict(nnx.state(mixer)))
  cfg = mixer.config
  h, d, n = cfg.num_heads, cfg.head_dim, cfg.state_width
  x = np.asarray(x, np.float64)
  pre = x @ p["qkv"]
  conv = sum(np.pad(pre, ((0, 0), (1 - m, m), (0, 0)))[:, :pre.shape[1]] * p["conv_kernel"][m]
             for m in range(2))
  silu = lambda u: u / (1 + np.exp(-u))
  act = silu(conv)
  dt = np.log1p(np.exp(x @ p["w_dt"] + p["b_dt"]))  # [b, t, h]
  a = -np.exp(p["a_log"])
  state = np.zeros((x.shape[0], h, d, n))
  ys = []
  for t in range(x.shape[1]):
    c_t = act[:, t, :h * n].reshape(-1, h, n)
    b_t = act[:, t, h * n:2 * h * n].reshape(-1, h, n)
    x_t = act[:, t, 2 * h * n:].reshape(-1, h, d)
    da = np.exp(dt[:, t] * a)[..., None, None]
    state = da * state + dt[:, t][..., None, None] * x_t[..., :, None] * b_t[..., None, :]
    ys.append(np.einsum("bhpn,bhn->bhp", state, c_t) + p["d_skip"] * x_t)
  y = np.stack(ys, 1).reshape(x.shape[0], x.shape[1], h * d)
  y = y * silu(x @ p["w_z"])
  y = y / np.sqrt(np.mean(y * y, -1, keepdims=True) + 1e-5) * p["out_norm"]["scale"]
  gate, up = np.split(x @ p["w_mlp"], 2, -1)
  return np.concatenate([silu(gate) * up, y], -1) @ p["out"]


def test_mamba2_matches_its_token_by_token_recurrence():
  x = jax.random.normal(jax.random.key(6), (2, 9, 24))
  config = mixers.mamba2_module(24, head_dim=8, d_state=12)  # 1 SSM head, B/C 12-wide, MLP 16
  mixer = Mixer(24, config, rngs=nnx.Rngs(0))
  assert mixer.conv_bias is None and mixer.b_decay is None and mixer.w_mlp.shape == (24, 32)
  ks = jax.random.split(jax.random.key(8), 2)  # off the identity init, so the conv is tested
  mixer.conv_kernel[...] = jax.random.normal(ks[0], mixer.conv_kernel.shape)
  mixer.d_skip[...] = jax.random.normal(ks[1], mixer.d_skip.shape)
  np.testing.assert_allclose(mixer(x), _mamba2_scan(mixer, x), atol=1e-4, rtol=1e-4)


def test_the_ladder_from_mamba2_to_mamba2s_is_walked_by_overrides():
  # Paper Sec. 3-4: drop the QK (and V) activation, D residual, z gate, and replace the
  # A-mask discretisation by softplus (with the conv bias and 1/sqrt(d) of the authors' code).
  ladder = dict(qk_activation="none", v_activation="none", d_residual=False, z_gate=False,
                decay="softplus", decay_bias=False, conv_bias=True, qk_scale=True)
  walked = MixerConfig(kind="mamba2", num_heads=2, head_dim=8, **ladder)
  target = MixerConfig(kind="mamba2s", num_heads=2, head_dim=8)
  assert walked.switches == target.switches
  x = jax.random.normal(jax.random.key(7), (1, 8, 24))
  np.testing.assert_array_equal(Mixer(24, walked, rngs=nnx.Rngs(0))(x),
                                Mixer(24, target, rngs=nnx.Rngs(0))(x))
  # ... and a kind swap keeps only the overrides.
  assert dataclasses.replace(walked, kind="2mamba").switches["score"] == "square"


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
  with pytest.raises(ValueError, match="no Pallas kernel"):
    mixers.mamba2_module(24, head_dim=8, score="square", norm="sm", implementation="pallas")
  with pytest.raises(ValueError, match="need norm='sm'"):
    MixerConfig(kind="2mamba_e", norm="output")
  with pytest.raises(ValueError, match="decay must be one of"):
    MixerConfig(kind="mamba2", decay="exp")
  mixer = Mixer(24, MixerConfig(kind="2mamba", num_heads=2, head_dim=8), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="expects"):
    mixer(jnp.zeros((1, 4, 23)))
