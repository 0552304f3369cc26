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
from kernels_pallas.selective_scan import reference as selective_scan_reference

SHAPE = (1, 16, 24, 32)  # batch, H, W, C_h (= C_x)
P0 = (3, 12)  # row 13 is 10 rows below it


@jax.jit
def _deltas(h, x) -> dict[str, jax.Array]:
  """`max_c |f(h, x') - f(h, x)|` per pixel, x' = x perturbed at pixel P0, for the ConvGRU and
  ConvSS2D in modes cross2d and unidi; f is ConvSS2D's update term `tanh(SS2D(...))` (not `h +`
  it, whose float32 rounding at |h| ~ 1 would hide changes below 1e-7) or the ConvGRU's new
  state. One program: the three modules are built inside it (one compile, no eager init ops)."""
  c = SHAPE[-1]
  bumped = x.at[:, P0[0], P0[1], :].add(1.0)
  change = lambda f: jnp.max(jnp.abs(f(bumped) - f(x)), axis=-1)[0]
  gru = ConvGRU(c, c, rngs=nnx.Rngs(0))
  out = {"gru": change(lambda x: gru(h, x))}
  for mode in ("cross2d", "unidi"):
    ss2d = ConvSS2D(c, c, SS2DConfig(c, d_state=8, mode=mode, scan="sequential"), rngs=nnx.Rngs(0))
    out[mode] = change(lambda x, m=ss2d: m.update(h, x))
  return out


def receptive_field() -> dict:
  """Per-pixel output change of one update after a change of the input at one pixel."""
  rng = np.random.default_rng(0)
  h, x = (jnp.asarray(rng.standard_normal(SHAPE, np.float32)) for _ in range(2))
  _, height, width, _ = SHAPE
  yy, xx = np.mgrid[:height, :width]
  cheb = np.maximum(np.abs(yy - P0[0]), np.abs(xx - P0[1]))
  deltas = jax.tree.map(np.asarray, _deltas(h, x))
  gru = deltas["gru"]
  out = {"gru_beyond_halo": float(gru[cheb > 2].max()), "gru_inside_halo": float(gru[cheb <= 2].min())}
  far = np.unravel_index(np.argmax(cheb), cheb.shape)
  d = deltas["cross2d"]
  out["ss2d_farthest"] = float(d[far])
  out["ss2d_same_column_10_rows"] = float(d[P0[0] + 10, P0[1]])
  out["ss2d_min_change"] = float(d.min())
  d = deltas["unidi"]
  raster = yy * width + xx
  before = raster < P0[0] * width + P0[1] - (width + 1)  # before p0 minus the 3x3 halo
  out["unidi_before"] = float(d[before].max())
  out["unidi_after_min"] = float(d[raster >= P0[0] * width + P0[1]].min())
  return out


def bookkeeping() -> dict:
  """Max errors of the cross-scan identities in every mode (0 when exact)."""
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 5, 7, 3), np.float32))
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


# Batch 2, L 20 in chunks of 8 (padded to 24: three chunks, the last one partly padding), 40
# channels (two GPU channel blocks of 32, the second partly padding), N 6 (padded to 8).
SCAN_SHAPE, SCAN_CHUNK = (2, 20, 40, 6), 8


def _scan_inputs():
  """Random scan inputs at SCAN_SHAPE (numpy: no jax random programs to compile)."""
  return selective_scan_reference.random_inputs(*SCAN_SHAPE, seed=2)


def scan_equivalence() -> dict:
  """Max relative errors of "associative" and "pallas" (GPU kernel, interpret mode) against
  "sequential" at `SCAN_SHAPE` (batch, L, channels, N): outputs and gradients of every input."""
  args = _scan_inputs()

  def grads(implementation):
    def loss(*a):
      y = kernels_pallas.selective_scan(*a, implementation=implementation, backend=None,
                                        chunk=SCAN_CHUNK)
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
                         f"(batch, L, D, N = {SCAN_SHAPE}, chunks of {SCAN_CHUNK}): max abs output error", sc[impl]["forward"], 1e-5),
        report.less_than(f"scan_{impl}_gradients", f"selective scan, {impl} (custom VJP for "
                         "pallas) vs autodiff of sequential: max relative gradient error",
                         sc[impl]["gradients"], 1e-4)]
  return result, {"receptive_field": rf, "bookkeeping": bk, "scan": sc}
