"""CUWM experiment: the smoke results (the spec's CI list and the search bookkeeping), config checks."""

import json

import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.cuwm.run import EXPERIMENT


def test_smoke_report_covers_the_ci_checks_and_the_search(smoke_report):
  run = smoke_report("cuwm")
  claims = {c["id"]: c for c in run.record["claims"]}
  ci = ("ci_search_argmax", "ci_coverage_bookkeeping", "ci_delta_render_composition", "ci_grpo_finite")
  for name in ci:
    assert claims[name]["passed"] and claims[name]["measured"] == 0, claims[name]
  assert {"C1_gap_recovered", "C2_untrained_change", "C3_true_over_trained", "C4_grpo_reward_gain",
          "C5_grpo_in_band", "top1_accuracy", "coverage", "delta_f1_trained", "search_trained"} <= set(claims)
  assert "search_direct" not in claims  # smoke: no caveat sizes, no direct pixel model
  m = json.loads((run.folder / "measurements.json").read_text())[0]
  s = m["search"]
  # the true simulator picks the logged action whenever it is a candidate (unique best click)
  assert s["true"]["accuracy"] == s["true"]["coverage"] and s["true"]["covered_accuracy"] == 1.0
  # an untrained two-stage model imagines "no change" for every click: the proposer's top-1
  assert s["untrained"]["accuracy"] == s["untrained"]["top1"]
  # every search sees the same episodes and proposals
  assert len({round(v["coverage"], 12) for v in s.values()}) == 1
  assert len({round(v["top1"], 12) for v in s.values()}) == 1
  assert 0.0 < s["true"]["top1"] < s["true"]["coverage"] < 1.0
  assert len(m["grpo"]["curve"]["reward"]) == 5  # the spec's CI check: 5 GRPO updates
  assert all(isinstance(v, float) for v in m["fidelity"]["128"]["losses"].values())
  assert (run.folder / "search_and_grpo.png").read_bytes()[:4] == b"\x89PNG"


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="widgets"):
    EXPERIMENT.config("smoke", ["widgets=7"])
  with pytest.raises(ConfigError, match="band_low"):
    EXPERIMENT.config("smoke", ["band_low=1.5"])
  with pytest.raises(ConfigError, match="grpo_group"):
    EXPERIMENT.config("smoke", ["grpo_group=1"])
