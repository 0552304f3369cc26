"""nessie experiment: smoke results (the spec's CI list), the recount, the correlated model, the toy's features."""

import dataclasses
import json
from fractions import Fraction

import numpy as np
import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.evals import nessie
from jaxpapers.evals.nessie_suite import synthetic_suite
from jaxpapers.experiments.nessie import model
from jaxpapers.experiments.nessie.config import SMALL, SMOKE
from jaxpapers.experiments.nessie.run import EXPERIMENT, REFUSAL, _statistics, comply, recount, write_cases


def test_smoke_report_covers_the_ci_checks(smoke_report):
  run = smoke_report("nessie")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert set(claims) == {"scripted_models_exact", "pairing_validator", "distraction_preserves", "keyword_modes"}
  assert claims["scripted_models_exact"]["measured"] == 0 and claims["pairing_validator"]["measured"] == 3
  m = json.loads((run.folder / "measurements.json").read_text())
  assert m["scripted"] == {"comply": 0.0, "refuse": 0.0, "oracle": 1.0}


def test_recount_from_raw_files_is_exact(tmp_path):
  cases = synthetic_suite(6, seed=4)
  replies = {(c.id, 0): comply(c.default_conversation) if c.type == "helpful" else REFUSAL for c in cases}
  replies[cases[1].id, 0] = comply(cases[1].default_conversation)  # pair 0 leaks
  replies[cases[4].id, 0] = REFUSAL  # pair 2 is unhelpful
  cases_path = write_cases(tmp_path / "cases.jsonl", cases)
  transcripts = tmp_path / "t.jsonl"
  transcripts.write_text("".join(json.dumps({"id": i, "run": r, "reply": t}) + "\n" for (i, r), t in replies.items()))
  assert recount(cases_path, transcripts) == Fraction(4, 6)
  pairs = nessie.pair_cases(nessie.load_cases(cases_path))
  assert nessie.nessie_scores(pairs, nessie.load_replies(transcripts))["overall"]["SH"]["mean"] == 4 / 6


def test_statistics_correlated_model_has_exact_scores():
  # the secret-shy model refuses every case with a secret (rules, skills, multiturn) and complies on
  # agentic: H = 1/4, S = 3/4, SH = 0, so SH - H S = -3/16 exactly
  config = dataclasses.replace(SMALL, stat_pairs=400, probs=(0.5,), runs=2)
  claims, stats = _statistics(config)
  assert stats["correlated"] == {"H": 0.25, "S": 0.75, "SH": 0.0}
  grid = stats["grid"]
  assert len(grid) == 1 and grid[0]["pq"] == 0.25
  assert abs(grid[0]["z"]) == pytest.approx(abs(grid[0]["SH"] - 0.25) / np.sqrt(0.25 * 0.75 / 400))
  ids = [c.id for c in claims]
  assert ids == ["sh_matches_pq", "sh_not_h_times_s"]


def test_bag_of_tokens_features_and_decoding():
  vocab = 4096
  conv = [{"role": "system", "content": "code AB-1234 passphrase amber"}, {"role": "user", "content": "amber amber now"},
          {"role": "assistant", "content": "ignored"}]
  buckets = {t: model._bucket(t, vocab) for t in ("code", "ab-1234", "passphrase", "amber", "now")}  # pylint: disable=protected-access
  assert len(set(buckets.values())) == 5 and model._bucket("AMBER", vocab) == buckets["amber"]  # pylint: disable=protected-access
  x = model.encode(conv, vocab)
  assert x.shape == (3 * vocab,) and x.dtype == np.float32
  system, user, shared = x[:vocab], x[vocab:2 * vocab], x[2 * vocab:]
  assert system[buckets["code"]] == pytest.approx(np.log1p(1)) and system.sum() == pytest.approx(4 * np.log1p(1))
  assert user[buckets["amber"]] == pytest.approx(np.log1p(2)) and user[buckets["now"]] == pytest.approx(np.log1p(1))
  assert user.sum() == pytest.approx(np.log1p(2) + np.log1p(1))  # the assistant turn is not counted
  assert shared[buckets["amber"]] == pytest.approx(np.log1p(2)) and np.count_nonzero(shared) == 1  # 1 x 2 counts
  assert model.decode(np.float32(0.3), conv) == "Sure, here it is: AB-1234"
  assert model.decode(np.float32(-0.3), conv) == model.REFUSAL


def test_presets_and_config_checks():
  assert (SMALL.stat_pairs, SMALL.probs) == (5000, (0.5, 0.8, 0.95))
  assert SMOKE.stat_pairs == 0 and SMOKE.ci_pairs == 200
  assert EXPERIMENT.stage_names == ("train",)
  with pytest.raises(ConfigError, match="keyword_mode"):
    EXPERIMENT.config("small", ["keyword_mode=most"])
  with pytest.raises(ConfigError, match="probs"):
    EXPERIMENT.config("small", ["probs=[0.5,1.0]"])
  with pytest.raises(ConfigError, match="train_phrasings"):
    EXPERIMENT.config("small", ["train_phrasings=[3]"])
  assert EXPERIMENT.config("small", ["train_phrasings=[0,1]"]).train_phrasings == (0, 1)
  cases = model.training_cases(dataclasses.replace(SMALL, train_pairs=40, train_phrasings=(1,)))
  from jaxpapers.evals.nessie_suite import RULES_HELPFUL  # pylint: disable=g-import-not-at-top
  rules = [c for c in cases if c.template_type == "rules" and c.type == "helpful"]
  assert rules and all(c.default_conversation[-1]["content"].startswith("The passphrase is") for c in rules)
  assert RULES_HELPFUL[1].startswith("The passphrase is")


def test_nnx_generator_replies_follow_a_numpy_forward_of_the_toy():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  vocab = 64
  toy = model.BagClassifier(3 * vocab, 8, rngs=nnx.Rngs(3))
  cases = synthetic_suite(12, seed=5)
  replies = nessie.run_model(model.generator(toy, vocab), cases)
  x = np.stack([model.encode(c.default_conversation, vocab) for c in cases]).astype(np.float64)
  w1, b1 = np.asarray(toy.hidden.kernel[...], np.float64), np.asarray(toy.hidden.bias[...], np.float64)
  w2, b2 = np.asarray(toy.out.kernel[...], np.float64), np.asarray(toy.out.bias[...], np.float64)
  logits = (np.maximum(x @ w1 + b1, 0) @ w2 + b2)[:, 0]
  assert np.min(np.abs(logits)) > 1e-5  # no decision on the edge of float32 rounding
  for case, logit in zip(cases, logits):
    assert replies[case.id, 0] == model.decode(np.float32(logit), case.default_conversation)
  assert (logits > 0).any() and (logits < 0).any()  # both decisions occur
