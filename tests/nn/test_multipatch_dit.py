"""Multi-patch DiT (DDiT, arXiv 2602.16968): PI-resize, de-embed init, positions, base path = teacher."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.errors import ConfigError
from jaxpapers.nn import dit
from jaxpapers.nn import multipatch_dit as mp

DIT = dit.DiTConfig(input_shape=(16, 16), channels=2, patch=(2, 2), width=16, depth=2,
                    num_heads=2, num_classes=3, frequency_dim=16)
CONFIG = mp.MultiPatchConfig(dit=DIT, scales=(2, 4), lora_rank=4)


def _build() -> nnx.State:
  m = mp.MultiPatchDiT(CONFIG, rngs=nnx.Rngs(0))
  # A "trained" teacher: every base weight random (DiT zero-initialises its modulation and output).
  leaves, treedef = jax.tree.flatten(nnx.state(m.dit))
  keys = jax.random.split(jax.random.key(1), len(leaves))
  nnx.update(m.dit, jax.tree.unflatten(
      treedef, [0.3 * jax.random.normal(k, v.shape) for k, v in zip(keys, leaves)]))
  m.init_from_base()
  return nnx.state(m)


GRAPHDEF = nnx.graphdef(nnx.eval_shape(lambda: mp.MultiPatchDiT(CONFIG, rngs=nnx.Rngs(0))))


@jax.jit
def _velocity(state, x, t, labels):
  m = nnx.merge(GRAPHDEF, state)
  return {str(size): m(x, t, labels, size=size) for size in (None, 2, 4)}


@pytest.fixture(scope="module")
def model():
  return nnx.merge(GRAPHDEF, jax.jit(_build)())


@pytest.fixture(scope="module")
def inputs():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((3, 16, 16, 2)), jnp.float32)
  return x, jnp.asarray([0.1, 0.5, 0.9], jnp.float32), jnp.asarray([0, 1, 2], jnp.int32)


def test_patchify_round_trip_is_exact_for_both_sizes():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 16, 16, 2)), jnp.float32)
  for p in (2, 4):
    tokens = dit.patchify(x, (p, p))
    assert tokens.shape == (2, (16 // p) ** 2, p * p * 2)
    np.testing.assert_array_equal(dit.unpatchify(tokens, (16, 16), (p, p), 2), x)


def test_bilinear_matrix_is_the_kronecker_product_of_1d_half_pixel_weights():
  # 1-D bilinear 2 -> 4 with half-pixel centres (output centre (i + 0.5) / 2 - 0.5), edges clamped.
  b1 = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
  np.testing.assert_allclose(mp.bilinear_matrix(2, 4), np.kron(b1, b1), atol=1e-7)
  for p, size in ((2, 8), (3, 6)):  # column j: jax.image.resize of the j-th basis patch
    basis = np.eye(p * p, dtype=np.float32).reshape(p * p, p, p)
    cols = [np.asarray(jax.image.resize(b, (size, size), "bilinear", antialias=False)).ravel()
            for b in basis]
    np.testing.assert_allclose(mp.bilinear_matrix(p, size), np.stack(cols, 1), atol=1e-6)


def test_pi_resize_preserves_inner_products_and_embeds_like_the_least_squares_downsample():
  rng = np.random.default_rng(2)
  p, size, c = 2, 4, 2
  w = rng.standard_normal((p * p * c, 5))
  w_new = mp.pi_resize_matrix(p, size, c) @ w
  up = mp.upsample_matrix(p, size, c)
  x = rng.standard_normal((7, p * p * c))
  np.testing.assert_allclose((x @ up.T) @ w_new, x @ w, atol=1e-5)  # <B x, W_new> = <x, W>
  # FlexiViT's formula (B^T)^+ computed independently with numpy's pinv.
  np.testing.assert_allclose(mp.pi_resize_matrix(p, size, c), np.linalg.pinv(up.T), atol=1e-6)
  x_coarse = rng.standard_normal((7, size * size * c))
  downsample = np.linalg.lstsq(up, x_coarse.T, rcond=None)[0].T  # argmin ||B z - x_coarse||
  np.testing.assert_allclose(x_coarse @ w_new, downsample @ w, atol=1e-5)


def test_new_embed_and_de_embed_are_initialised_from_the_base(model):
  rng = np.random.default_rng(3)
  for size, path in zip(CONFIG.sizes[1:], model.paths):
    up = mp.upsample_matrix(2, size, DIT.channels)
    np.testing.assert_allclose(path.embed.kernel[...],
                               np.linalg.pinv(up.T) @ model.dit.embed.kernel[...], atol=1e-5)
    h = jnp.asarray(rng.standard_normal((4, DIT.width)), jnp.float32)
    # Each coarse output token is the bilinear up-sampling of the base model's output token.
    np.testing.assert_allclose(path.out(h), model.dit.out(h) @ up.T, atol=1e-5)
    np.testing.assert_array_equal(path.size_id[...], 0)


def test_positions_interpolate_to_block_means_at_factor_two():
  pos = jnp.asarray(np.random.default_rng(4).standard_normal((64, 3)), jnp.float32)
  coarse = mp.interpolate_positions(pos, (8, 8), (4, 4))
  expected = np.asarray(pos).reshape(4, 2, 4, 2, 3).mean(axis=(1, 3)).reshape(16, 3)
  np.testing.assert_allclose(coarse, expected, atol=1e-6)


def test_base_path_is_the_teacher_bit_for_bit_even_after_the_adapters_change(model, inputs):
  x, t, labels = inputs
  teacher_def = nnx.graphdef(nnx.eval_shape(lambda: dit.DiT(DIT, rngs=nnx.Rngs(5))))
  expected = jax.jit(lambda s: nnx.merge(teacher_def, s)(x, t, labels))(nnx.state(model.dit))
  before = _velocity(nnx.state(model), x, t, labels)
  np.testing.assert_array_equal(before['None'], expected)
  np.testing.assert_array_equal(before['2'], expected)
  # Perturb every new parameter: the base path stays exact, the coarse path moves.
  _, adapters, rest = nnx.split(model, mp.ADAPTERS, ...)
  moved = jax.tree.map(lambda v: v + 0.1, adapters)
  after = _velocity(nnx.merge_state(moved, rest), x, t, labels)
  np.testing.assert_array_equal(after['None'], expected)
  assert float(jnp.max(jnp.abs(after['4'] - before['4']))) > 1e-3


def test_coarse_path_at_init_is_the_base_stack_on_pi_resized_tokens(model, inputs):
  """LoRA B = 0, R_phi's last layer = 0, e_p = 0: the coarse forward is the frozen stack run on
  PI-resized tokens with interpolated positions, its output up-sampled (a hand-built reference)."""
  x, t, labels = inputs
  d = model.dit
  size = 4
  c = d.condition(t, labels)
  pos = np.asarray(d.pos[...]).reshape(4, 2, 4, 2, DIT.width).mean(axis=(1, 3)).reshape(16, -1)
  w = mp.pi_resize_matrix(2, size, DIT.channels) @ np.asarray(d.embed.kernel[...])
  h = dit.patchify(x, (size, size)) @ w + d.embed.bias[...] + pos
  for block in d.blocks:
    h = block(h, c, dit.dense_attention)
  shift, scale = jnp.split(d.final_ada(jax.nn.silu(c)), 2, -1)
  h = d.final_norm(h) * (1 + scale[:, None]) + shift[:, None]
  up = mp.upsample_matrix(2, size, DIT.channels)
  out = dit.unpatchify((d.out(h)) @ up.T, (16, 16), (size, size), DIT.channels)
  np.testing.assert_allclose(_velocity(nnx.state(model), x, t, labels)[str(size)], out, atol=1e-4)


def test_adapter_filter_selects_exactly_the_new_parameters(model):
  new = nnx.state(model, mp.ADAPTERS)
  w, r, depth, hidden = DIT.width, CONFIG.lora_rank, DIT.depth, DIT.mlp_ratio * DIT.width
  lora = depth * (w * r + r * hidden + hidden * r + r * w)
  paths = sum(2 * (s * s * 2) * w + w + s * s * 2 + w for s in (4, 8))
  residual = 2 * 2 + 2 * 8 + 8 + 8 * 2 + 2  # LayerNorm (2 channels), fc1, fc2
  assert sum(v.size for v in jax.tree.leaves(new)) == lora + paths + residual
  assert not any("dit" in jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(new))


def test_config_refuses_bad_shapes():
  with pytest.raises(ConfigError, match="model.scales"):
    mp.MultiPatchConfig(dit=DIT, scales=(3,))
  with pytest.raises(ConfigError, match="model.scales"):
    mp.MultiPatchConfig(dit=DIT, scales=(1,))
  with pytest.raises(ConfigError, match="model.dit.input_shape"):
    mp.MultiPatchConfig(dit=dit.DiTConfig(input_shape=(2, 8, 8), patch=(1, 2, 2)))
  with pytest.raises(ValueError, match="not a coarse size"):
    nnx.eval_shape(lambda: mp.MultiPatchDiT(mp.MultiPatchConfig(dit=DIT, scales=(2,)),
                                            rngs=nnx.Rngs(0)))._path(8)
