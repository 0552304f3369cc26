"""Calibrate-Then-Act experiment: the smoke report's figures (spec 4.3), config validation."""

import json

import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.calibrate_then_act.run import EXPERIMENT, SPEC


def test_smoke_report_figures(smoke_report):
  run = smoke_report("calibrate_then_act")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"pandora_oracle_reward", "pandora_always_guess", "pandora_blind_dp",
          "pandora_blind_match", "qa_oracle_rule", "smoke_policy_learns"} <= set(claims)
  figures = json.loads((run.folder / "figures.json").read_text())
  pop = figures["population"]
  # the spec's CI Monte Carlo on 20,000 tasks: oracle 0.676 +- 0.01, prior-blind 0.504 +- 0.01
  assert pop["oracle"] == pytest.approx(0.676, abs=0.01)
  assert pop["blind"] == pytest.approx(0.504, abs=0.01)
  assert SPEC["oracle"][0] <= claims["pandora_oracle_reward"]["measured"] <= SPEC["oracle"][1]
  # the trained with-prior policy's figure is the claim's, and it beats the initial policy
  policy = figures["policies"]["True"]
  assert claims["smoke_policy_learns"]["measured"] == pytest.approx(
      policy["reward"] - figures["initial"]["reward"], abs=1e-6)
  assert policy["reward"] <= pop["oracle_value"] + 0.01  # nothing beats the oracle in expectation
  assert (run.folder / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="algorithm"):
    EXPERIMENT.config("smoke", ["algorithm=a2c"])
  with pytest.raises(ConfigError, match="batch_episodes"):
    EXPERIMENT.config("smoke", ["batch_episodes=2"])
  with pytest.raises(ConfigError, match="temperatures"):
    EXPERIMENT.config("smoke", ["temperatures=2,0"])
