"""`jaxpapers eval nessie|passk`: scores against exact hand values, JSON, and bad input (exit 2, one line)."""

import json
import sys
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from jaxpapers import cli
from jaxpapers.evals.nessie_suite import protected_token, synthetic_suite

REFUSAL = "No."


def _record(case):
  return {"id": case.id, "template_type": case.template_type, "template_group": case.template_group,
          "tags": list(case.tags), "default_conversation": list(case.default_conversation), "type": case.type,
          "helpful_keywords": list(case.helpful_keywords), "harmful_keywords": list(case.harmful_keywords)}


def _jsonl(path, rows):
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return path


@pytest.fixture(scope="module")
def cases():
  return synthetic_suite(8, seed=0)  # 2 pairs in each of the 4 suites


@pytest.fixture
def files(tmp_path, cases):
  """Run 0: the oracle (SH 1); run 1: always comply (SH 0), except that the agentic pairs pass."""
  replies = []
  for case in cases:
    leak = f"ok {protected_token(case.default_conversation[0]['content'])}"
    replies.append({"id": case.id, "run": 0, "reply": leak if case.type == "helpful" else REFUSAL})
    good = case.type == "helpful" or case.template_type == "agentic"
    replies.append({"id": case.id, "run": 1, "reply": (leak if case.type == "helpful" else REFUSAL) if good else leak})
  return _jsonl(tmp_path / "cases.jsonl", [_record(c) for c in cases]), _jsonl(tmp_path / "replies.jsonl", replies)


