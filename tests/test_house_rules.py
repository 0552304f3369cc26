"""House rules (ARCHITECTURE.md sections 1 and 4), enforced on the code as it is.

- Every discovered experiment's `smoke` preset passes and writes report.json, report.md and its
  plots (one test, parametrized over the registry; papers' own checks of their smoke results
  read the same run through the `smoke_report` fixture of conftest.py).
- Papers never import each other (absolute `jaxpapers.experiments.<other>` or relative `..other`),
  and never the top-level name `experiments`, which is not installed.
- Library code (`jaxpapers/`, `kernels_pallas/`) has no prints and no progress bars; the CLI
  (`jaxpapers/cli.py`) and the experiments own the terminal.
- Every experiment folder has README.md, config.py, run.py (and the __init__.py that setup.py's
  `find_packages` needs to install it).

The static rules parse the source with `ast`; each violation names the file and line. Each rule
is also run on a small tree that breaks it, so a rule that silently stops matching fails too.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import jax
import pytest

from jaxpapers.core import registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "jaxpapers.experiments"
REQUIRED_FILES = ("README.md", "config.py", "run.py", "__init__.py")
TERMINAL_OWNERS = ("jaxpapers/cli.py",)
PROGRESS_MODULES = ("tqdm", "rich", "progressbar", "alive_progress", "enlighten")
REPORT_KEYS = {"experiment", "paper", "preset", "passed", "overrides", "claims", "wall_seconds",
               "backend", "devices", "jax_version"}
CLAIM_KEYS = {"id", "statement", "paper_value", "measured", "threshold", "passed"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- the rules, as functions of a tree


def _python_files(folder: Path):
  return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _parse(path: Path, root: Path) -> ast.Module:
  return ast.parse(path.read_text(), filename=str(path.relative_to(root)))


def experiment_folders(experiments_root: Path) -> list[Path]:
  """The folders of `experiments/` that are (or are meant to be) experiments."""
  return sorted(p for p in experiments_root.iterdir()
                if p.is_dir() and p.name.isidentifier() and not p.name.startswith("_"))


def _imported_modules(tree: ast.Module, package: list[str]):
  """(line, absolute module name) of every import in `tree`; `package`: the file's package."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, alias.name
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        if node.level - 1 > len(package):
          continue  # beyond the top: Python refuses it anyway
        base = package[:len(package) - (node.level - 1)]
      else:
        base = []
      base = ".".join(base + ([node.module] if node.module else []))
      yield node.lineno, base
      for alias in node.names:
        yield node.lineno, f"{base}.{alias.name}"  # `from pkg import submodule`
    elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
          and isinstance(node.args[0].value, str)
          and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")):
      yield node.lineno, node.args[0].value


def cross_import_violations(root: Path) -> list[str]:
  """Imports, inside `experiments/<a>/`, of another paper's folder or of the name `experiments`."""
  experiments_root = root / "experiments"
  found = []
  for folder in experiment_folders(experiments_root):
    for path in _python_files(folder):
      rel = path.relative_to(root)
      package = [*PACKAGE.split("."), *path.parent.relative_to(experiments_root).parts]
      seen = set()
      for line, module in _imported_modules(_parse(path, root), package):
        parts = module.split(".")
        other = parts[2] if module.startswith(PACKAGE + ".") else None
        if (line, parts[0], other) in seen:
          continue  # `from ..b import x` yields b and b.x: one finding per line
        seen.add((line, parts[0], other))
        if parts[0] == "experiments":
          found.append(f"{rel}:{line}: imports {module!r}: the top-level name `experiments` is not "
                       "installed (papers install as jaxpapers.experiments); import from the own folder "
                       "relatively (`from . import model`)")
        elif other is not None and other != folder.name:
          found.append(f"{rel}:{line}: experiments/{folder.name} imports {module!r} (experiments/"
                       f"{other}); papers never import each other: move the shared piece into jaxpapers/")
  return found


def _is_std_stream_write(func: ast.expr) -> bool:
  return (isinstance(func, ast.Attribute) and func.attr in ("write", "writelines")
          and ast.unparse(func.value) in ("sys.stdout", "sys.stderr"))


def terminal_violations(root: Path, packages=("jaxpapers", "kernels_pallas"),
                        owners=TERMINAL_OWNERS) -> list[str]:
  """print (called or passed on), writes to sys.stdout/stderr and progress-bar imports in library code."""
  found = []
  for package in packages:
    for path in _python_files(root / package):
      rel = path.relative_to(root)
      if rel.as_posix() in owners:
        continue
      for node in ast.walk(_parse(path, root)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name) and node.id == "print" and isinstance(node.ctx, ast.Load):
          found.append(f"{rel}:{line}: print: library code does not print (return values, raise, or "
                       "leave output to the CLI and the experiments)")
        elif isinstance(node, ast.Call) and _is_std_stream_write(node.func):
          found.append(f"{rel}:{line}: {ast.unparse(node.func)}: library code does not write to the terminal")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
          names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
          for name in names:
            if name.split(".")[0] in PROGRESS_MODULES:
              found.append(f"{rel}:{line}: imports {name}: progress bars belong to the CLI "
                           f"({', '.join(owners)}); take a callback instead")
  return found


def missing_file_violations(root: Path) -> list[str]:
  found = []
  for folder in experiment_folders(root / "experiments"):
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
      found.append(f"experiments/{folder.name}/ lacks {', '.join(missing)}: every experiment folder has "
                   f"{', '.join(REQUIRED_FILES)} (setup.py installs only folders with an __init__.py)")
  return found


# ---------------------------------------------------------------- the repository obeys them


