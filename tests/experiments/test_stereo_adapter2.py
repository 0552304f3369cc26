"""StereoAdapter-2 experiment (arXiv 2602.16915): the smoke run's operator checks (exact zeros of
the ConvGRU halo and the unidi causality, scan bookkeeping, the three scan paths) and training
claim, the evaluation's EPE / D1 against numpy on a constant-prediction model, the comparison
claims on hand-made figures, bad overrides as one-line errors, and the GPU checks' dry run
(slow)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers import cli
from jaxpapers.data.stereo_pairs import stereo_pairs
from jaxpapers.experiments.stereo_adapter2 import gpu_bench
from jaxpapers.experiments.stereo_adapter2 import model as model_lib
from jaxpapers.experiments.stereo_adapter2 import run as run_lib
from jaxpapers.experiments.stereo_adapter2.config import SMOKE


def test_smoke_report_holds_the_operator_checks_and_the_training_claim(smoke_report):
  run = smoke_report("stereo_adapter2")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert set(claims) == {
      "gru_zero_beyond_halo", "ss2d_reaches_far_pixel", "ss2d_reaches_same_column",
      "unidi_causal", "scan_bookkeeping", "scan_associative_forward",
      "scan_associative_gradients", "scan_pallas_forward", "scan_pallas_gradients",
      "ss2d_training_reduces_epe"}
  # Exact zeros: outside the 2-pixel halo, before the perturbed pixel in raster order, and the
  # permutation / merge identities.
  for key in ("gru_zero_beyond_halo", "unidi_causal", "scan_bookkeeping"):
    assert claims[key]["measured"] == 0.0, claims[key]
  measured = json.loads((run.folder / "measurements.json").read_text())
  rf = measured["checks"]["receptive_field"]
  assert rf["gru_inside_halo"] > 0 and rf["ss2d_min_change"] > 0  # every pixel moves
  assert rf["unidi_after_min"] > 0
  for impl in ("associative", "pallas"):
    assert measured["checks"]["scan"][impl]["forward"] < 1e-5
  assert set(measured["params"]) == {"gru", "ss2d"}  # the small preset's ratio: test_raft_stereo
  assert claims["ss2d_training_reduces_epe"]["measured"] < 1.0


class _Constant(nnx.Module):
  """Predicts `c + i` at iteration i (0-based) everywhere."""

  def __init__(self, c: float):
    self.c = nnx.Param(jnp.float32(c))

  def __call__(self, left, right, iters):  # pylint: disable=unused-argument
    steps = jnp.arange(iters, dtype=jnp.float32)[:, None, None, None]
    return jnp.broadcast_to(self.c[...] + steps, (iters, *left.shape[:3]))


def test_evaluate_matches_numpy_on_a_constant_prediction():
  got = model_lib.evaluate(SMOKE, _Constant(4.0), batch_size=3)  # 4 pairs: batches of 3 and 1
  data = stereo_pairs(SMOKE.eval_pairs, SMOKE.eval_seed, SMOKE.data)
  valid, flat, disp = data["valid"] > 0, data["textureless"] > 0, data["disparity"]
  for i in SMOKE.eval_iters:
    err = np.abs(4.0 + (i - 1) - disp.astype(np.float64))
    np.testing.assert_allclose(got["epe"][str(i)], err[valid].mean(), rtol=1e-5)
    np.testing.assert_allclose(got["epe_textureless"][str(i)], err[valid & flat].mean(), rtol=1e-5)
    bad = (err > 3.0) & (err > 0.05 * disp)
    np.testing.assert_allclose(got["d1"][str(i)], bad[valid].mean(), rtol=1e-5)
  assert got["valid_pixels"] == valid.sum() and got["textureless_pixels"] == (valid & flat).sum()


def test_comparison_claims_on_hand_made_figures():
  metrics = {"gru": {"epe": {"6": 1.00}, "epe_textureless": {"2": 4.0, "8": 3.0}},
             "ss2d": {"epe": {"6": 1.04}, "epe_textureless": {"2": 3.0, "8": 2.9}}}
  params = {"gru": {"total": 100, "updater": 40}, "ss2d": {"total": 120, "updater": 60}}
  claims = {c.id: c for c in run_lib.comparison_claims(SMOKE, metrics, params)}
  expect = {"param_ratio": (1.2, True), "textureless_epe_2_iters": (0.75, True),
            "overall_epe_6_iters": (0.04, True), "gru_textureless_gain_2_to_8": (0.25, True)}
  for key, (value, passed) in expect.items():
    np.testing.assert_allclose(claims[key].measured, value, rtol=1e-9)
    assert claims[key].passed is passed, key
  metrics["ss2d"]["epe_textureless"]["2"] = 3.3  # 0.825 of ConvGRU's: fails
  claims = {c.id: c for c in run_lib.comparison_claims(SMOKE, metrics, params)}
  assert claims["textureless_epe_2_iters"].passed is False


@pytest.mark.parametrize("override,named", [("model.ss2d.mode=diag", "mode"),
                                             ("data.height=30", "data.height"),
                                             ("model.ss2d.d_model=8", "model.ss2d.d_model")])
def test_bad_overrides_are_one_line_and_exit_2(override, named, tmp_path, capsys):
  code = cli.main(["reproduce", "stereo_adapter2", "--preset", "smoke", "--out", str(tmp_path),
                   override])
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1 and named in err, err
  assert not any(tmp_path.iterdir())


@pytest.mark.slow  # interpret-mode compiles of the kernel and of a tiny ConvSS2D update
def test_gpu_checks_dry_run_match_references_and_lower_for_cuda():
  kernel = gpu_bench.check_kernel(dry_run=True, budget_s=60)
  assert kernel["interpret"] is True
  case = kernel["cases"]["scan_fp32"]
  assert {"out", "du", "ddelta", "dA", "dB", "dC", "dD"} == set(case["max_rel_error"])
  assert case["worst"] <= gpu_bench.TOL_FP32
  assert all(t["passed"] is True for t in kernel["targets"].values()), kernel["targets"]
  assert all(v.get("kernel_calls") == 2 for v in kernel["cuda_lowering"].values())
  out = gpu_bench.check_bench(dry_run=True, budget_s=60)
  rows = {r["updater"]: r for r in out["record"]["results"]["rows"]}
  assert set(rows) == {"ss2d_sequential", "ss2d_associative", "ss2d_pallas", "gru"}
  assert all("median_s" in r["fwd"] and "median_s" in r["fwd_bwd"] for r in rows.values())
  assert "targets" not in out and out["dry_run_targets"]
