"""FRAPPE experiment: the smoke preset's CI checks (spec 4.6 of our protocol), config checks."""

import json
import math

import numpy as np
import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.frappe import data
from jaxpapers.experiments.frappe.run import EXPERIMENT


def test_smoke_report_holds_every_ci_check(smoke_report):
  """The registry-parametrized smoke test checks that every claim passed; here, the values."""
  run = smoke_report("frappe")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert claims["identity_at_post_start"]["measured"] <= 1e-5
  assert claims["stop_gradient_targets"]["measured"] == 0.0
  assert claims["backbone_frozen"]["measured"] == 0.0
  assert claims["action_free_no_action_grad"]["measured"] == 0.0
  assert claims["action_free_align_grad"]["measured"] > 0.0
  assert claims["balance_loss_uniform"]["measured"] == pytest.approx(math.log(3) ** 2, abs=1e-5)
  assert claims["mid_loss_decreases"]["measured"] < 1 and claims["post_loss_decreases"]["measured"] < 1
  assert (run.folder / "frappe.png").read_bytes()[:4] == b"\x89PNG"
  summary = json.loads((run.folder / "R2_post" / "summary.json").read_text())
  assert summary["step"] == 10


def test_fourier_features_and_config_checks():
  pos = np.array([[0.25, 0.5, 0.0, 1.0]], np.float32)
  f = np.asarray(data.fourier(pos, 16))  # 4 coords x 2 frequencies x (sin, cos)
  # coordinate 0 at frequency pi: sin(pi / 4), cos(pi / 4); frequency 2 pi: sin(pi / 2).
  np.testing.assert_allclose(f.reshape(4, 2, 2)[0], [[np.sin(np.pi / 4), 1.0],
                                                      [np.cos(np.pi / 4), 0.0]], atol=1e-6)
  with pytest.raises(ConfigError, match="model.target_dim"):
    EXPERIMENT.config("smoke", ["model.target_dim=30"])
  with pytest.raises(ConfigError, match="replan"):
    EXPERIMENT.config("smoke", ["replan=7"])
  with pytest.raises(ConfigError, match="ddim_steps"):
    EXPERIMENT.config("small", ["ddim_steps=0"])
  assert EXPERIMENT.config("small", ["align_weight=0.1"]).align_weight == 0.1
  with pytest.raises(ConfigError, match="prng_impl"):
    EXPERIMENT.config("smoke", ["prng_impl=philox9"])
  # The smoke-only compile savings never reach the measured presets.
  for preset in ("small", "paper"):
    cfg = EXPERIMENT.config(preset, [])
    assert cfg.prng_impl == "threefry2x32" and not cfg.data.quick_compile and not cfg.checks