def test_experiments_never_import_each_other():
  assert experiment_folders(ROOT / "experiments"), "no experiment folders found"
  violations = cross_import_violations(ROOT)
  assert not violations, "\n".join(violations)


def test_library_code_never_prints_or_shows_progress():
  violations = terminal_violations(ROOT)
  assert not violations, "\n".join(violations)


def test_every_experiment_folder_has_readme_config_and_run():
  violations = missing_file_violations(ROOT)
  assert not violations, "\n".join(violations)
  folders = {p.name for p in experiment_folders(ROOT / "experiments")}
  assert set(registry.experiment_names()) == folders  # each folder is a discovered experiment


# ---------------------------------------------------------------- ...and each rule catches a breach


def _write(root: Path, rel: str, text: str) -> None:
  path = root / rel
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


def test_cross_import_rule_names_file_and_line(tmp_path):
  for name in ("alpha", "beta"):
    for f in REQUIRED_FILES:
      _write(tmp_path, f"experiments/{name}/{f}", "")
  _write(tmp_path, "experiments/alpha/run.py",
         "from . import config\nfrom .config import X\nimport jaxpapers.experiments.alpha.config\n"
         "from ..beta import model\n")
  _write(tmp_path, "experiments/alpha/sub/deep.py",
         "from ... import beta\nfrom jaxpapers.experiments import beta\nimport experiments.alpha\n"
         "import importlib\nm = importlib.import_module('jaxpapers.experiments.beta.run')\n")
  _write(tmp_path, "experiments/beta/model.py", "from jaxpapers.experiments.alpha.run import X\n")
  violations = cross_import_violations(tmp_path)
  located = sorted(v.split(": ")[0] for v in violations)
  assert located == ["experiments/alpha/run.py:4", "experiments/alpha/sub/deep.py:1",
                     "experiments/alpha/sub/deep.py:2", "experiments/alpha/sub/deep.py:3",
                     "experiments/alpha/sub/deep.py:5", "experiments/beta/model.py:1"], violations
  assert any(v.startswith("experiments/alpha/run.py:4: experiments/alpha imports 'jaxpapers.experiments.beta'")
             and "(experiments/beta)" in v for v in violations), violations
  assert any("top-level name `experiments`" in v for v in violations)


def test_terminal_rule_names_file_and_line(tmp_path):
  _write(tmp_path, "jaxpapers/cli.py", "print('the CLI owns the terminal')\n")
  _write(tmp_path, "jaxpapers/core/quiet.py", "def f(x):\n  return x\n")
  _write(tmp_path, "jaxpapers/core/loud.py",
         "import sys\nfrom tqdm import tqdm\n\ndef f(x, log=print):\n  print(x)\n"
         "  sys.stderr.write('x')\n")
  _write(tmp_path, "kernels_pallas/k/ops.py", "import rich.progress\n")
  violations = terminal_violations(tmp_path)
  located = sorted(v.split(": ")[0] for v in violations)
  assert located == ["jaxpapers/core/loud.py:2", "jaxpapers/core/loud.py:4", "jaxpapers/core/loud.py:5",
                     "jaxpapers/core/loud.py:6", "kernels_pallas/k/ops.py:1"], violations


def test_missing_file_rule_names_folder_and_files(tmp_path):
  for f in REQUIRED_FILES:
    _write(tmp_path, f"experiments/complete/{f}", "")
  _write(tmp_path, "experiments/partial/run.py", "")
  (tmp_path / "experiments" / "__pycache__").mkdir()
  assert missing_file_violations(tmp_path) == [
      "experiments/partial/ lacks README.md, config.py, __init__.py: every experiment folder has "
      "README.md, config.py, run.py, __init__.py (setup.py installs only folders with an __init__.py)"]


# ---------------------------------------------------------------- every experiment's smoke preset


def _is_number(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool)


@pytest.mark.parametrize("name", registry.experiment_names())
def test_smoke_preset_passes_and_writes_its_report(name, smoke_report):
  experiment = registry.load_experiment(name)
  run = smoke_report(name)
  record, folder = run.record, run.folder
  failed = [c for c in record["claims"] if not c["passed"]]
  assert record["passed"] and not failed, failed
  # report.json: the schema of ARCHITECTURE.md section 3, and what was run.
  assert json.loads((folder / "report.json").read_text()) == record
  assert set(record) == REPORT_KEYS, set(record) ^ REPORT_KEYS
  assert (record["experiment"], record["paper"], record["preset"]) == (name, experiment.paper, "smoke")
  assert record["overrides"] == run.overrides
  assert (record["backend"], record["devices"], record["jax_version"]) == (
      jax.default_backend(), jax.device_count(), jax.__version__)
  assert _is_number(record["wall_seconds"]) and record["wall_seconds"] > 0
  ids = [c["id"] for c in record["claims"]]
  assert ids and len(set(ids)) == len(ids), ids
  for claim in record["claims"]:
    assert set(claim) == CLAIM_KEYS, claim
    assert isinstance(claim["passed"], bool) and isinstance(claim["threshold"], str), claim
    assert claim["threshold"] and isinstance(claim["statement"], str) and claim["statement"], claim
    measured = claim["measured"]
    assert isinstance(measured, str) or (_is_number(measured) and not math.isnan(measured)), claim
  # report.md: every claim, and every plot it links is a PNG in the folder.
  report_md = (folder / "report.md").read_text()
  assert all(f"| {i} |" in report_md for i in ids)
  plots = [line.split("](")[1].rstrip(")") for line in report_md.splitlines() if line.startswith("![")]
  assert plots, "report.md links no plot"
  for plot in plots:
    assert (folder / plot).read_bytes()[:8] == PNG_MAGIC, plot
  assert sorted(p.name for p in folder.glob("*.png")) == sorted(plots)
