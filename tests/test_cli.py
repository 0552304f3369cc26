"""End-to-end tests of the `jaxpapers` command: bad input, workdir rules, checkpoint refusal,
`list` with stages, `reproduce` overrides, and one run per workdir (the lock).

Every test runs the CLI in a subprocess (one fake CPU device) in its own tmp_path. The contract
(ARCHITECTURE.md section 3): bad input prints one line `jaxpapers: error: ...` on stderr, exits
with code 2, shows no traceback, and loses or overwrites nothing already saved. A workdir in use
by a live run is refused the same way, naming the running process's host and pid.
"""

import collections
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxpapers.core.testing import cli_env

SMOKE = ["modular_addition", "--preset", "smoke", "--no-progress"]
BASE_OVERRIDES = ["train.steps=200", "train.checkpoint_every=100"]


def _jaxpapers(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "jaxpapers.cli", *map(str, args)], cwd=cwd,
                        env=cli_env(), capture_output=True, text=True, timeout=timeout, check=False)


def _train_args(workdir: Path, *overrides: str) -> list[str]:
  return ["train", *SMOKE, "--workdir", workdir, *BASE_OVERRIDES, *overrides]


def _snapshot(root: Path) -> dict[str, str]:
  """Every path under `root`: sha256 of each file's bytes, "<dir>" for folders."""
  out = {}
  for path in sorted(Path(root).rglob("*")):
    rel = str(path.relative_to(root))
    out[rel] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
  return out


def _assert_usage_error(proc: subprocess.CompletedProcess, *hints: str) -> str:
  """Exit 2 and exactly one `jaxpapers: error:` line on stderr that contains every hint."""
  assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
  assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].strip(), proc.stderr
  line = lines[0]
  assert line.startswith("jaxpapers: error: "), line
  for hint in hints:
    assert hint in line, (hint, line)
  return line


@pytest.fixture(scope="module")
def trained_base(tmp_path_factory) -> Path:
  """A finished 200-step smoke run with checkpoints at steps 100 and 200 (copied by tests)."""
  root = tmp_path_factory.mktemp("base")
  workdir = root / "w"
  proc = _jaxpapers(*_train_args(workdir), cwd=root)
  assert proc.returncode == 0, proc.stderr
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["100", "200"]
  return workdir


def _copy_base(trained_base: Path, tmp_path: Path) -> Path:
  workdir = tmp_path / "w"
  shutil.copytree(trained_base, workdir)
  return workdir


BAD_INPUT = [
    pytest.param(["train", "no_such_experiment", "--workdir", "{w}"],
                 ["no_such_experiment", "jaxpapers list"], id="train-unknown-experiment"),
    pytest.param(["reproduce", "no_such_experiment", "--preset", "smoke", "--out", "{w}"],
                 ["no_such_experiment", "jaxpapers list"], id="reproduce-unknown-experiment"),
    pytest.param(["bench", "no_such_bench", "--out", "{w}"], ["no_such_bench"],
                 id="bench-unknown-benchmark"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "p=abc"], ["p=", "abc", "int"],
                 id="wrong-type-int"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "lr=fast"], ["lr=", "fast", "float"],
                 id="wrong-type-float"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "lr=-1"], ["lr=-1", "(0, 10]"],
                 id="out-of-range-lr"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "p=24"], ["p=24", "odd"],
                 id="out-of-range-p"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "lr=nan"], ["lr=nan"],
                 id="out-of-range-nan"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "no_such_field=1"],
                 ["unknown config field", "no_such_field", "known fields"], id="unknown-field"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "train.no_such_field=1"],
                 ["unknown config field", "train.no_such_field"], id="unknown-nested-field"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "train=5"], ["train", "group"],
                 id="override-of-a-group"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "train.steps"], ["train.steps"],
                 id="override-without-value"),
    pytest.param(["train", "modular_addition", "--preset", "huge", "--workdir", "{w}"],
                 ["--preset", "huge", "smoke"], id="train-unknown-preset"),
    pytest.param(["reproduce", "modular_addition", "--preset", "huge", "--out", "{w}"],
                 ["--preset", "huge", "smoke"], id="reproduce-unknown-preset"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "--coordinator", "127.0.0.1:1"],
                 ["--num-processes", "--process-id"], id="incomplete-multihost-flags"),
    pytest.param(["train", *SMOKE, "--workdir", "{w}", "mesh.fsdp=3"], ["mesh.fsdp=3"],
                 id="mesh-larger-than-devices"),
    pytest.param(["train", "games", "--preset", "smoke", "--workdir", "{w}"],
                 ["games", "no training run", "jaxpapers reproduce games"],
                 id="train-experiment-without-training"),
    pytest.param(["train", "sparge_attention2", "--preset", "smoke", "--stage", "pupil",
                  "--workdir", "{w}"], ["unknown stage 'pupil'", "teacher, fm_finetune, student"],
                 id="train-unknown-stage"),
    pytest.param(["train", *SMOKE, "--stage", "teacher", "--workdir", "{w}"],
                 ["unknown stage 'teacher'", "modular_addition", "train"],
                 id="train-stage-of-a-single-stage-experiment"),
    pytest.param(["reproduce", "modular_addition", "--preset", "smoke", "--out", "{w}", "lr=fast"],
                 ["lr=", "fast", "float"], id="reproduce-wrong-type-override"),
    pytest.param(["reproduce", "all", "--preset", "smoke", "--out", "{w}", "bogus.field=1"],
                 ["the overrides do not fit experiment", "unknown config field 'bogus.field'",
                  "nothing was run"],
                 id="reproduce-all-unknown-field"),
    pytest.param(["reproduce", "all", "--preset", "smoke", "--out", "{w}", "train.seed=1"],
                 ["the overrides do not fit experiment", "train.seed"],
                 id="reproduce-all-field-unknown-to-some"),
    pytest.param(["plan", "unified_latents", "--preset", "paper", "data.tfds_data_dir={w}"],
                 ["TFDS dataset 'imagenet2012'", "not prepared in", "tfds build imagenet2012"],
                 id="plan-tfds-dataset-not-prepared"),
]


