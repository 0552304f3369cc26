"""The tiny RAFT-Stereo (arXiv 2109.07547 as StereoAdapter-2, arXiv 2602.16915, builds on it):
correlation pyramid and lookup against numpy loops, both upsamplings against hand-computed
values, the sequence loss' weights, the ConvGRU's parameter count, and the loop's outputs with
either updater (parameter counts of the small preset's arms within +-25 %)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn.conv_ss2d import SS2DConfig
from jaxpapers.nn.raft_stereo import (
  ConvGRU,
  RAFTStereo,
  RAFTStereoConfig,
  avgpool2x,
  correlation_pyramid,
  lookup,
  resize_align_corners,
  sequence_loss,
  upsample_bilinear,
  upsample_convex,
)


def test_correlation_pyramid_and_lookup_match_numpy_loops():
  rng = np.random.default_rng(0)
  b, h, w, c, radius = 1, 2, 9, 3, 2
  f1, f2 = (rng.standard_normal((b, h, w, c)).astype(np.float32) for _ in range(2))
  disp = rng.uniform(-1.0, 6.0, (b, h, w)).astype(np.float32)
  pyramid = correlation_pyramid(jnp.asarray(f1), jnp.asarray(f2), 2)
  corr = np.einsum("bhwc,bhvc->bhwv", f1.astype(np.float64), f2) / np.sqrt(c)
  np.testing.assert_allclose(pyramid[0], corr, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pyramid[1], 0.5 * (corr[..., 0:8:2] + corr[..., 1:8:2]),
                             rtol=1e-5, atol=1e-6)
  got = np.asarray(lookup(pyramid, jnp.asarray(disp), radius))
  assert got.shape == (b, h, w, 2 * (2 * radius + 1))
  want = np.zeros_like(got, np.float64)
  for level, values in enumerate([corr, 0.5 * (corr[..., 0:8:2] + corr[..., 1:8:2])]):
    width = values.shape[-1]
    for i in range(h):
      for j in range(w):
        for k, o in enumerate(range(-radius, radius + 1)):
          pos = (j - disp[0, i, j]) / 2**level + o
          i0 = int(np.floor(pos))
          get = lambda q: values[0, i, j, q] if 0 <= q < width else 0.0
          want[0, i, j, level * (2 * radius + 1) + k] = ((1 - (pos - i0)) * get(i0)
                                                         + (pos - i0) * get(i0 + 1))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_upsampling_convex_uniform_mask_is_the_3x3_mean_and_bilinear_keeps_planes():
  rng = np.random.default_rng(1)
  disp = rng.standard_normal((1, 3, 4)).astype(np.float32)
  f = 4
  up = np.asarray(upsample_convex(jnp.asarray(disp), jnp.zeros((1, 3, 4, 9 * f * f)), f))
  padded = np.pad(disp.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
  mean = np.mean([padded[:, i:i + 3, j:j + 4] for i in range(3) for j in range(3)], axis=0)
  np.testing.assert_allclose(up, f * np.kron(mean, np.ones((f, f))), rtol=1e-5, atol=1e-6)
  # A one-hot mask on the centre neighbour is nearest-neighbour upsampling.
  onehot = np.full((1, 3, 4, 9, f, f), -1e4, np.float32)
  onehot[:, :, :, 4] = 0.0
  up = np.asarray(upsample_convex(jnp.asarray(disp), jnp.asarray(onehot.reshape(1, 3, 4, -1)), f))
  np.testing.assert_allclose(up, f * np.kron(disp, np.ones((f, f))), rtol=1e-6)
  np.testing.assert_allclose(upsample_bilinear(jnp.full((2, 3, 4), 2.5), f),
                             np.full((2, 12, 16), 10.0), rtol=1e-6)


def test_avgpool_and_aligned_resize_match_numpy():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((1, 5, 6, 2)).astype(np.float32)
  padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.array([[padded[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum((0, 1)) / 9 for j in range(3)]
                   for i in range(3)])[None]
  np.testing.assert_allclose(avgpool2x(jnp.asarray(x)), want, rtol=1e-5, atol=1e-6)
  got = np.asarray(resize_align_corners(jnp.asarray(x), 9, 11))
  ys, xs = np.linspace(0, 4, 9), np.linspace(0, 5, 11)  # corners aligned
  for c in range(2):
    rows = np.stack([np.interp(xs, np.arange(6), x[0, i, :, c]) for i in range(5)])
    want = np.stack([np.interp(ys, np.arange(5), rows[:, j]) for j in range(11)], axis=1)
    np.testing.assert_allclose(got[0, :, :, c], want, rtol=1e-5, atol=1e-6)


def test_sequence_loss_weights_are_raft_stereos():
  target = jnp.zeros((1, 2, 2))
  valid = jnp.array([[[1.0, 1.0], [0.0, 1.0]]])
  preds = jnp.stack([jnp.full((1, 2, 2), v) for v in (3.0, 2.0, 1.0)])
  g = 0.9 ** (15 / 2)
  np.testing.assert_allclose(sequence_loss(preds, target, valid), g**2 * 3 + g * 2 + 1, rtol=1e-6)
  np.testing.assert_allclose(sequence_loss(preds[:1], target, valid), 3.0, rtol=1e-6)


def test_conv_gru_parameter_count():
  gru = ConvGRU(6, 5, rngs=nnx.Rngs(0))
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(gru, nnx.Param)))
  assert count == 3 * (9 * (6 + 5) * 6 + 6)


TINY = RAFTStereoConfig(hidden=8, feature_dim=8, encoder_dims=(4, 8), motion_dims=(4, 4),
                        head_dim=8, ss2d=SS2DConfig(8, d_state=2, dt_rank=1))


def _count(config: RAFTStereoConfig, part: str | None = None) -> int:
  model = nnx.eval_shape(lambda: RAFTStereo(config, rngs=nnx.Rngs(0)))
  module = getattr(model, part) if part else model
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


# The ConvSS2D loop trains in the experiment's smoke run; here the ConvGRU with three levels.
@pytest.mark.parametrize("updater,upsample,levels", [("gru", "convex", 3)])
def test_the_loop_returns_one_full_resolution_prediction_per_iteration(updater, upsample, levels):
  cfg = dataclasses.replace(TINY, updater=updater, upsample=upsample, hidden_levels=levels)
  rng = np.random.default_rng(2)
  left, right = (jnp.asarray(rng.random((2, 16, 24, 1), np.float32)) for _ in range(2))
  # One program builds and runs the model (no eager init ops); the counts from its shapes.
  preds = np.asarray(jax.jit(lambda a, b: RAFTStereo(cfg, rngs=nnx.Rngs(0))(a, b, 2))(left, right))
  model = nnx.eval_shape(lambda: RAFTStereo(cfg, rngs=nnx.Rngs(0)))
  assert preds.shape == (2, 2, 16, 24) and np.isfinite(preds).all()
  assert np.abs(preds[1] - preds[0]).max() > 0  # each iteration updates the disparity
  if levels == 3:  # input widths: finest motion + level 1; level 1 pooled 0 + level 2; level 2
    h = cfg.hidden
    gru = lambda cin: 3 * (9 * (h + cin) * h + h)
    counts = [sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(m, nnx.Param)))
              for m in (model.updater, model.coarse[0], model.coarse[1])]
    assert counts == [gru(2 * h), gru(2 * h), gru(h)]


def test_small_preset_arms_have_matched_parameter_counts():
  small = RAFTStereoConfig(ss2d=SS2DConfig(48, d_state=8, dt_rank=3))
  gru, ss2d = (_count(dataclasses.replace(small, updater=u)) for u in ("gru", "ss2d"))
  assert 0.75 <= ss2d / gru <= 1.25, (ss2d, gru)
  # ConvSS2D's updater: 1x1 proj (96 -> 48) + SS2D (in 48 -> 96, dw 3x3, per-direction x_proj
  # 48 -> 3 + 16, dt_proj 3 -> 48, dt_bias, A_log 48 x 8, D, LayerNorm, out 48 -> 48).
  d, n, r = 48, 8, 3
  want = (96 * 48 + 48) + (48 * 96 + 9 * d + d + 4 * (d * (r + 2 * n) + r * d + d + d * n + d)
                           + 2 * d + d * 48)
  assert _count(dataclasses.replace(small, updater="ss2d"), "updater") == want


def test_config_rejects_unknown_updater():
  with pytest.raises(ValueError, match="updater"):
    RAFTStereoConfig(updater="lstm")
