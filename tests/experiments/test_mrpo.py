"""MRPO experiment: smoke results (the spec's CI list), config checks, the loop's bookkeeping."""

import json

import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.mrpo import train
from jaxpapers.experiments.mrpo.config import SMALL
from jaxpapers.experiments.mrpo.run import EXPERIMENT


def test_smoke_report_covers_the_ci_checks(smoke_report):
  run = smoke_report("mrpo")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"advantages_constant_groups", "advantages_standardized", "grpo_loss_at_ratio_one",
          "grpo_gradient_sign", "grpo_clipping", "buffer_never_collapsed", "buffer_fixed_shapes",
          "transport_ratio_exactly_one", "transport_retokenized_clips", "M1_collapsed_mrpo",
          "M1_collapsed_plain", "M2_success_equal_updates", "M3_equal_rollout_budget", "finite_updates",
          "update_never_retraces", "alternation_round_robin"} <= set(claims)
  assert claims["transport_ratio_exactly_one"]["measured"] == 0
  m = json.loads((run.folder / "measurements.json").read_text())
  plain, mrpo = m["curves"]["plain"][0], m["curves"]["mrpo"][0]
  g, b = 8, 4  # smoke: G 8, B 4 -> plain GRPO consumes exactly B G rollouts per update
  assert [r["rollouts"] for r in plain[:3]] == [g * b, 2 * g * b, 3 * g * b]
  assert all(r["collapsed"] == 0 for r in mrpo)
  buf = m["buffers"]["mrpo"][0]
  assert buf["updates"] == 10 and buf["rollouts_consumed"] == mrpo[-1]["rollouts"]
  assert buf["rollouts_consumed"] % 16 == 0  # N = 16 rollouts per task offered
  assert m["alternation_devices"] == [0, 1, 0, 1]
  assert (run.folder / "success.png").read_bytes()[:4] == b"\x89PNG"


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="oversample"):
    EXPERIMENT.config("smoke", ["oversample=2"])
  with pytest.raises(ConfigError, match="clip_eps"):
    EXPERIMENT.config("smoke", ["clip_eps=1.5"])
  with pytest.raises(ConfigError, match="policy"):
    EXPERIMENT.config("smoke", ["policy=rnn"])


def test_small_preset_follows_the_spec():
  c = SMALL
  assert (c.tasks, c.length, c.vocab, c.group, c.groups_per_update, c.inner_steps) == (16, 4, 4, 8, 16, 2)
  assert (c.clip_eps, c.lr, c.updates, c.oversample, c.budget_rollouts, c.seeds) == (0.2, 3e-3, 60, 32, 40_000, 3)


def test_success_at_reads_the_last_record_within_the_limits():
  curve = [{"update": u, "rollouts": 100 * u, "success": u / 10} for u in range(1, 6)]
  assert train.success_at(curve, update=3) == (0.3, 3, 300)
  assert train.success_at(curve, rollouts=450) == (0.4, 4, 400)
  assert train.success_at(curve, rollouts=50) == (0.0, 0, 0)
