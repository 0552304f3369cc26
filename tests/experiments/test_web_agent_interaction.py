"""Web-agent intervention experiment: smoke results (the spec's CI list), data, predictor, loss."""

import json

import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.errors import ConfigError
from jaxpapers.evals import intervention, web_users
from jaxpapers.experiments.web_agent_interaction import model
from jaxpapers.experiments.web_agent_interaction.config import SMALL
from jaxpapers.experiments.web_agent_interaction.run import EXPERIMENT

CI_CLAIMS = {"pts_zero_for_no_intervention", "pts_one_for_perfect", "pts_added_fp_never_raises",
             "pts_farther_fp_costs_more", "pts_alpha0_is_hit_recall", "pts_hand_computed",
             "f1_accuracy_hand_computed", "f1_accuracy_match_sklearn", "kmeans_separated_blobs"}


def test_smoke_report_covers_the_ci_checks(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks every claim passed."""
  run = smoke_report("web_agent_interaction")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert CI_CLAIMS | {"C1_style_discovery_ari", "C2_never_intervene_accuracy", "C2_never_intervene_f1_pts_zero",
                      "C3_f1_over_always_intervene", "C3_pts_positive_alpha_0.1", "C3_pts_positive_alpha_0.5",
                      "C3_pts_positive_alpha_1", "C4_style_conditioning_non_inferior",
                      "pipeline_loss_decreases_general", "pipeline_loss_decreases_style"} <= set(claims)
  assert all(claims[i]["measured"] == 0 for i in CI_CLAIMS - {"kmeans_separated_blobs"})
  m = json.loads((run.folder / "measurements.json").read_text())[0]
  rate = m["test_events"] / m["test_steps"]
  # the baselines, analytically: never-intervene is right on every non-event step; always-
  # intervene has precision `rate` and recall 1, so F1 = 2 rate / (1 + rate)
  assert claims["C2_never_intervene_accuracy"]["measured"] == pytest.approx(1 - rate, abs=1e-12)
  assert m["scores"]["always"]["f1_intervene"] == pytest.approx(2 * rate / (1 + rate), abs=1e-12)
  assert m["scores"]["always"]["accuracy"] == pytest.approx(rate, abs=1e-12)
  assert m["scores"]["never"]["f1_continue"] == pytest.approx(2 * (1 - rate) / (2 - rate), abs=1e-12)
  assert claims["C3_f1_over_always_intervene"]["measured"] == pytest.approx(
      m["scores"]["general"]["f1_intervene"] - m["scores"]["always"]["f1_intervene"], abs=1e-12)
  assert (run.folder / "intervention.png").read_bytes()[:4] == b"\x89PNG"


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="predictor"):
    EXPERIMENT.config("smoke", ["predictor=lstm"])
  with pytest.raises(ConfigError, match="num_users"):
    EXPERIMENT.config("smoke", ["num_users=6"])
  with pytest.raises(ConfigError, match="alphas"):
    EXPERIMENT.config("smoke", ["alphas=0.5,-1"])
  with pytest.raises(ConfigError, match="max_steps"):
    EXPERIMENT.config("smoke", ["max_steps=4"])


def test_small_preset_follows_the_protocol():
  assert (SMALL.num_users, SMALL.trajectories_per_user, SMALL.min_steps, SMALL.max_steps, SMALL.seeds) == (
      40, 20, 8, 15, 5)
  assert SMALL.alphas == (0.1, 0.5, 1.0) and SMALL.styles == 4
  assert EXPERIMENT.stage_names == ("train",)


@pytest.fixture(scope="module")
def tiny():
  config = EXPERIMENT.config("smoke", ["num_users=8", "trajectories_per_user=5"])
  return config, model.split_of(config)


def test_split_and_padding_follow_the_corpus(tiny):
  config, split = tiny
  c = split.corpus
  n_traj = c.trajectory.max() + 1
  assert split.test.sum() == round(config.test_fraction * n_traj)
  # styles come from the training trajectories alone
  np.testing.assert_array_equal(split.features, web_users.style_features(c.select(~split.test[c.trajectory])))
  for test in (False, True):
    data = model.padded(config, split, test)
    rows = split.rows(test)
    assert data["valid"].sum() == rows.sum() and data["x"].shape[1:] == (config.max_steps, model.NUM_FEATURES)
    np.testing.assert_array_equal(np.concatenate(model.labels_of(data)), c.label[rows])
    np.testing.assert_array_equal(data["x"][data["valid"] > 0], c.features[rows])
    assert np.all(data["label"][data["valid"] == 0] == 0)
    firsts = np.r_[0, np.cumsum(data["length"])[:-1]]
    np.testing.assert_array_equal(data["style"], split.styles[c.user[rows][firsts]])


def _numpy_gru(state, x):
  """h' = (1 - z) n + z h; r, z = sigmoid(x W_i + b + h W_h); n = tanh(x W_in + b_n + r (h W_hn))."""
  wi, bi, wh = (np.asarray(state[k]) for k in ("wi", "bi", "wh"))
  h = np.zeros((x.shape[0], wh.shape[0]))
  out = []
  for t in range(x.shape[1]):
    xi, hh = x[:, t] @ wi + bi, h @ wh
    (xr, xz, xn), (hr, hz, hn) = np.split(xi, 3, -1), np.split(hh, 3, -1)
    r, z = 1 / (1 + np.exp(-(xr + hr))), 1 / (1 + np.exp(-(xz + hz)))
    h = (1 - z) * np.tanh(xn + r * hn) + z * h
    out.append(h)
  return np.stack(out, 1)


def test_gru_predictor_matches_numpy_and_is_causal():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 6, model.NUM_FEATURES)).astype(np.float32)
  style = np.array([0, 2, 1], np.int32)
  m = model.InterventionPredictor(model.NUM_FEATURES, 5, kind="gru", num_styles=3, style_dim=2, rngs=nnx.Rngs(0))
  inputs = np.concatenate([x, np.repeat(np.asarray(m.style.embedding[...])[style][:, None], 6, 1)], -1)
  h = _numpy_gru({"wi": m.cell.dense_i.kernel[...], "bi": m.cell.dense_i.bias[...],
                  "wh": m.cell.dense_h.kernel[...]}, inputs.astype(np.float64))
  want = h @ np.asarray(m.head.kernel[...])[:, 0] + np.asarray(m.head.bias[...])[0]
  got = np.asarray(m(x, style))
  np.testing.assert_allclose(got, want, atol=1e-5)
  later = x.copy()
  later[:, 4] += 1.0  # step 4 changes: logits of steps 0-3 do not
  np.testing.assert_array_equal(np.asarray(m(later, style))[:, :4], got[:, :4])
  assert np.all(np.abs(np.asarray(m(later, style))[:, 4:] - got[:, 4:]) > 0)
  mlp = model.InterventionPredictor(model.NUM_FEATURES, 5, kind="mlp", rngs=nnx.Rngs(1))
  base, moved = np.asarray(mlp(x)), np.asarray(mlp(later))
  np.testing.assert_array_equal(np.delete(moved, 4, 1), np.delete(base, 4, 1))  # each step alone


