"""End-to-end test of multi-host `jaxpapers train` (jax.distributed with gloo on 127.0.0.1).

Two processes with one CPU device each, sharing a workdir, must train the same run as one
process with two CPU devices: the data-parallel mesh is the same, only split across hosts.
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

from jaxpapers.core.testing import cli_env

STEPS = 300


def _command(workdir: Path, *extra: str) -> list[str]:
  return [sys.executable, "-m", "jaxpapers.cli", "train", "modular_addition", "--preset", "smoke",
          "--workdir", str(workdir), "--no-progress", f"train.steps={STEPS}",
          f"train.checkpoint_every={STEPS}", *extra]


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _summary(stdout: str) -> dict:
  return json.loads(stdout.strip().splitlines()[-1])


def test_two_processes_match_one_process_with_two_devices(tmp_path):
  """2 hosts x 1 device trains the same parameters and loss as 1 host x 2 devices."""
  single_dir = tmp_path / "single"
  single = subprocess.run(_command(single_dir), cwd=tmp_path, env=cli_env(2), capture_output=True,
                          text=True, timeout=180, check=False)
  assert single.returncode == 0, single.stderr
  expected = _summary(single.stdout)

  multi_dir = tmp_path / "multi"
  coordinator = f"127.0.0.1:{_free_port()}"
  procs = []
  try:
    for i in range(2):
      out = open(tmp_path / f"process{i}.out", "w")
      err = open(tmp_path / f"process{i}.err", "w")
      with out, err:
        procs.append(subprocess.Popen(
            _command(multi_dir, "--coordinator", coordinator, "--num-processes", "2",
                     "--process-id", str(i)),
            cwd=tmp_path, env=cli_env(1), stdout=out, stderr=err))
    codes = [p.wait(timeout=180) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  logs = {i: (tmp_path / f"process{i}.err").read_text() for i in range(2)}
  assert codes == [0, 0], (codes, logs)
  for log in logs.values():
    assert "Traceback" not in log, log

  got = _summary((tmp_path / "process0.out").read_text())
  # Only process 0 prints the summary (gloo itself may print a connection line on each).
  assert "params_checksum" not in (tmp_path / "process1.out").read_text()
  assert json.loads((multi_dir / "summary.json").read_text()) == got
  assert got["step"] == expected["step"] == STEPS
  assert abs(got["final_metrics"]["train_loss"] - expected["final_metrics"]["train_loss"]) <= 1e-5
  assert got["params_checksum"] == expected["params_checksum"]
  assert sorted(p.name for p in (multi_dir / "checkpoints").iterdir()) == [str(STEPS)]
  assert not (multi_dir / "run.lock").exists()  # process 0 held the run's one lock, and released it
