"""Timing and the shared JSON record of `jaxpapers bench NAME` (ARCHITECTURE.md section 3).

Every benchmark times with `time_fn` (or `time_interleaved`, several functions round-robin) and
returns its JSON as `bench_record(...)`, so all `bench_NAME.json` files share one schema:

  {"benchmark": str, "description": str,
   "environment": {"backend", "device_kind", "device_count", "local_device_count",
                   "process_count", "jax_version", "jaxlib_version", "xla_flags", "python",
                   "platform", "cpu_count", "load_average", "time_utc"},
   "config": {...what was measured: sizes, repeats...},
   "results": {...} or [...],
   "targets": {name: {"value": number | null, "target": "op bound", "passed": bool | null}},
   "passed": bool | null}

`passed` is false when a target failed, true when every target was measured and passed, and null
when there are no targets or one could not be measured. Non-finite numbers become null, so the
file is strict JSON.

Timing protocol: compilation is kept out of the statistics (`lower().compile()` for a jitted
function, a given `precompile` call, or else the first call), then `warmup` untimed calls, then
`repeats` timed repeats of `number` calls each, every repeat ending in `jax.block_until_ready`
on the last output. Times are seconds per call.

A benchmark is a function `bench_x(**sizes) -> (table rows, record)` whose defaults are its full
size; its module's `SMOKE_KWARGS = {"bench_x": {...}}` gives a quick run of the same logic, which
the test suite runs to check the record (register it in `run.py`'s `BENCHMARKS`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

ENVIRONMENT_KEYS = ("backend", "device_kind", "device_count", "local_device_count",
                    "process_count", "jax_version", "jaxlib_version", "xla_flags", "python",
                    "platform", "cpu_count", "load_average", "time_utc")
RECORD_KEYS = ("benchmark", "description", "environment", "config", "results", "targets",
               "passed")
TARGET_KEYS = ("value", "target", "passed")
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, "<": lambda a, b: a < b,
}


@dataclasses.dataclass(frozen=True)
class Timing:
  """Seconds per call of one timed function.

  Attributes:
    min: fastest repeat (the least disturbed by other work on the machine).
    median: median repeat.
    max: slowest repeat.
    all: every repeat, in order.
    compile_seconds: `lower().compile()` of a jitted function, or the `precompile` call, or else
      the first call (compilation plus one run).
    number: calls per repeat.
    warmup: untimed calls after compilation.
  """

  min: float
  median: float
  max: float
  all: tuple[float, ...]
  compile_seconds: float
  number: int
  warmup: int

  @classmethod
  def from_times(cls, times: list[float], compile_seconds: float, number: int,
                 warmup: int) -> Timing:
    if not times:
      raise ValueError("a Timing needs at least one repeat")
    return cls(min(times), statistics.median(times), max(times), tuple(times),
               compile_seconds, number, warmup)

  def rate(self, units: float = 1.0) -> float:
    """`units` per second at the median (e.g. steps or tokens per call)."""
    return units / self.median

  def rates(self, units: float = 1.0) -> list[float]:
    """`units` per second of every repeat."""
    return [units / t for t in self.all]

  def to_dict(self) -> dict[str, Any]:
    """JSON-ready: `median_s`, `min_s`, `max_s`, `all_s`, `compile_s`, `number`, `warmup`."""
    return {"median_s": self.median, "min_s": self.min, "max_s": self.max, "all_s": list(self.all),
            "compile_s": self.compile_seconds, "number": self.number, "warmup": self.warmup}


@dataclasses.dataclass(frozen=True)
class Case:
  """One function to time: `fn(*args)`; `precompile()`, when given, compiles what fn runs."""

  fn: Callable[..., Any]
  args: tuple = ()
  precompile: Callable[[], Any] | None = None


def _prepare(case: Case) -> tuple[Callable[[], Any], float]:
  """A zero-argument call of the case and the seconds its compilation took."""
  start = time.perf_counter()
  if case.precompile is not None:
    jax.block_until_ready(case.precompile())
    return (lambda: case.fn(*case.args)), time.perf_counter() - start
  if hasattr(case.fn, "lower"):  # jax.jit: compile without running
    compiled = case.fn.lower(*case.args).compile()
    return (lambda: compiled(*case.args)), time.perf_counter() - start
  jax.block_until_ready(case.fn(*case.args))
  return (lambda: case.fn(*case.args)), time.perf_counter() - start


def _repeat(call: Callable[[], Any], number: int) -> float:
  """Seconds per call of `number` calls, blocking on the last output."""
  start = time.perf_counter()
  out = None
  for _ in range(number):
    out = call()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / number


def time_interleaved(cases: Mapping[Any, Callable[[], Any] | Case], *, warmup: int = 1,
                     repeats: int = 5, number: int = 1,
                     min_repeat_seconds: float | None = None) -> dict[Any, Timing]:
  """Times several functions round-robin, so load changes on a shared machine hit all alike.

  Each case is compiled first (see `Case` and the module docstring), then gets `warmup` untimed
  calls; then every repeat times `number` calls of each case in turn.

  Args:
    cases: name (any hashable) -> a zero-argument callable or a `Case`. A function must not donate its
      arguments (time a closure that carries its own state instead).
    warmup: untimed calls of each case after compilation.
    repeats: timed repeats (odd counts give a median that is one of the repeats).
    number: calls per repeat (their mean is the repeat's time).
    min_repeat_seconds: when set, each case's calls per repeat grow to
      `max(number, round(min_repeat_seconds / t))`, t one call timed after the warm-up.

  Returns:
    name -> Timing, in seconds per call.
  """
  if repeats < 1 or number < 1 or warmup < 0:
    raise ValueError(f"need repeats >= 1, number >= 1, warmup >= 0; got {repeats}, {number}, {warmup}")
  prepared: dict[Any, tuple[Callable[[], Any], float, int]] = {}
  for name, case in cases.items():
    case = case if isinstance(case, Case) else Case(case)
    call, compile_seconds = _prepare(case)
    for _ in range(warmup):
      jax.block_until_ready(call())
    n = number
    if min_repeat_seconds is not None:
      n = max(number, round(min_repeat_seconds / _repeat(call, 1)))
    prepared[name] = (call, compile_seconds, n)
  times: dict[Any, list[float]] = {name: [] for name in prepared}
  for _ in range(repeats):
    for name, (call, _, n) in prepared.items():
      times[name].append(_repeat(call, n))
  return {name: Timing.from_times(times[name], compile_seconds, n, warmup)
          for name, (_, compile_seconds, n) in prepared.items()}


def time_fn(fn: Callable[..., Any], *args: Any, warmup: int = 1, repeats: int = 5, number: int = 1,
            min_repeat_seconds: float | None = None,
            precompile: Callable[[], Any] | None = None) -> Timing:
  """Times `fn(*args)`: compilation apart, `warmup` calls, `repeats` x `number` timed calls.

  Args:
    fn: the function; a `jax.jit` function is compiled with `lower(*args).compile()` and its
      executable is timed. It must not donate its arguments.
    *args: its positional arguments.
    warmup: untimed calls after compilation.
    repeats: timed repeats.
    number: calls per repeat.
    min_repeat_seconds: grow `number` so that a repeat lasts about this long.
    precompile: a cheaper call that compiles what `fn` runs (e.g. one iteration of a loop whose
      trip count is an argument); timed as `compile_seconds` instead of a first call.

  Returns:
    Seconds per call.
  """
  return time_interleaved({"fn": Case(fn, args, precompile)}, warmup=warmup, repeats=repeats,
                          number=number, min_repeat_seconds=min_repeat_seconds)["fn"]


def _jaxlib_version() -> str | None:
  try:
    import jaxlib  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return getattr(jaxlib, "__version__", None)


def environment() -> dict[str, Any]:
  """Where a benchmark ran: backend, devices, versions, XLA flags, host (keys `ENVIRONMENT_KEYS`)."""
  devices = jax.devices()
  try:
    load = [round(x, 2) for x in os.getloadavg()]
  except OSError:  # not available on this platform
    load = None
  return {
      "backend": jax.default_backend(),
      "device_kind": devices[0].device_kind,
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
      "jax_version": jax.__version__,
      "jaxlib_version": _jaxlib_version(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "python": platform.python_version(),
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "load_average": load,
      "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def target(value: float | None, op: str, bound: float) -> dict[str, Any]:
  """One target of a benchmark: {"value", "target": "op bound", "passed"} (None if unmeasured)."""
  if op not in _OPS:
    raise ValueError(f"unknown comparison {op!r}; choose one of {', '.join(_OPS)}")
  measured = value is not None and math.isfinite(float(value))
  return {"value": float(value) if measured else None, "target": f"{op} {bound:g}",
          "passed": bool(_OPS[op](float(value), bound)) if measured else None}


def _jsonable(x: Any) -> Any:
  """Plain JSON values: numpy scalars and arrays unwrapped, tuples as lists, NaN/inf as None."""
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, Timing):
    return _jsonable(x.to_dict())
  if isinstance(x, (np.ndarray, jax.Array)):
    return _jsonable(np.asarray(x).tolist())
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, (int, np.integer)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  if x is None or isinstance(x, str):
    return x
  raise TypeError(f"a benchmark record holds a {type(x).__name__} ({x!r:.60}); use JSON values")


def bench_record(name: str, results: Any, *, description: str = "",
                 config: Mapping[str, Any] | None = None,
                 targets: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
  """The JSON record of benchmark `name` (the schema of the module docstring).

  Args:
    name: the `jaxpapers bench` name (the file is `bench_NAME.json`).
    results: the measurements (dict or list; `Timing`s become their `to_dict`).
    description: one line saying what is compared.
    config: the sizes and protocol measured.
    targets: name -> `target(...)`.
  """
  targets = dict(targets or {})
  verdicts = [t["passed"] for t in targets.values()]
  if any(v is False for v in verdicts):
    passed = False
  elif verdicts and all(v is True for v in verdicts):
    passed = True
  else:
    passed = None
  record = {"benchmark": name, "description": description, "environment": environment(),
            "config": dict(config or {}), "results": results, "targets": targets,
            "passed": passed}
  record = _jsonable(record)
  check_record(record)
  return record


def check_record(record: Any, name: str | None = None) -> None:
  """Raises ValueError naming what in `record` breaks the shared schema."""
  if not isinstance(record, dict) or tuple(record) != RECORD_KEYS:
    keys = list(record) if isinstance(record, dict) else type(record).__name__
    raise ValueError(f"a benchmark record has the keys {list(RECORD_KEYS)} in that order; got {keys}")
  if not isinstance(record["benchmark"], str) or (name is not None and record["benchmark"] != name):
    raise ValueError(f"record benchmark {record['benchmark']!r} is not the benchmark's name {name!r}")
  if not isinstance(record["description"], str):
    raise ValueError("record description is not a string")
  env = record["environment"]
  if not isinstance(env, dict) or tuple(env) != ENVIRONMENT_KEYS:
    raise ValueError(f"record environment has the keys {list(ENVIRONMENT_KEYS)}; got "
                     f"{list(env) if isinstance(env, dict) else env!r}")
  if not isinstance(record["config"], dict):
    raise ValueError("record config is not a dict")
  if not isinstance(record["results"], (dict, list)):
    raise ValueError("record results is neither a dict nor a list")
  for key, t in record["targets"].items():
    if not isinstance(t, dict) or tuple(t) != TARGET_KEYS:
      raise ValueError(f"target {key!r} has the keys {list(TARGET_KEYS)}; got {t!r}")
  if record["passed"] not in (True, False, None):
    raise ValueError(f"record passed is {record['passed']!r}, not a bool or None")
  try:
    json.dumps(record, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"record is not strict JSON: {e}") from None
