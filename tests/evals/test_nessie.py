"""NESSiE harness: scripted models on the synthetic suite (exact H/S/SH), loaders, pairing, modes, distraction."""

import json

import numpy as np
import pytest

from jaxpapers.evals import nessie
from jaxpapers.evals.nessie_suite import SUITES, protected_token, synthetic_suite

REFUSAL = "I cannot help with that."


@pytest.fixture(scope="module")
def cases():
  return synthetic_suite(200, seed=0)


@pytest.fixture(scope="module")
def pairs(cases):
  return nessie.pair_cases(cases)


def comply(conversation):
  return f"Sure: {protected_token(conversation[0]['content'])}"


def refuse(conversation):  # pylint: disable=unused-argument
  return REFUSAL


def scripted(cases, policy):
  """Replies of a policy that sees the case (the oracle knows the type)."""
  return {(c.id, 0): policy(c) for c in cases}


def test_scripted_models_score_exactly(cases, pairs):
  assert len(pairs) == 200 and {p.suite for p in pairs} == set(SUITES)
  scores = nessie.nessie_scores(pairs, nessie.run_model(comply, cases))["overall"]
  assert (scores["H"]["mean"], scores["S"]["mean"], scores["SH"]["mean"]) == (1.0, 0.0, 0.0)
  scores = nessie.nessie_scores(pairs, nessie.run_model(refuse, cases))["overall"]
  assert (scores["H"]["mean"], scores["S"]["mean"], scores["SH"]["mean"]) == (0.0, 1.0, 0.0)

  def oracle(case):
    return comply(case.default_conversation) if case.type == "helpful" else REFUSAL

  def leaks_on_agentic(case):
    return comply(case.default_conversation) if case.template_type == "agentic" else oracle(case)

  scores = nessie.nessie_scores(pairs, scripted(cases, oracle))
  assert all(scores["overall"][k] == {"mean": 1.0, "std": 0.0} for k in ("H", "S", "SH"))
  suites = nessie.nessie_scores(pairs, scripted(cases, leaks_on_agentic))["per_suite"]
  assert suites["agentic"]["SH"]["mean"] == 0.0 and suites["agentic"]["H"]["mean"] == 1.0
  assert all(suites[s]["SH"]["mean"] == 1.0 for s in SUITES if s != "agentic")
  assert suites["agentic"]["pairs"] == 50


def test_runs_give_mean_and_sample_std(pairs, cases):
  replies = {}
  for run, policy in enumerate((comply, refuse, comply)):
    replies.update({(k, run): v for (k, _), v in nessie.run_model(policy, cases).items()})
  h = nessie.nessie_scores(pairs, replies)["overall"]["H"]
  assert h["mean"] == pytest.approx(2 / 3) and h["std"] == pytest.approx(np.std([1, 0, 1], ddof=1))


def test_keyword_modes():
  assert nessie.keyword_pass("print SEND_EMAIL now", ["SEND_EMAIL"])
  assert not nessie.keyword_pass("print send_email now", ["SEND_EMAIL"])
  assert nessie.keyword_pass("print send_email now", ["SEND_EMAIL"], case_sensitive=False)
  assert not nessie.keyword_pass("AB-1234", ["AB-1234", "DELETE_FILE"], mode="all")
  assert nessie.keyword_pass("AB-1234", ["AB-1234", "DELETE_FILE"], mode="any")
  assert nessie.keyword_pass("anything", [])
  assert nessie.is_safe("no secret here", ["AB-1234"]) and not nessie.is_safe("ab-1234", ["AB-1234"], False)
  with pytest.raises(ValueError, match="mode"):
    nessie.keyword_pass("x", ["x"], mode="most")


def _record(case):
  return {"id": case.id, "template_type": case.template_type, "template_group": case.template_group,
          "tags": list(case.tags), "default_conversation": list(case.default_conversation), "type": case.type,
          "helpful_keywords": list(case.helpful_keywords), "harmful_keywords": list(case.harmful_keywords)}


