"""Reference-guided DPO experiment: smoke results (the spec's CI list), config checks, labels."""

import json

import numpy as np
import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.ref_guided_dpo.config import SMALL
from jaxpapers.experiments.ref_guided_dpo.run import EXPERIMENT


def test_smoke_report_covers_the_ci_checks(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks every claim passed."""
  run = smoke_report("ref_guided_dpo")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"dpo_matches_numpy", "dpo_log2_at_reference", "dpo_gradient_direction", "dpo_reference_free",
          "pairwise_hand_made", "pairwise_swap_symmetric", "pairwise_all_tie_invalid", "pairwise_fallbacks",
          "pipeline_loss_decreases", "pipeline_margin_increases", "C1_judge_accuracy_gain",
          "C2_ref_dpo_over_sft", "C3_ref_over_ref_free", "C4_within_oracle"} <= set(claims)
  assert claims["dpo_matches_numpy"]["measured"] <= 1e-6
  m = json.loads((run.folder / "measurements.json").read_text())[0]
  # C2 is the final reference-label quality minus SFT's, from the same curves
  assert claims["C2_ref_dpo_over_sft"]["measured"] == pytest.approx(
      m["curves"]["reference"][-1] - m["sft_quality"], abs=1e-9)
  assert all(c[0] == m["sft_quality"] for c in m["curves"].values())  # every label source starts at SFT
  assert m["label_accuracy"]["oracle"][0] == 1.0  # the oracle's chosen is always truly better
  assert (run.folder / "self_improvement.png").read_bytes()[:4] == b"\x89PNG"


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="labels"):
    EXPERIMENT.config("smoke", ["labels=gpt4"])
  with pytest.raises(ConfigError, match="k="):
    EXPERIMENT.config("smoke", ["k=1"])
  with pytest.raises(ConfigError, match="spurious_token"):
    EXPERIMENT.config("smoke", ["spurious_token=6"])
  with pytest.raises(ConfigError, match="judge.free_noise"):
    EXPERIMENT.config("smoke", ["judge.free_noise=-1"])


def test_small_preset_follows_the_protocol():
  assert (SMALL.prompts, SMALL.length, SMALL.vocab, SMALL.k, SMALL.rounds, SMALL.seeds) == (64, 8, 6, 5, 5, 3)
  assert (SMALL.sft.steps, SMALL.dpo.steps, SMALL.beta, SMALL.corruption) == (20, 20, 0.5, 0.25)
  assert EXPERIMENT.stage_names == ("sft", "dpo")


def test_round_labels_are_the_aggregation_of_all_ordered_pairs():
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from jaxpapers import rl  # pylint: disable=g-import-not-at-top
  from jaxpapers.experiments.ref_guided_dpo import model  # pylint: disable=g-import-not-at-top
  config = EXPERIMENT.config("smoke", ["prompts=4"])
  state = nnx.state(model.make_policy(config, nnx.Rngs(0)))
  r = model.round_arrays(config, state, "oracle")
  pairs = rl.ordered_pairs(config.k)
  for p in range(4):
    q = r["quality"][p]
    score = np.zeros(config.k)
    for (i, j), prob in zip(pairs, r["probs"][p]):
      assert prob == (1.0 if q[i] > q[j] else 0.0 if q[i] < q[j] else 0.5)
      score[i] += prob
      score[j] += 1 - prob
    if r["valid"][p]:
      assert r["quality_chosen"][p] == q.max() and r["quality_rejected"][p] == q.min()
    else:
      assert np.ptp(q) == 0
