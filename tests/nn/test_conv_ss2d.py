"""ConvSS2D (StereoAdapter-2, arXiv 2602.16915; VMamba's SS2D): the cross-scan orders against
hand-built index lists, the merge as the scan's adjoint, the whole block against an independent
float64 numpy loop in all three modes, the three selective-scan paths inside the block, Mamba's
initialisation, and the config's validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn.conv_ss2d import (
  MODES,
  ConvSS2D,
  SS2DConfig,
  cross_merge,
  cross_scan,
  flat_uniform,
  torch_default,
)

H, W, C, N = 3, 4, 4, 2


def _normal(seed: int, *shapes) -> list[jax.Array]:
  """Standard normal arrays drawn with numpy (jax's N-d draws each compile for ~1 CPU-s)."""
  rng = np.random.default_rng(seed)
  return [jnp.asarray(rng.standard_normal(shape, np.float32)) for shape in shapes]


def _orders(mode: str) -> list[np.ndarray]:
  """Pixel indices (y W + x) visited by each of the four directions, by hand."""
  row = np.array([y * W + x for y in range(H) for x in range(W)])
  col = np.array([y * W + x for x in range(W) for y in range(H)])
  return {"cross2d": [row, col, row[::-1], col[::-1]],
          "bidi": [row, row, row[::-1], row[::-1]],
          "unidi": [row] * 4}[mode]


@pytest.mark.parametrize("mode", MODES)
def test_cross_scan_visits_the_hand_built_orders_and_merge_is_its_adjoint(mode):
  index = jnp.arange(float(H * W)).reshape(1, H, W, 1)
  seqs = np.asarray(cross_scan(index, mode))[0, :, :, 0]
  for k, order in enumerate(_orders(mode)):
    np.testing.assert_array_equal(seqs[k], order)
  x, y = _normal(0, (2, H, W, 3), (2, 4, H * W, 3))
  # <scan(x), y> == <x, merge(y)>, and merge(scan(x)) == 4 x.
  np.testing.assert_allclose(jnp.vdot(cross_scan(x, mode), y),
                             jnp.vdot(x, cross_merge(y, H, W, mode)), rtol=1e-5)
  np.testing.assert_array_equal(cross_merge(cross_scan(x, mode), H, W, mode), 4 * x)


def _np(a) -> np.ndarray:
  return np.asarray(a[...] if isinstance(a, nnx.Variable) else a, np.float64)


def _silu(x):
  return x / (1 + np.exp(-x))


def numpy_conv_ss2d(module: ConvSS2D, h: np.ndarray, x: np.ndarray, mode: str) -> np.ndarray:
  """An independent float64 ConvSS2D (spec 1.2): loops over pixels, directions and time."""
  m = module.ss2d
  hx = np.concatenate([h, x], -1)[0] @ _np(module.proj.kernel) + _np(module.proj.bias)
  xz = hx @ _np(m.in_proj.kernel)
  d = xz.shape[-1] // 2
  xi, z = xz[..., :d], xz[..., d:]
  k, b = _np(m.conv.kernel), _np(m.conv.bias)  # [3, 3, 1, d]
  pad = np.pad(xi, ((1, 1), (1, 1), (0, 0)))
  conv = np.zeros_like(xi)
  for y in range(H):
    for xx in range(W):
      conv[y, xx] = np.einsum("ijc,ijc->c", pad[y:y + 3, xx:xx + 3], k[:, :, 0]) + b
  flat = _silu(conv).reshape(H * W, d)
  out = np.zeros_like(flat)
  r = m.config.rank
  for kk, order in enumerate(_orders(mode)):
    u = flat[order]
    proj = u @ _np(m.x_proj)[kk]
    dt_low, bb, cc = proj[:, :r], proj[:, r:r + N], proj[:, r + N:]
    z_dt = dt_low @ _np(m.dt_proj)[kk] + _np(m.dt_bias)[kk]
    delta = np.log1p(np.exp(z_dt))
    a = -np.exp(_np(m.A_log)[kk])
    s = np.zeros((d, N))
    for t in range(len(order)):
      s = np.exp(delta[t][:, None] * a) * s + (delta[t] * u[t])[:, None] * bb[t]
      out[order[t]] += s @ cc[t] + _np(m.Ds)[kk] * u[t]
  mean, var = out.mean(-1, keepdims=True), out.var(-1, keepdims=True)
  normed = (out - mean) / np.sqrt(var + m.out_norm.epsilon)
  normed = normed * _np(m.out_norm.scale) + _np(m.out_norm.bias)
  y = (normed * _silu(z.reshape(H * W, d))) @ _np(m.out_proj.kernel)
  return h[0] + np.tanh(y.reshape(H, W, C))


def _module(mode: str, scan: str = "sequential") -> ConvSS2D:
  module = ConvSS2D(C, 3, SS2DConfig(C, d_state=N, dt_rank=1, mode=mode, scan=scan),
                    rngs=nnx.Rngs(0))
  m = module.ss2d
  da, ds, db = _normal(1, m.A_log.shape, m.Ds.shape, m.dt_bias.shape)
  # Distinct per-direction A, D and step sizes, so a direction paired with the wrong
  # parameters shows.
  m.A_log[...] = m.A_log[...] + 0.3 * da
  m.Ds[...] = ds
  m.dt_bias[...] = m.dt_bias[...] + 2.0 + db
  return module


@pytest.fixture(scope="module")
def inputs():
  return _normal(2, (1, H, W, C), (1, H, W, 3))


# cross2d (four distinct orders) and unidi; bidi differs only in cross_scan, tested above.
@pytest.mark.parametrize("mode", ["cross2d", "unidi"])
def test_conv_ss2d_matches_a_float64_numpy_loop(mode, inputs):
  h, x = inputs
  module = _module(mode)
  got = np.asarray(nnx.jit(lambda m, h, x: m(h, x))(module, h, x))[0]
  want = numpy_conv_ss2d(module, np.asarray(h, np.float64), np.asarray(x, np.float64), mode)
  assert np.abs(want - np.asarray(h)[0]).max() > 1e-2  # the update is not negligible
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.slow  # three compiles of the block's gradients, one through the Pallas interpreter
def test_the_three_scan_paths_give_the_same_block_output_and_gradients(inputs):
  h, x = inputs
  results = {}
  for scan in ("sequential", "associative", "pallas"):
    graphdef, params = nnx.split(_module("cross2d", scan), nnx.Param)  # the same parameters

    @jax.jit
    def value_and_grads(params, h, graphdef=graphdef):
      loss = lambda p, h: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(h, x)))
      return jax.value_and_grad(loss, argnums=(0, 1))(params, h)

    results[scan] = value_and_grads(params, h)
  ref_v, (ref_gp, ref_gh) = results["sequential"]
  assert float(jnp.abs(ref_gp["ss2d"]["A_log"][...]).max()) > 0
  for scan in ("associative", "pallas"):
    v, (gp, gh) = results[scan]
    np.testing.assert_allclose(v, ref_v, rtol=1e-5)
    np.testing.assert_allclose(gh, ref_gh, atol=1e-5)
    for a, b in zip(jax.tree.leaves(gp), jax.tree.leaves(ref_gp)):
      np.testing.assert_allclose(a, b, atol=1e-4 * max(1.0, float(jnp.abs(b).max())))


