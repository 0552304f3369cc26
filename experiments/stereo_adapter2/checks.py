"""The CI checks of the StereoAdapter-2 experiment (arXiv 2602.16915), as claims: the receptive
field of one update (ConvGRU's 2-pixel halo against ConvSS2D's whole image), the cross-scan
bookkeeping in the three scan modes, and the selective scan's three implementations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import kernels_pallas
from jaxpapers.core import report
from jaxpapers.nn.conv_ss2d import MODES, ConvSS2D, SS2DConfig, cross_merge, cross_scan
from jaxpapers.nn.raft_stereo import ConvGRU

SHAPE = (1, 16, 24, 32)  # batch, H, W, C_h (= C_x)
P0 = (3, 12)  # row 13 is 10 rows below it


def _delta(module, h, x) -> np.ndarray:
  """`max_c |f(h, x') - f(h, x)|` per pixel, x' = x perturbed at pixel P0; f is ConvSS2D's
  update term `tanh(SS2D(...))` (not `h +` it, whose float32 rounding at |h| ~ 1 would hide
  changes below 1e-7) or the ConvGRU's new state."""
  bumped = x.at[:, P0[0], P0[1], :].add(1.0)
  f = (lambda m, h, x: m.update(h, x)) if isinstance(module, ConvSS2D) else (
      lambda m, h, x: m(h, x))
  both = nnx.jit(lambda m, h, x, bumped: (f(m, h, bumped), f(m, h, x)))(module, h, x, bumped)
  return np.asarray(jnp.max(jnp.abs(both[0] - both[1]), axis=-1))[0]


def receptive_field() -> dict:
  """Per-pixel output change of one update after a change of the input at one pixel."""
  kh, kx = jax.random.split(jax.random.key(0))
  h, x = (jax.random.normal(k, SHAPE) for k in (kh, kx))
  _, height, width, c = SHAPE
  yy, xx = np.mgrid[:height, :width]
  cheb = np.maximum(np.abs(yy - P0[0]), np.abs(xx - P0[1]))
  gru = _delta(ConvGRU(c, c, rngs=nnx.Rngs(0)), h, x)
  out = {"gru_beyond_halo": float(gru[cheb > 2].max()), "gru_inside_halo": float(gru[cheb <= 2].min())}
  far = np.unravel_index(np.argmax(cheb), cheb.shape)
  for mode in ("cross2d", "unidi"):
    ss2d = ConvSS2D(c, c, SS2DConfig(c, d_state=8, mode=mode, scan="sequential"), rngs=nnx.Rngs(0))
    d = _delta(ss2d, h, x)
    if mode == "cross2d":
      out["ss2d_farthest"] = float(d[far])
      out["ss2d_same_column_10_rows"] = float(d[P0[0] + 10, P0[1]])
      out["ss2d_min_change"] = float(d.min())
    else:
      raster = yy * width + xx
      before = raster < P0[0] * width + P0[1] - (width + 1)  # before p0 minus the 3x3 halo
      out["unidi_before"] = float(d[before].max())
      out["unidi_after_min"] = float(d[raster >= P0[0] * width + P0[1]].min())
  return out


def bookkeeping() -> dict:
  """Max errors of the cross-scan identities in every mode (0 when exact)."""
  x = jax.random.normal(jax.random.key(1), (2, 5, 7, 3))
  index = jnp.arange(35.0).reshape(1, 5, 7, 1)
  out = {}
  for mode in MODES:
    seqs = cross_scan(index, mode)[0, :, :, 0]
    perm = float(max(np.abs(np.sort(np.asarray(s)) - np.arange(35)).max() for s in seqs))
    merged = float(jnp.max(jnp.abs(cross_merge(cross_scan(x, mode), 5, 7, mode) - 4 * x)))
    out[mode] = {"permutation_error": perm, "merge_error": merged}
  col = np.asarray(cross_scan(index, "cross2d")[0, 1, :, 0])
  out["column_major_error"] = float(np.abs(col - np.arange(35).reshape(5, 7).T.reshape(-1)).max())
  row_rev = np.asarray(cross_scan(index, "bidi")[0, 2, :, 0])
  out["bidi_reverse_error"] = float(np.abs(row_rev - np.arange(35)[::-1]).max())
  return out


def _scan_inputs(length=256, channels=16, n=8):
  ks = jax.random.split(jax.random.key(2), 6)
  u = jax.random.normal(ks[0], (1, length, channels))
  delta = jax.nn.softplus(jax.random.normal(ks[1], (1, length, channels)) - 1.0)
  a = -jnp.exp(0.5 * jax.random.normal(ks[2], (channels, n)))
  b, c = (jax.random.normal(k, (1, length, n)) for k in ks[3:5])
  return u, delta, a, b, c, jax.random.normal(ks[5], (channels,))


def scan_equivalence() -> dict:
  """Max relative errors of "associative" and "pallas" (GPU kernel, interpret mode) against
  "sequential" at L 256, 16 channels, N 8: outputs and gradients of every input."""
  args = _scan_inputs()

  def grads(implementation):
    def loss(*a):
      y = kernels_pallas.selective_scan(*a, implementation=implementation, backend=None)
      return jnp.sum(jnp.sin(y)), y
    return jax.jit(jax.grad(loss, argnums=tuple(range(6)), has_aux=True))(*args)

  ref_g, ref_y = grads("sequential")
  out = {}
  for impl in ("associative", "pallas"):
    g, y = grads(impl)
    out[impl] = {"forward": float(jnp.max(jnp.abs(y - ref_y))),
                 "gradients": max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                                  for a, b in zip(g, ref_g))}
  return out


def claims() -> tuple[list[report.Claim], dict]:
  rf, bk, sc = receptive_field(), bookkeeping(), scan_equivalence()
  result = [
      report.at_most("gru_zero_beyond_halo", "ConvGRU, one update: max output change beyond "
                     "Chebyshev distance 2 of the perturbed input pixel (exactly 0)",
                     rf["gru_beyond_halo"], 0.0),
      report.at_least("ss2d_reaches_far_pixel", "ConvSS2D (cross2d), one update: output change "
                      "at the pixel farthest from the perturbed one", rf["ss2d_farthest"], 1e-7),
      report.at_least("ss2d_reaches_same_column", "ConvSS2D (cross2d), one update: output change "
                      "10 rows away in the same column", rf["ss2d_same_column_10_rows"], 1e-7),
      report.at_most("unidi_causal", "ConvSS2D (unidi): max output change before the perturbed "
                     "pixel in raster order, minus the 3x3 halo (exactly 0)",
                     rf["unidi_before"], 0.0),
      report.at_most("scan_bookkeeping", "cross_merge(cross_scan(x)) - 4x and permutation "
                     "errors, all three modes, plus column-major and bidi orders (exactly 0)",
                     max([v for m in MODES for v in bk[m].values()]
                         + [bk["column_major_error"], bk["bidi_reverse_error"]]), 0.0),
  ]
  for impl in ("associative", "pallas"):
    result += [
        report.less_than(f"scan_{impl}_forward", f"selective scan, {impl} vs sequential "
                         "(L 256, D 16, N 8): max abs output error", sc[impl]["forward"], 1e-5),
        report.less_than(f"scan_{impl}_gradients", f"selective scan, {impl} (custom VJP for "
                         "pallas) vs autodiff of sequential: max relative gradient error",
                         sc[impl]["gradients"], 1e-4)]
  return result, {"receptive_field": rf, "bookkeeping": bk, "scan": sc}