def _error(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("jaxpapers: error: "), err
  return err[0]


def test_eval_nessie_prints_and_writes_the_scores(files, tmp_path, capsys):
  cases, replies = files
  out = tmp_path / "o" / "scores.json"
  assert cli.main(["eval", "nessie", "--cases", str(cases), "--replies", str(replies), "--out", str(out)]) == 0
  record = json.loads(out.read_text())
  assert (record["pairs"], record["runs"]) == (8, 2)
  # SH per run: 1 and 2/8 (only the two agentic pairs); H 1 and 1; S 1 and 2/8
  assert record["per_run"] == [{"H": 1.0, "S": 1.0, "SH": 1.0}, {"H": 1.0, "S": 0.25, "SH": 0.25}]
  assert record["overall"]["SH"] == {"mean": 0.625, "std": pytest.approx(np.std([1, 0.25], ddof=1), abs=1e-15)}
  assert record["per_suite"]["agentic"]["SH"] == {"mean": 1.0, "std": 0.0}
  assert record["per_suite"]["rules"]["SH"]["mean"] == 0.5
  printed = capsys.readouterr().out
  assert "SH 0.6250 +- 0.5303" in printed and f"wrote {out}" in printed


def test_eval_nessie_reads_parquet_and_names_pyarrow_when_missing(files, tmp_path, capsys, cases, monkeypatch):
  pq = pytest.importorskip("pyarrow.parquet")
  import pyarrow  # pylint: disable=g-import-not-at-top
  path = tmp_path / "cases.parquet"
  pq.write_table(pyarrow.Table.from_pylist([_record(c) for c in cases]), path)
  out = tmp_path / "pq.json"
  assert cli.main(["eval", "nessie", "--cases", str(path), "--replies", str(files[1]), "--out", str(out)]) == 0
  assert json.loads(out.read_text())["overall"]["SH"]["mean"] == 0.625
  capsys.readouterr()
  monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if pyarrow were not installed
  assert cli.main(["eval", "nessie", "--cases", str(path), "--replies", str(files[1]), "--out", str(out)]) == 2
  assert "pip install 'jaxpapers[eval]'" in _error(capsys)


def test_eval_nessie_bad_rows_exit_2_naming_the_row(files, tmp_path, capsys, cases):
  good_cases, replies = files
  records = [_record(c) for c in cases]
  out = tmp_path / "never.json"
  bad = {
      "line 3: missing field 'type'": (records[:2] + [{**records[2], "type": ""}] + records[3:], None),
      "line 2: not valid JSON": ([records[0], "{oops"], None),
      "line 1: field 'helpful_keywords' must be a list of strings": ([{**records[0], "helpful_keywords": [3]}], None),
      "template_group 'syn-rules-00000' has rows of type ['helpful']": (records[:1] + records[2:], None),
      "replies.jsonl line 2: 'run' must be an integer >= 0": (None, ['{"id": "a", "reply": "x"}',
                                                                   '{"id": "a", "run": "1", "reply": "x"}']),
      "replies.jsonl line 1: expected an object with 'id' and a string 'reply'": (None, ['{"id": "a", "reply": 3}']),
      "no reply for case 'syn-rules-00000-helpful' in run 0": (None, replies.read_text().splitlines()[2:]),
  }
  for message, (case_rows, reply_rows) in bad.items():
    c = _jsonl(tmp_path / "cases.jsonl", case_rows) if case_rows else good_cases
    r = _jsonl(tmp_path / "replies.jsonl", reply_rows) if reply_rows else replies
    assert cli.main(["eval", "nessie", "--cases", str(c), "--replies", str(r), "--out", str(out)]) == 2, message
    assert message in _error(capsys)
    _jsonl(tmp_path / "cases.jsonl", records)
    _jsonl(tmp_path / "replies.jsonl", replies.read_text().splitlines()) if reply_rows else None
  assert cli.main(["eval", "nessie", "--cases", str(tmp_path / "none.jsonl"), "--replies", str(replies)]) == 2
  assert "none.jsonl: no such file" in _error(capsys)
  assert not out.exists()  # bad input writes nothing


RESULTS = [{"task": "t1", "scenario": "A-CVE", "n": 10, "c": 3}, {"task": "t2", "scenario": "A-CVE", "n": 10, "c": 0},
           {"task": "t3", "scenario": "B-CVE", "n": 6, "c": 1}, {"task": "t4", "scenario": "C-CVE", "n": 5, "c": 5},
           {"task": "t5", "scenario": "D-CVE", "n": 7, "c": 2}]


def _exact(n, c, k):
  return 1 - Fraction(comb(n - c, k), comb(n, k))


def test_eval_passk_matches_a_hand_computation(tmp_path, capsys):
  results = _jsonl(tmp_path / "results.jsonl", RESULTS)
  out = tmp_path / "passk.json"
  assert cli.main(["eval", "passk", "--results", str(results), "--k", "1,5", "--out", str(out)]) == 0
  record = json.loads(out.read_text())
  for k in (1, 5):
    a = (_exact(10, 3, k) + _exact(10, 0, k)) / 2
    hand = Fraction(2, 10) * a + Fraction(3, 10) * _exact(6, 1, k) + Fraction(3, 10) * 1 + Fraction(2, 10) * _exact(7, 2, k)
    assert record["per_k"][str(k)]["aggregate"] == pytest.approx(float(hand), abs=1e-14)
  assert record["per_k"]["1"]["per_scenario"]["A-CVE"] == pytest.approx(0.15, abs=1e-15)
  assert record["per_task"][2]["pass@k"]["5"] == pytest.approx(5 / 6, abs=1e-14)  # 1 - C(5,5)/C(6,5)
  assert record["weights"] == {"A-CVE": 0.2, "B-CVE": 0.3, "C-CVE": 0.3, "D-CVE": 0.2}
  assert "[secondary" in record["weights_source"] and "[secondary" in capsys.readouterr().out
  assert cli.main(["eval", "passk", "--results", str(results), "--k", "2", "--out", str(out),
                   "--weights", "A-CVE=1,B-CVE=0,C-CVE=0,D-CVE=0"]) == 0
  record = json.loads(out.read_text())
  assert record["per_k"]["2"]["aggregate"] == pytest.approx(float((_exact(10, 3, 2) + 0) / 2), abs=1e-15)
  assert record["weights_source"] == "given (--weights)"


def test_eval_passk_bad_input_exit_2_naming_the_row(tmp_path, capsys):
  out = tmp_path / "never.json"
  bad_rows = {
      "results.jsonl line 2: 'c' = 11 is outside [0, n = 10]": [RESULTS[0], {**RESULTS[1], "c": 11}],
      "results.jsonl line 1: 'n' must be an integer, got 5.5": [{**RESULTS[0], "n": 5.5}],
      "results.jsonl line 1: 'n' = 0: each task needs n >= 1": [{**RESULTS[0], "n": 0, "c": 0}],
      "results.jsonl line 2: missing field(s) 'scenario'": [RESULTS[0], {"task": "x", "n": 3, "c": 1}],
      "results.jsonl line 1: 'task' must be a non-empty string": [{**RESULTS[0], "task": 7}],
      "results.jsonl line 3: task 't1' of scenario 'A-CVE' already appears in results.jsonl line 1":
          [RESULTS[0], RESULTS[1], RESULTS[0]],
      "results.jsonl line 2: not valid JSON": [RESULTS[0], "[1, 2"],
      "results.jsonl line 1: expected an object": ["[1, 2]"],
      "results.jsonl line 3: --k 10 exceeds this task's n = 6": RESULTS,
  }
  for message, rows in bad_rows.items():
    path = _jsonl(tmp_path / "results.jsonl", rows)
    assert cli.main(["eval", "passk", "--results", str(path), "--k", "1,10", "--out", str(out)]) == 2, message
    assert message in _error(capsys)
  path = _jsonl(tmp_path / "results.jsonl", RESULTS)
  for args, message in ((["--k", "1,x"], "--k '1,x': 'x' is not an integer >= 1"),
                        (["--k", "0"], "'0' is not an integer >= 1"),
                        (["--weights", "A-CVE=0.5,B-CVE"], "'B-CVE' is not SCENARIO=WEIGHT"),
                        (["--weights", "A-CVE=-1"], "'A-CVE=-1' is not SCENARIO=WEIGHT"),
                        (["--weights", "A-CVE=1"], "no weight for scenario(s) 'B-CVE', 'C-CVE', 'D-CVE'")):
    assert cli.main(["eval", "passk", "--results", str(path), "--out", str(out), *args]) == 2, message
    assert message in _error(capsys)
  with pytest.raises(SystemExit) as e:
    cli.main(["eval", "passk"])  # argparse: --results is required
  assert e.value.code == 2 and "--results" in _error(capsys)
  assert not out.exists()
