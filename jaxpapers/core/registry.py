"""The experiment registry, discovered from the folders of `jaxpapers.experiments`.

Every folder `experiments/<name>/` whose `run.py` defines `EXPERIMENT` is the experiment `<name>`
(the folder name is the registry name). A `run.py` may also define `BENCHMARKS`, a dict from
`jaxpapers bench` names to `"module:function"` targets inside the folder (for example
`{"trinity": "bench:bench_trinity"}`); each function returns `(table rows, JSON record)`, the
record built by `jaxpapers.core.bench.bench_record`, and its module defines `SMOKE_KWARGS`
(function name -> keyword arguments of a quick run, which tests/core/test_bench.py runs).
The names in `CORE_BENCHMARKS` measure the library itself and are reserved. A `run.py` may also
define `GPU_CHECKS`, a dict from check names to `jaxpapers.core.bench_gpu.GpuCheck`s (targets
inside the folder as well), which `jaxpapers bench gpu` runs (`gpu_checks`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from typing import Any, Callable

from jaxpapers.core.errors import UsageError

PACKAGE = "jaxpapers.experiments"
CORE_BENCHMARKS = {
    "trainer": "jaxpapers.core.bench_trainer:bench_trainer",  # the shared loop vs a bare jit loop
    "gpu": None,  # the accelerator suite: the CLI runs jaxpapers.core.bench_gpu (GPU_CHECKS)
}


def experiment_names() -> list[str]:
  """Names of the folders under `jaxpapers.experiments` that hold a `run.py`, sorted."""
  package = importlib.import_module(PACKAGE)
  return sorted({entry.name for root in package.__path__ for entry in os.scandir(root)
                 if entry.is_dir() and entry.name.isidentifier()
                 and os.path.isfile(os.path.join(entry.path, "run.py"))})


@functools.cache
def _run_module(name: str):
  return importlib.import_module(f"{PACKAGE}.{name}.run")


def load_experiment(name: str):
  """The `Experiment` of folder `name`.

  Raises:
    UsageError: no such experiment.
  """
  names = experiment_names()
  if name not in names:
    raise UsageError(f"unknown experiment {name!r}; run `jaxpapers list` (known: {', '.join(names)})")
  module = _run_module(name)
  experiment = getattr(module, "EXPERIMENT", None)
  if experiment is None:
    raise UsageError(f"experiments/{name}/run.py defines no EXPERIMENT; add one or remove the folder")
  if experiment.name != name:
    raise UsageError(f"experiments/{name}/run.py names its experiment {experiment.name!r}; "
                     "build it with name=experiment_lib.folder_name(__name__)")
  return experiment


def experiments() -> dict[str, Any]:
  """Every discovered experiment, by name."""
  return {name: load_experiment(name) for name in experiment_names()}


def _benchmark_claims() -> dict[str, list[str | None]]:
  """Benchmark name -> every target that claims it (a copied folder repeats its original's)."""
  found: dict[str, list[str | None]] = {name: [target] for name, target in CORE_BENCHMARKS.items()}
  for name in experiment_names():
    for bench, target in getattr(_run_module(name), "BENCHMARKS", {}).items():
      found.setdefault(bench, []).append(f"{PACKAGE}.{name}.{target}")
  return found


def benchmarks() -> dict[str, str | None]:
  """Every benchmark name -> its `module:function` target (None: handled by the CLI).

  A name that two folders claim maps to the first; running it is refused (`load_benchmark`).
  """
  return {name: targets[0] for name, targets in _benchmark_claims().items()}


def gpu_checks() -> dict[str, Any]:
  """Every experiment's `GPU_CHECKS`, as "EXPERIMENT.CHECK" -> its `GpuCheck` with the full
  `module:function` target, in experiment-name order and each folder's own order."""
  found = {}
  for name in experiment_names():
    for check_name, check in getattr(_run_module(name), "GPU_CHECKS", {}).items():
      target = check.target if callable(check.target) else f"{PACKAGE}.{name}.{check.target}"
      found[f"{name}.{check_name}"] = dataclasses.replace(check, target=target)
  return found


def load_benchmark(name: str) -> Callable[[], tuple[list, dict]]:
  """The benchmark function registered as `name`: `fn() -> (rows, record)`.

  Raises:
    UsageError: no such benchmark, or two folders claim the name.
  """
  claims = _benchmark_claims()
  targets = claims.get(name, [])
  if not targets or targets == [None]:
    runnable = ", ".join(k for k, v in claims.items() if v != [None])
    raise UsageError(f"unknown benchmark {name!r}; choose one of {runnable}")
  if len(targets) > 1:
    owners = ", ".join("core" if t is None or not t.startswith(PACKAGE + ".") else f"experiments/{t.split('.')[2]}"
                       for t in targets)
    raise UsageError(f"benchmark name {name!r} is claimed by {owners}; rename it in the BENCHMARKS "
                     "of all but one (`trainer` and `gpu` are core's)")
  module, _, attr = targets[0].partition(":")
  return getattr(importlib.import_module(module), attr)
