"""One folder per paper; this registry maps CLI names to them (imported lazily)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from jaxpapers.core.errors import UsageError

EXPERIMENTS = {
    "modular_addition": "experiments.modular_addition.run:EXPERIMENT",
    "trinity": "experiments.trinity.run:EXPERIMENT",
    "sparge_attention2": "experiments.sparge_attention2.run:EXPERIMENT",
    "crispedit": "experiments.crispedit.run:EXPERIMENT",
    "two_mamba": "experiments.two_mamba.run:EXPERIMENT",
    "games": "experiments.games.run:EXPERIMENT",
}

BENCHMARKS = {
    "trainer": "experiments.modular_addition.bench:bench_trainer",
    "modular_addition": "experiments.modular_addition.bench_torch:bench_modular_addition",
    "trinity": "experiments.trinity.bench:bench_trinity",
    "sparge_attention2": "experiments.sparge_attention2.bench:bench_sparge_attention2",
    "crispedit": "experiments.crispedit.bench:bench_crispedit",
    "two_mamba": "experiments.two_mamba.bench:bench_two_mamba",
    "games": "experiments.games.bench:bench_games",
}


def _resolve(target: str) -> Any:
  module, _, attr = target.partition(":")
  return getattr(importlib.import_module(module), attr)


def load_experiment(name: str):
  """The `Experiment` registered as `name`."""
  if name not in EXPERIMENTS:
    raise UsageError(f"unknown experiment {name!r}; run `jaxpapers list` (known: {', '.join(EXPERIMENTS)})")
  return _resolve(EXPERIMENTS[name])


def load_benchmark(name: str) -> Callable[..., dict]:
  """The benchmark function registered as `name`: `fn() -> (rows, record)`."""
  if name not in BENCHMARKS:
    raise UsageError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
  return _resolve(BENCHMARKS[name])