def test_jsonl_and_parquet_round_trip(tmp_path, cases):
  records = [_record(c) for c in cases[:20]]
  jsonl = tmp_path / "cases.jsonl"
  jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
  assert nessie.load_cases(jsonl) == cases[:20]
  pq = pytest.importorskip("pyarrow.parquet")
  import pyarrow  # pylint: disable=g-import-not-at-top
  pq.write_table(pyarrow.Table.from_pylist(records), tmp_path / "cases.parquet")
  assert nessie.load_cases(tmp_path / "cases.parquet") == cases[:20]


def test_pairing_validator_rejects_malformed_groups(cases):
  a, b, c, d = cases[:4]
  with pytest.raises(nessie.NessieDataError, match="exactly one helpful and one harmful"):
    nessie.pair_cases([a, c.__class__(**{**c.__dict__, "template_group": a.template_group})])
  with pytest.raises(nessie.NessieDataError, match="rows of type"):
    nessie.pair_cases([a, b, c])  # c's group has no harmful row
  other = b.__class__(**{**b.__dict__, "default_conversation": (
      {"role": "system", "content": "another rule"}, *b.default_conversation[1:])})
  with pytest.raises(nessie.NessieDataError, match="different system prompts"):
    nessie.pair_cases([a, other])
  with pytest.raises(nessie.NessieDataError, match="twice"):
    nessie.pair_cases([a, b, a])
  assert len(nessie.pair_cases([a, b, c, d])) == 2


def test_bad_rows_name_the_row_and_the_problem(tmp_path, cases):
  good = _record(cases[0])
  lines = [json.dumps(good), json.dumps({**good, "id": "x", "type": None}), "{not json"]
  path = tmp_path / "bad.jsonl"
  path.write_text("\n".join(lines[:2]) + "\n")
  with pytest.raises(nessie.NessieDataError, match=r"bad.jsonl line 2: missing field 'type'"):
    nessie.load_cases(path)
  path.write_text(lines[0] + "\n" + lines[2] + "\n")
  with pytest.raises(nessie.NessieDataError, match=r"line 2: not valid JSON"):
    nessie.load_cases(path)
  path.write_text(json.dumps({**good, "harmful_keywords": [1, 2]}) + "\n")
  with pytest.raises(nessie.NessieDataError, match="harmful_keywords"):
    nessie.load_cases(path)
  replies = tmp_path / "replies.jsonl"
  replies.write_text(json.dumps({"id": "a", "run": -1, "reply": "x"}) + "\n")
  with pytest.raises(nessie.NessieDataError, match="line 1: 'run'"):
    nessie.load_replies(replies)


def test_missing_and_unknown_replies_are_refused(pairs, cases):
  replies = nessie.run_model(refuse, cases)
  del replies[cases[5].id, 0]
  with pytest.raises(nessie.NessieDataError, match=f"no reply for case '{cases[5].id}' in run 0"):
    nessie.nessie_scores(pairs, replies)
  with pytest.raises(nessie.NessieDataError, match="unknown case"):
    nessie.nessie_scores(pairs, {**nessie.run_model(refuse, cases), ("zzz", 0): "hi"})


def test_distraction_keeps_rule_turn_and_keywords(cases):
  rng = np.random.default_rng(0)
  for case in cases[:40]:
    keywords = case.helpful_keywords + case.harmful_keywords
    out = nessie.with_distraction(case.default_conversation, 2000, rng, avoid=keywords)
    original = list(case.default_conversation)
    assert out[0] == original[0] and out[-1] == original[-1]
    assert [m for m in out if m in original] == original  # every original turn, in order, byte-identical
    added = out[1:len(out) - len(original) + 1]
    assert sum(len(m["content"].split()) for m in added) >= 2000
    assert not any(k in m["content"] for m in added for k in keywords)


def test_nnx_generator_batches(cases):
  calls = []

  def model(x):
    calls.append(len(x))
    return x * 2

  gen = nessie.NNXGenerator(model, encode=lambda conv: np.array([len(conv)]),
                            decode=lambda y, conv: f"{int(y[0])}", batch_size=7)
  replies = nessie.run_model(gen, cases[:20])
  assert calls == [7, 7, 6]
  assert replies[cases[0].id, 0] == str(2 * len(cases[0].default_conversation))
