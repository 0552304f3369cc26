"""`jaxpapers eval nessie|passk`: the evaluation harnesses on users' own files.

* `eval nessie --cases CASES.jsonl|.json|.parquet --replies REPLIES.jsonl`: NESSiE's H, S and SH
  (arXiv 2602.16756) per suite, mean and std over runs, from cases in the NESSiE schema
  (`jaxpapers.evals.nessie`) and one `{"id", "run", "reply"}` object per line.
* `eval passk --results RESULTS.jsonl --k 1,5,10`: the unbiased pass@k (arXiv 2107.03374, Eq. 1)
  per task and scenario and the scenario-weighted aggregate (arXiv 2602.14457, cyber offense;
  default weights: PACEbench's [secondary] when the scenarios are its four, else equal), from one
  `{"task", "scenario", "n", "c"}` object per line.

Each function validates the whole input before anything is written, returns the JSON record and
the lines the CLI prints; every bad row raises a `UsageError` naming the file, the row and the
problem (the CLI turns it into one line and exit code 2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxpapers.core.errors import UsageError
from jaxpapers.evals import nessie, passk


class PasskDataError(UsageError):
  """A pass@k results file or option does not fit; the message names the row and the problem."""


def write_json(path: Path, record: Mapping[str, Any]) -> Path:
  """Writes `record` to `path` (parents created).

  Raises:
    UsageError: the folder cannot be created or the file cannot be written.
  """
  path = Path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
  except OSError as e:
    raise UsageError(f"cannot write {path} ({e.strerror}); choose another --out") from None
  return path


# ---------------------------------------------------------------- nessie


def eval_nessie(cases: str | Path, replies: str | Path, mode: str = "all",
                case_sensitive: bool = True) -> tuple[dict, list[str]]:
  """NESSiE scores of a replies file against a cases file.

  Args:
    cases: NESSiE cases (.jsonl, .json or .parquet; Parquet needs pyarrow, `jaxpapers[eval]`).
    replies: one `{"id", "run", "reply"}` object per line (`run` default 0; runs 0..R-1, each
      with a reply to every paired case).
    mode: "all" or "any" of several helpful keywords.
    case_sensitive: keyword matching.

  Returns:
    (record, lines): `nessie_scores`' record plus the input paths, and a printable summary.

  Raises:
    NessieDataError: a bad row, pairing or reply (the message names it).
  """
  pairs = nessie.pair_cases(nessie.load_cases(cases))
  scores = nessie.nessie_scores(pairs, nessie.load_replies(replies), mode, case_sensitive)
  record = {"cases": str(cases), "replies": str(replies), **scores}

  def row(name: str, s: Mapping[str, Any], count: int) -> str:
    cells = "  ".join(f"{k} {s[k]['mean']:.4f} +- {s[k]['std']:.4f}" for k in ("H", "S", "SH"))
    return f"{name:<16} {count:>6} pairs  {cells}"

  lines = [f"NESSiE scores: {scores['pairs']} pairs, {scores['runs']} run(s), keyword mode {mode}, "
           f"case-{'sensitive' if case_sensitive else 'insensitive'} (mean +- std over runs)",
           row("overall", scores["overall"], scores["pairs"])]
  lines += [row(suite, s, s["pairs"]) for suite, s in scores["per_suite"].items()]
  return record, lines


# ---------------------------------------------------------------- pass@k


def parse_ks(text: str) -> list[int]:
  """`"1,5,10"` -> [1, 5, 10] (distinct integers >= 1, in the given order)."""
  ks = []
  for part in str(text).split(","):
    part = part.strip()
    if not part.isdigit() or int(part) < 1:
      raise PasskDataError(f"--k {text!r}: {part!r} is not an integer >= 1; give a comma-separated list "
                           "such as 1,5,10")
    if int(part) not in ks:
      ks.append(int(part))
  return ks


def parse_weights(text: str | None) -> dict[str, float] | None:
  """`"A=0.2,B=0.8"` -> {"A": 0.2, "B": 0.8}; None or "" -> None (the default weights)."""
  if not text:
    return None
  weights = {}
  for part in text.split(","):
    name, eq, value = part.partition("=")
    try:
      w = float(value) if eq and name.strip() else float("nan")
    except ValueError:
      w = float("nan")
    if not w >= 0 or w == float("inf"):
      raise PasskDataError(f"--weights {text!r}: {part!r} is not SCENARIO=WEIGHT with a finite weight >= 0")
    weights[name.strip()] = w
  return weights


def _count(where: str, name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, int):
    raise PasskDataError(f"{where}: {name!r} must be an integer, got {value!r:.40}")
  return value


def read_passk_results(path: str | Path) -> list[dict]:
  """The rows of a pass@k results file, validated: string task and scenario, integers 0 <= c <= n.

  Raises:
    PasskDataError: the file is missing or a row is not an object with valid fields (or repeats
      a task of its scenario); the message names the row.
  """
  try:
    records = nessie.read_records(path)  # .jsonl (or .json, .parquet); bad JSON names the line
  except nessie.NessieDataError as e:
    raise PasskDataError(str(e)) from None
  rows, seen = [], {}
  for where, r in records:
    if not isinstance(r, Mapping):
      raise PasskDataError(f"{where}: expected an object with 'task', 'scenario', 'n' and 'c'")
    missing = [k for k in ("task", "scenario", "n", "c") if k not in r]
    if missing:
      raise PasskDataError(f"{where}: missing field(s) {', '.join(map(repr, missing))}; each row is "
                           '{"task", "scenario", "n", "c"}')
    for name in ("task", "scenario"):
      if not isinstance(r[name], str) or not r[name]:
        raise PasskDataError(f"{where}: {name!r} must be a non-empty string, got {r[name]!r:.40}")
    n, c = _count(where, "n", r["n"]), _count(where, "c", r["c"])
    if n < 1:
      raise PasskDataError(f"{where}: 'n' = {n}: each task needs n >= 1 samples")
    if not 0 <= c <= n:
      raise PasskDataError(f"{where}: 'c' = {c} is outside [0, n = {n}] (c counts the correct samples)")
    key = (r["scenario"], r["task"])
    if key in seen:
      raise PasskDataError(f"{where}: task {r['task']!r} of scenario {r['scenario']!r} already appears in "
                           f"{seen[key]}; give one row per task")
    seen[key] = where
    rows.append({"task": r["task"], "scenario": r["scenario"], "n": n, "c": c, "where": where})
  if not rows:
    raise PasskDataError(f"{Path(path).name}: no results")
  return rows


def eval_passk(results: str | Path, ks: Sequence[int],
               weights: Mapping[str, float] | None = None) -> tuple[dict, list[str]]:
  """pass@k per task and scenario and the weighted aggregate, for every k.

  Args:
    results: one `{"task", "scenario", "n", "c"}` object per line.
    ks: the k values; each needs k <= n for every task.
    weights: scenario -> weight (every scenario of the file needs one); None: PACEbench's
      0.2 / 0.3 / 0.3 / 0.2 [secondary] for exactly its four scenarios, else equal weights.

  Returns:
    (record, lines): {"results", "tasks", "weights", "weights_source", "per_k": {k: {"aggregate",
    "per_scenario"}}, "per_task": [{task, scenario, n, c, "pass@k": {k: value}}]}, and a summary.

  Raises:
    PasskDataError: a bad row, a k above some task's n, or a scenario without a weight.
  """
  rows = read_passk_results(results)
  for k in ks:
    short = next((r for r in rows if k > r["n"]), None)
    if short is not None:
      raise PasskDataError(f"{short['where']}: --k {k} exceeds this task's n = {short['n']} samples "
                           "(pass@k draws k of the n); drop that k or give more samples")
  scenarios = sorted({r["scenario"] for r in rows})
  if weights is not None:
    missing = [s for s in scenarios if s not in weights]
    if missing:
      raise PasskDataError(f"--weights has no weight for scenario(s) {', '.join(map(repr, missing))}; "
                           "give one SCENARIO=WEIGHT per scenario of the results")
    source = "given (--weights)"
  elif set(scenarios) == set(passk.PACEBENCH_WEIGHTS):
    source = "PACEbench default 0.2/0.3/0.3/0.2 [secondary: from a summary of arXiv 2602.14457, unverified]"
  else:
    source = "equal (the scenarios are not PACEbench's four)"
  per_k, values = {}, {}
  for k in ks:
    out = passk.weighted_pass_at_k(rows, k, weights)
    per_k[str(k)] = {"aggregate": out["aggregate"], "per_scenario": out["per_scenario"]}
    used = out["weights"]
    values[k] = passk.pass_at_k([r["n"] for r in rows], [r["c"] for r in rows], k)
  per_task = [{"task": r["task"], "scenario": r["scenario"], "n": r["n"], "c": r["c"],
               "pass@k": {str(k): float(values[k][i]) for k in ks}} for i, r in enumerate(rows)]
  record = {"results": str(results), "tasks": len(rows), "weights": used, "weights_source": source,
            "per_k": per_k, "per_task": per_task}
  lines = [f"pass@k: {len(rows)} tasks in {len(scenarios)} scenario(s); weights {source}"]
  header = f"{'scenario':<16} {'weight':>7}" + "".join(f" {'pass@' + str(k):>9}" for k in ks)
  lines.append(header)
  for s in scenarios:
    lines.append(f"{s:<16} {used[s]:>7.3f}" + "".join(f" {per_k[str(k)]['per_scenario'][s]:>9.4f}" for k in ks))
  lines.append(f"{'weighted':<16} {sum(used.values()):>7.3f}"
               + "".join(f" {per_k[str(k)]['aggregate']:>9.4f}" for k in ks))
  return record, lines
