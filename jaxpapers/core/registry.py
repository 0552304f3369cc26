"""The experiment registry, discovered from the folders of `jaxpapers.experiments`.

Every folder `experiments/<name>/` whose `run.py` defines `EXPERIMENT` is the experiment `<name>`
(the folder name is the registry name). A `run.py` may also define `BENCHMARKS`, a dict from
`jaxpapers bench` names to `"module:function"` targets inside the folder (for example
`{"trinity": "bench:bench_trinity"}`); each function returns `(table rows, JSON record)`.
The names in `CORE_BENCHMARKS` measure the library itself and are reserved.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any, Callable

from jaxpapers.core.errors import UsageError

PACKAGE = "jaxpapers.experiments"
CORE_BENCHMARKS = {
    "trainer": "jaxpapers.experiments.modular_addition.bench:bench_trainer",
    "gpu": None,  # the accelerator suite (reserved)
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


def benchmarks() -> dict[str, str | None]:
  """Every benchmark name -> its `module:function` target (None: handled by the CLI)."""
  found: dict[str, str | None] = dict(CORE_BENCHMARKS)
  for name in experiment_names():
    for bench, target in getattr(_run_module(name), "BENCHMARKS", {}).items():
      if bench in found:
        raise UsageError(f"benchmark name {bench!r} of experiments/{name} is taken "
                         f"({'reserved by core' if bench in CORE_BENCHMARKS else 'by another experiment'}); "
                         "rename it in BENCHMARKS")
      found[bench] = f"{PACKAGE}.{name}.{target}"
  return found


def load_benchmark(name: str) -> Callable[[], tuple[list, dict]]:
  """The benchmark function registered as `name`: `fn() -> (rows, record)`."""
  found = benchmarks()
  if name not in found or found[name] is None:
    raise UsageError(f"unknown benchmark {name!r}; choose one of "
                     f"{', '.join(k for k, v in found.items() if v is not None)}")
  module, _, attr = found[name].partition(":")
  return getattr(importlib.import_module(module), attr)