def test_weighted_bce_and_balanced_weight():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(4, 5)).astype(np.float32)
  labels = (rng.random((4, 5)) < 0.3).astype(np.int32)
  weights = (rng.random((4, 5)) < 0.8).astype(np.float32)
  z = logits.astype(np.float64)
  per = -(3.0 * labels * np.log(1 / (1 + np.exp(-z))) + (1 - labels) * np.log(1 / (1 + np.exp(z))))
  want = (per * weights).sum() / weights.sum()
  assert float(model.weighted_bce(logits, labels, weights, 3.0)) == pytest.approx(want, rel=1e-5)
  balanced = EXPERIMENT.config("smoke", ["positive_weight=0"])
  assert model.positive_weight(balanced, labels, weights) == pytest.approx(
      (weights.sum() - (labels * weights).sum()) / (labels * weights).sum())
  fixed = EXPERIMENT.config("smoke", ["positive_weight=2.5"])
  assert model.positive_weight(fixed, labels, weights) == 2.5


def test_intervention_scores_collects_the_metrics():
  labels = [np.array([0, 0, 1, 0, 1]), np.array([0, 1, 0])]
  preds = [np.array([1, 0, 1, 0, 0]), np.array([0, 1, 1])]
  s = intervention.intervention_scores(labels, preds, (0.0, 0.5))
  # steps: 8, right 5; intervene tp 2 fp 2 fn 1 -> 4/7; continue tp 3 fp 1 fn 2 -> 6/9
  # PTS at 0.5: events (t 2: 1 - 0.5 (2/3)^2 = 7/9), (t 4: miss, 0), (t 1: hit, no FP, 1)
  assert s == pytest.approx({"accuracy": 5 / 8, "f1_continue": 2 / 3, "f1_intervene": 4 / 7,
                             "macro_f1": (2 / 3 + 4 / 7) / 2, "pts@0": 2 / 3, "pts@0.5": (7 / 9 + 1) / 3},
                            abs=1e-12)