def test_initialisation_is_mambas():
  cfg = SS2DConfig(16, d_state=8)
  m = nnx.jit(lambda: ConvSS2D(16, 4, cfg, rngs=nnx.Rngs(3)))().ss2d  # one program, no eager ops
  assert cfg.rank == 1 and cfg.d_inner == 16  # ceil(16 / 16), ssm_ratio 1
  np.testing.assert_allclose(m.A_log[...], np.broadcast_to(np.log(np.arange(1, 9)), (4, 16, 8)),
                             rtol=1e-6)
  np.testing.assert_array_equal(m.Ds[...], np.ones((4, 16)))
  dt = np.log1p(np.exp(np.asarray(m.dt_bias[...], np.float64)))  # softplus(b_dt) = dt0
  assert dt.shape == (4, 16) and dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
  assert np.abs(m.dt_proj[...]).max() <= cfg.rank ** -0.5
  assert m.x_proj.shape == (4, 16, 1 + 2 * 8)


def test_config_rejects_bad_values_naming_the_field():
  with pytest.raises(ValueError, match="mode"):
    SS2DConfig(8, mode="diag")
  with pytest.raises(ValueError, match="scan"):
    SS2DConfig(8, scan="fft")
  with pytest.raises(ValueError, match="d_state"):
    SS2DConfig(8, d_state=0)


def test_flat_draws_equal_jaxs_nd_draws_bit_for_bit():
  # The cheap-to-compile flat draws give the same parameters as the N-d initializers they replace.
  key = jax.random.key(7)
  shape = (3, 3, 2, 5)
  want = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")(key, shape)
  np.testing.assert_array_equal(torch_default(key, shape), want)
  np.testing.assert_array_equal(flat_uniform(key, (4, 3, 6), -0.5, 0.25),
                                jax.random.uniform(key, (4, 3, 6), minval=-0.5, maxval=0.25))
