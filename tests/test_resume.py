"""End-to-end tests of resuming `jaxpapers train` after SIGKILL and SIGTERM.

The contract (ARCHITECTURE.md section 3): re-running the same command after an interruption
continues from the last checkpoint and ends with bit-identical parameters to an uninterrupted
run. The single-stage tests kill a 1,500-step smoke run once a checkpoint at step >= 300 is
committed (and the rerun takes over the lock the killed process left); the staged test kills
sparge_attention2's student in the middle, after its teacher finished.
"""

import collections
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxpapers.core.testing import cli_env

STEPS = 1500
EVERY = 100  # checkpoint, eval and log cadence


def _command(workdir: Path) -> list[str]:
  return [sys.executable, "-m", "jaxpapers.cli", "train", "modular_addition", "--preset", "smoke",
          "--workdir", str(workdir), "--no-progress", f"train.steps={STEPS}",
          f"train.checkpoint_every={EVERY}", f"train.eval_every={EVERY}", f"train.log_every={EVERY}"]


def _train(workdir: Path) -> tuple[dict, subprocess.CompletedProcess]:
  """Runs the command to completion; returns the summary it printed last."""
  proc = subprocess.run(_command(workdir), cwd=workdir.parent, env=cli_env(), capture_output=True,
                        text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert json.loads((workdir / "summary.json").read_text()) == summary
  return summary, proc


def _committed_steps(workdir: Path) -> list[int]:
  folder = workdir / "checkpoints"
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir()
                if p.name.isdigit() and (p / "commit_success.txt").exists())


def _start_and_interrupt(workdir: Path, sig: int) -> tuple[int, str]:
  """Starts the run, sends `sig` once a checkpoint at step >= 300 is committed; (rc, stderr)."""
  workdir.mkdir(parents=True)
  err_path = workdir.parent / f"{workdir.name}.stderr"
  with open(err_path, "w") as err:
    proc = subprocess.Popen(_command(workdir), cwd=workdir.parent, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
      deadline = time.monotonic() + 180
      while proc.poll() is None and time.monotonic() < deadline:
        if any(s >= 300 for s in _committed_steps(workdir)):
          proc.send_signal(sig)
          break
        time.sleep(0.02)
      rc = proc.wait(timeout=120)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  stderr = err_path.read_text()
  assert rc != 0, f"the run finished before it could be interrupted; raise STEPS\n{stderr}"
  assert not (workdir / "summary.json").exists()
  return rc, stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, Path]:
  """An uninterrupted run: (summary, workdir)."""
  workdir = tmp_path_factory.mktemp("reference") / "w"
  summary, _ = _train(workdir)
  assert summary["step"] == STEPS
  return summary, workdir


def _records(workdir: Path) -> list[dict]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines if line.strip()]


def _assert_same_as_reference(workdir: Path, summary: dict, reference: tuple[dict, Path]) -> None:
  ref_summary, ref_workdir = reference
  assert summary["step"] == STEPS
  assert summary["params_checksum"] == ref_summary["params_checksum"]
  assert summary["final_metrics"] == ref_summary["final_metrics"]
  records = _records(workdir)
  for kind, first in (("eval", 0), ("train", EVERY)):
    steps = [r["step"] for r in records if r["kind"] == kind]
    duplicated = [s for s, n in collections.Counter(steps).items() if n > 1]
    assert not duplicated, f"{kind} records repeated at steps {duplicated}"
    assert sorted(steps) == list(range(first, STEPS + 1, EVERY)), (kind, steps)
  ref_evals = [r for r in _records(ref_workdir) if r["kind"] == "eval"]
  assert [r for r in records if r["kind"] == "eval"] == ref_evals


def test_resume_after_sigkill_matches_uninterrupted_run(reference, tmp_path):
  """SIGKILL mid-run, then the same command: same checksum, metrics and one record per step."""
  workdir = tmp_path / "w"
  rc, stderr = _start_and_interrupt(workdir, signal.SIGKILL)
  assert rc == -signal.SIGKILL, (rc, stderr)
  latest = max(_committed_steps(workdir))
  assert 300 <= latest < STEPS
  killed_pid = json.loads((workdir / "run.lock").read_text())["pid"]  # left behind by SIGKILL
  summary, proc = _train(workdir)
  resumed = re.findall(r"resumed from the checkpoint of step (\d+)", proc.stderr)
  assert resumed == [str(latest)], proc.stderr
  assert re.search(rf"took over the lock of workdir .* from process {killed_pid} on host .*: that "
                   "process is gone", proc.stderr), proc.stderr
  assert not (workdir / "run.lock").exists()
  _assert_same_as_reference(workdir, summary, reference)