@pytest.mark.parametrize("args,hints", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, hints):
  """Bad names, types, values, fields and presets: exit 2, one error line, no workdir created."""
  workdir = tmp_path / "w"
  proc = _jaxpapers(*[a.format(w=workdir) for a in args], cwd=tmp_path)
  _assert_usage_error(proc, *hints)
  assert not workdir.exists(), _snapshot(workdir)
  assert not (tmp_path / "runs").exists()


def test_list_names_each_experiment_with_its_paper_and_stages(tmp_path):
  """`jaxpapers list` shows every experiment with its arXiv id, presets and stages."""
  proc = _jaxpapers("list", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr
  rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
  assert rows["name"][:5] == ["name", "paper", "presets", "stages", "status"]
  assert rows["modular_addition"][1:5] == ["arXiv", "2602.16849", "smoke,small,paper", "train"]
  assert rows["sparge_attention2"][4] == "teacher,fm_finetune,student"
  assert rows["games"][4:6] == ["(no", "training)"]


def test_workdir_is_a_file(tmp_path):
  """--workdir naming a regular file is refused; the file keeps its bytes."""
  path = tmp_path / "notes.txt"
  path.write_bytes(b"my notes\n")
  _assert_usage_error(_jaxpapers(*_train_args(path), cwd=tmp_path), str(path), "file")
  assert path.read_bytes() == b"my notes\n"


def test_workdir_below_a_regular_file(tmp_path):
  """--workdir FILE/sub cannot be created: refused with the reason; the file keeps its bytes."""
  path = tmp_path / "notes.txt"
  path.write_bytes(b"my notes\n")
  before = _snapshot(tmp_path)
  proc = _jaxpapers(*_train_args(path / "sub"), cwd=tmp_path)
  _assert_usage_error(proc, str(path / "sub"), "--workdir")
  assert _snapshot(tmp_path) == before


def test_non_empty_foreign_folder_is_refused_untouched(tmp_path):
  """A non-empty folder without config.json is refused; its files stay as they were."""
  workdir = tmp_path / "thesis"
  (workdir / "chapters").mkdir(parents=True)
  (workdir / "main.tex").write_text("\\documentclass{article}\n")
  (workdir / "chapters" / "one.tex").write_bytes(bytes(range(256)))
  before = _snapshot(workdir)
  proc = _jaxpapers(*_train_args(workdir), cwd=tmp_path)
  _assert_usage_error(proc, str(workdir), "not empty")
  assert _snapshot(workdir) == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_mismatched_config_is_refused_untouched(trained_base, tmp_path):
  """A workdir holding a run of another config is refused, names the change, and is untouched."""
  workdir = _copy_base(trained_base, tmp_path)
  before = _snapshot(workdir)
  proc = _jaxpapers(*_train_args(workdir, "train.steps=300"), cwd=tmp_path)
  _assert_usage_error(proc, str(workdir), "train.steps", "200", "300", "--overwrite")
  assert _snapshot(workdir) == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_overwrite_moves_the_old_run_aside(trained_base, tmp_path):
  """--overwrite with a new config moves the old run to W.old-* intact and names it on stderr."""
  workdir = _copy_base(trained_base, tmp_path)
  old_config = (workdir / "config.json").read_bytes()
  before = _snapshot(workdir)
  proc = _jaxpapers(*_train_args(workdir, "train.steps=100", "--overwrite"), cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "Traceback" not in proc.stderr
  moved = [p for p in tmp_path.iterdir() if p.name.startswith("w.old-")]
  assert len(moved) == 1, sorted(p.name for p in tmp_path.iterdir())
  assert (moved[0] / "config.json").read_bytes() == old_config
  assert _snapshot(moved[0]) == before  # nothing of the old run was deleted or changed
  notes = [line for line in proc.stderr.splitlines() if moved[0].name in line]
  assert notes and notes[0].startswith("jaxpapers: "), proc.stderr
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary["step"] == 100
  assert json.loads((workdir / "summary.json").read_text()) == summary
  assert json.loads((workdir / "config.json").read_text())["config"]["train"]["steps"] == 100


def _damage_all_state_files(checkpoint: Path) -> None:
  for path in (checkpoint / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"\x00garbage\xff" * 7)


def _truncate_array_data(checkpoint: Path) -> None:
  """Empties the array chunks (files in `d/` folders), keeping orbax's metadata intact."""
  chunks = [p for p in (checkpoint / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert chunks
  for path in chunks:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [_damage_all_state_files, _truncate_array_data],
                         ids=["all-state-files", "array-data"])
def test_corrupt_checkpoint_is_refused_untouched(trained_base, tmp_path, damage):
  """A damaged newest checkpoint: exit 2, an error naming it as corrupt, every byte kept."""
  workdir = _copy_base(trained_base, tmp_path)
  damage(workdir / "checkpoints" / "200")
  before = _snapshot(workdir)
  proc = _jaxpapers(*_train_args(workdir), cwd=tmp_path)
  assert proc.returncode == 2, (proc.stdout, proc.stderr)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("jaxpapers: error: ")]
  assert len(errors) == 1, proc.stderr
  first = errors[0]
  assert str(workdir / "checkpoints" / "200") in first and "corrupt" in first, first
  assert proc.stdout == ""
  _assert_usage_error(proc)
  assert _snapshot(workdir) == before


def test_corrupt_checkpoint_error_is_exactly_one_line(trained_base, tmp_path):
  """Damaged array data: the refusal is one clean line every time (3 tries)."""
  workdir = _copy_base(trained_base, tmp_path)
  _truncate_array_data(workdir / "checkpoints" / "200")
  for _ in range(3):
    _assert_usage_error(_jaxpapers(*_train_args(workdir), cwd=tmp_path), "corrupt")


@pytest.mark.parametrize("edit,hint", [
    (lambda meta: {**meta, "experiment": "something_else"}, "something_else"),
    (lambda meta: {**meta, "format": "other.checkpoint/9"}, "not a jaxpapers checkpoint"),
    (lambda meta: None, "not a jaxpapers checkpoint"),
], ids=["other-experiment", "other-format", "unreadable-meta"])
def test_foreign_checkpoint_is_refused_untouched(trained_base, tmp_path, edit, hint):
  """A newest checkpoint of another experiment or format: exit 2, named, every byte kept."""
  workdir = _copy_base(trained_base, tmp_path)
  meta_file = workdir / "checkpoints" / "200" / "meta" / "metadata"
  meta = edit(json.loads(meta_file.read_text()))
  meta_file.write_text("{not json" if meta is None else json.dumps(meta))
  before = _snapshot(workdir)
  proc = _jaxpapers(*_train_args(workdir), cwd=tmp_path)
  _assert_usage_error(proc, str(workdir / "checkpoints" / "200"), hint)
  assert _snapshot(workdir) == before


def test_reproduce_applies_and_records_overrides(tmp_path):
  """`reproduce NAME key=value ...`: the overrides take effect and report.json lists them verbatim."""
  overrides = ["rps_check=false", "algorithms=vad_cfr,cfr_plus,dcfr"]
  proc = _jaxpapers("reproduce", "games", "--preset", "smoke", "--out", tmp_path / "out", *overrides,
                    cwd=tmp_path, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  record = json.loads((tmp_path / "out" / "games" / "report.json").read_text())
  assert record["overrides"] == overrides
  ids = [c["id"] for c in record["claims"]]
  assert ids and not any(i.startswith("hyb_rps_") for i in ids)  # rps_check=false took effect
  assert not (tmp_path / "out" / "games" / "run.lock").exists()


def _live_process() -> subprocess.Popen:
  return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _lock_record(pid: int, host: str | None = None, started: float = 0.0) -> dict:
  """A lock record naming `pid` (on this host with its real start time, unless `host`)."""
  if host is None:
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat[stat.rindex(")") + 2:].split()[19])
    return {"host": socket.gethostname(), "pid": pid, "start_ticks": ticks, "started": started,
            "token": "other-run"}
  return {"host": host, "pid": pid, "started": started, "token": "other-run"}


def test_second_run_on_a_locked_workdir_is_refused_untouched(trained_base, tmp_path):
  """A workdir held by a live process: one line naming its host and pid, exit 2, every byte kept."""
  workdir = _copy_base(trained_base, tmp_path)
  holder = _live_process()
  try:
    (workdir / "run.lock").write_text(json.dumps(_lock_record(holder.pid)))
    before = _snapshot(workdir)
    for args in (_train_args(workdir), _train_args(workdir, "train.steps=300", "--overwrite")):
      proc = _jaxpapers(*args, cwd=tmp_path)
      _assert_usage_error(proc, str(workdir), "in use by", f"process {holder.pid}",
                          f"host {socket.gethostname()}")
      assert _snapshot(workdir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # --overwrite moved nothing
  finally:
    holder.kill()
    holder.wait()


def test_stale_lock_of_another_host_is_taken_over(trained_base, tmp_path):
  """A lock whose heartbeat stopped long ago on another host: taken over with a notice."""
  workdir = _copy_base(trained_base, tmp_path)
  lock = workdir / "run.lock"
  lock.write_text(json.dumps(_lock_record(4242, host="elsewhere.example")))
  os.utime(lock, (1_000_000_000, 1_000_000_000))  # heartbeat in 2001
  proc = _jaxpapers(*_train_args(workdir), cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  notes = [line for line in proc.stderr.splitlines() if "took over the lock" in line]
  assert len(notes) == 1 and "process 4242 on host elsewhere.example" in notes[0], proc.stderr
  assert "already trained to step 200" in proc.stderr  # nothing was retrained
  summary = json.loads(proc.stdout.strip().splitlines()[-1])
  assert summary == json.loads((workdir / "summary.json").read_text())
  assert not lock.exists()


def test_concurrent_train_is_refused_while_the_first_run_goes_on(tmp_path):
  """The issue's scenario: a second `train` on a running workdir is refused; the first is unharmed."""
  workdir = tmp_path / "w"
  args = ["train", *SMOKE, "--workdir", workdir, "train.steps=1000000", "train.checkpoint_every=500",
          "train.eval_every=500", "train.log_every=500"]
  first = subprocess.Popen([sys.executable, "-m", "jaxpapers.cli", *map(str, args)], cwd=tmp_path,
                           env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.monotonic() + 180
    while not (workdir / "metrics.jsonl").exists() and first.poll() is None and time.monotonic() < deadline:
      time.sleep(0.1)
    assert first.poll() is None, first.communicate()
    second = _jaxpapers(*args, cwd=tmp_path)
    assert first.poll() is None, "the first run ended while the second was refused"
    _assert_usage_error(second, str(workdir), f"process {first.pid} on host")
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
  finally:
    if first.poll() is None:
      first.kill()
      first.wait()
  assert first.returncode == 143, err
  assert not (workdir / "run.lock").exists()  # released on the way out of a SIGTERM stop
  steps = [(r["kind"], r["step"]) for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())]
  assert all(n == 1 for n in collections.Counter(steps).values()), steps


def test_reproduce_all_prints_the_total(monkeypatch, capsys, tmp_path):
  """`reproduce all` ends with one line: experiments, claims passed, and the summed wall time."""
  from jaxpapers import cli  # pylint: disable=g-import-not-at-top
  from jaxpapers.core import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top
  names = registry.experiment_names()
  fake = {n: {"passed": i != 0, "wall_seconds": 10.0 * (i + 1),
              "claims": [{"id": "a", "passed": True, "measured": 1.0, "threshold": ">= 1"},
                         {"id": "b", "passed": i != 0, "measured": 0.5, "threshold": ">= 1"}]}
          for i, n in enumerate(names)}
  monkeypatch.setattr(experiment_lib, "reproduce", lambda exp, *a, **k: fake[exp.name])
  assert cli.main(["reproduce", "all", "--preset", "smoke", "--out", str(tmp_path)]) == cli.EXIT_FAILED_CLAIMS
  last = capsys.readouterr().out.strip().splitlines()[-1]
  total = sum(10.0 * (i + 1) for i in range(len(names)))
  assert last == (f"all (smoke): {len(names)} experiments, {2 * len(names) - 1}/{2 * len(names)} "
                  f"claims passed in {total:.0f} s")
