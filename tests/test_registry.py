"""The discovered registry (issue 13 sections 2 and 8), tried as a user would, in subprocesses.

- Copying an experiment folder under a new name is all it takes to add an experiment: the copy
  appears in `jaxpapers list` and `jaxpapers reproduce NEWNAME --preset smoke` runs it.
- The paper folders install as `jaxpapers.experiments`: from a directory with its own
  `experiments/` folder (a package, or a namespace folder without `__init__.py`), the CLI and a
  registry lookup work, and the user's `experiments` stays the user's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jaxpapers.core import registry
from jaxpapers.core.errors import UsageError
from jaxpapers.core.testing import cli_env

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "games"  # the cheapest smoke run (no training)


def _run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], cwd=cwd, env=cli_env(), capture_output=True,
                        text=True, timeout=timeout, check=False)


def _listed(stdout: str) -> list[str]:
  return [line.split()[0] for line in stdout.splitlines() if line.strip()]


def _claim_contract(record: dict) -> list[tuple]:
  return [(c["id"], c["statement"], c["threshold"], c["paper_value"]) for c in record["claims"]]


def test_unknown_experiment_is_a_usage_error_naming_the_known_ones():
  with pytest.raises(UsageError, match="unknown experiment 'nope'.*games"):
    registry.load_experiment("nope")


@contextlib.contextmanager
def _copy_of(source: str):
  """experiments/SOURCE copied to experiments/tmp_copy_<pid>, removed on exit: yields the name."""
  name = f"tmp_copy_{os.getpid()}"
  target = ROOT / "experiments" / name
  assert not target.exists(), f"{target} is left over from an interrupted run; remove it"
  shutil.copytree(ROOT / "experiments" / source, target, ignore=shutil.ignore_patterns("__pycache__"))
  try:
    yield name
  finally:
    shutil.rmtree(target, ignore_errors=True)


def test_a_copied_folder_is_a_new_experiment(tmp_path, smoke_report):
  original = _claim_contract(smoke_report(SOURCE).record)  # before the copy exists (shared run)
  out = tmp_path / "runs"
  with _copy_of(SOURCE) as name:
    listing = _run(["-m", "jaxpapers.cli", "list"], cwd=tmp_path, timeout=300)
    assert listing.returncode == 0, listing.stderr
    assert {name, SOURCE} <= set(_listed(listing.stdout)), listing.stdout
    proc = _run(["-m", "jaxpapers.cli", "reproduce", name, "--preset", "smoke", "--out", str(out)],
                cwd=tmp_path, timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  record = json.loads((out / name / "report.json").read_text())
  assert record["experiment"] == name and record["preset"] == "smoke" and record["passed"]
  # The copy is the same experiment under its folder's name: the original's claims and thresholds.
  assert _claim_contract(record) == original


@pytest.mark.parametrize("own_package", [True, False], ids=["package", "namespace_folder"])
def test_a_users_own_experiments_folder_does_not_collide(own_package, tmp_path):
  user = tmp_path / "experiments"
  (user / "games").mkdir(parents=True)
  if own_package:
    (user / "__init__.py").write_text('MARKER = "the user\'s experiments"\n')
  (user / "games" / "run.py").write_text('raise RuntimeError("jaxpapers imported the user\'s games")\n')

  before = set(registry.experiment_names())
  listing = _run(["-m", "jaxpapers.cli", "list"], cwd=tmp_path, timeout=300)
  assert listing.returncode == 0, listing.stderr
  assert "Traceback" not in listing.stderr
  # Both before and after the listing: a test on another worker may copy a folder meanwhile.
  shipped = before & set(registry.experiment_names())
  assert shipped <= set(_listed(listing.stdout)), listing.stdout

  script = ("import experiments, jaxpapers, os\n"  # a notebook in that folder: the user's package first
            "from jaxpapers.core import registry\n"
            "print(registry.load_experiment('games').name)\n"
            "print(os.path.realpath(list(experiments.__path__)[0]))\n")
  lookup = _run(["-c", script], cwd=tmp_path, timeout=300)
  assert lookup.returncode == 0, lookup.stderr
  assert lookup.stdout.splitlines() == ["games", str(user.resolve())]
