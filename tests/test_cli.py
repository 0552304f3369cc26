"""End-to-end tests of the `jaxpapers` command: bad input, workdir rules, checkpoint refusal.

Every test runs the CLI in a subprocess (one fake CPU device) in its own tmp_path. The contract
(ARCHITECTURE.md section 3): bad input prints one line `jaxpapers: error: ...` on stderr, exits
with code 2, shows no traceback, and loses or overwrites nothing already saved.
"""

import hashlib
import json
import shutil
import subprocess
import sys
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
]


@pytest.mark.parametrize("args,hints", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, hints):
  """Bad names, types, values, fields and presets: exit 2, one error line, no workdir created."""
  workdir = tmp_path / "w"
  proc = _jaxpapers(*[a.format(w=workdir) for a in args], cwd=tmp_path)
  _assert_usage_error(proc, *hints)
  assert not workdir.exists(), _snapshot(workdir)
  assert not (tmp_path / "runs").exists()


def test_list_names_modular_addition_and_its_paper(tmp_path):
  """`jaxpapers list` shows the experiment with its arXiv id."""
  proc = _jaxpapers("list", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert "modular_addition" in proc.stdout
  assert "2602.16849" in proc.stdout
  assert "Traceback" not in proc.stderr


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
  """Damaged array data: the refusal is one clean line every time (up to 8 tries)."""
  workdir = _copy_base(trained_base, tmp_path)
  _truncate_array_data(workdir / "checkpoints" / "200")
  for _ in range(8):
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