def test_resume_after_sigterm_matches_uninterrupted_run(reference, tmp_path):
  """SIGTERM: exit 143 with a checkpoint at the stop step; the same command then finishes equal."""
  workdir = tmp_path / "w"
  rc, stderr = _start_and_interrupt(workdir, signal.SIGTERM)
  assert rc == 143, (rc, stderr)
  assert "Traceback" not in stderr, stderr
  stopped = re.findall(r"stopped by SIGTERM at step (\d+)", stderr)
  assert len(stopped) == 1, stderr
  step = int(stopped[0])
  assert 300 <= step < STEPS
  assert max(_committed_steps(workdir)) == step
  summary, proc = _train(workdir)
  assert f"resumed from the checkpoint of step {step}" in proc.stderr, proc.stderr
  _assert_same_as_reference(workdir, summary, reference)


# ---- a staged experiment: sparge_attention2's student after its teacher ----

STAGED = ["sparge_attention2", "--preset", "smoke", "--stage", "student", "--no-progress",
          "teacher.steps=6", "teacher.checkpoint_every=3", "student.steps=30",
          "student.checkpoint_every=5"]


def _staged(workdir: Path) -> list[str]:
  return [sys.executable, "-m", "jaxpapers.cli", "train", *STAGED, "--workdir", str(workdir)]


def _run_staged(workdir: Path) -> tuple[dict, str]:
  proc = subprocess.run(_staged(workdir), cwd=workdir.parent, env=cli_env(), capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert json.loads((workdir / "student" / "summary.json").read_text()) == summary
  return summary, proc.stderr


def _kill_once_committed(workdir: Path, stage: str, at_least: int) -> int:
  """Starts the staged command and SIGKILLs it once `stage` committed a checkpoint >= at_least."""
  with open(workdir.parent / f"{workdir.name}.{stage}.stderr", "w") as err:
    proc = subprocess.Popen(_staged(workdir), cwd=workdir.parent, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
      deadline = time.monotonic() + 400
      while proc.poll() is None and time.monotonic() < deadline:
        if any(s >= at_least for s in _committed_steps(workdir / stage)):
          proc.kill()
          break
        time.sleep(0.02)
      rc = proc.wait(timeout=120)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  assert rc == -signal.SIGKILL, (rc, (workdir.parent / f"{workdir.name}.{stage}.stderr").read_text())
  assert not (workdir / stage / "summary.json").exists(), f"{stage} finished before the kill"
  return max(_committed_steps(workdir / stage))


@pytest.mark.slow  # ~100 s: two staged trainings; single-stage resume is in the default run
def test_staged_run_killed_mid_student_ends_as_an_uninterrupted_one(tmp_path):
  """`train sparge_attention2 --stage student` trains the teacher, then the student in W/student;
  SIGKILL mid-student, then the same command: the teacher is restored (not retrained), the
  student resumes, and its checksum equals an uninterrupted run's."""
  reference, _ = _run_staged(tmp_path / "reference")
  assert reference["step"] == 30
  assert json.loads((tmp_path / "reference" / "teacher" / "summary.json").read_text())["step"] == 6

  workdir = tmp_path / "w"
  student_step = _kill_once_committed(workdir, "student", 5)
  assert 5 <= student_step < 30
  assert json.loads((workdir / "teacher" / "summary.json").read_text())["step"] == 6
  summary, stderr = _run_staged(workdir)
  assert "stage teacher: already trained to step 6" in stderr, stderr
  assert f"stage student: resumed from the checkpoint of step {student_step}" in stderr, stderr
  assert "took over the lock" in stderr
  assert summary["params_checksum"] == reference["params_checksum"]
  assert summary["final_metrics"] == reference["final_metrics"]
  for stage in ("teacher", "student"):
    records = [(r["kind"], r["step"]) for r in _records(workdir / stage)]
    assert records == [(r["kind"], r["step"]) for r in _records(tmp_path / "reference" / stage)]
  assert sorted(p.name for p in workdir.iterdir()) == ["config.json", "student", "teacher"]
