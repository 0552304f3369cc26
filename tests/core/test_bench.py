"""jaxpapers.core.bench: the timing protocol, the environment record, the shared bench_*.json
schema, and every registered benchmark's record at its smoke size (SMOKE_KWARGS)."""

from __future__ import annotations

import functools
import importlib
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import cli
from jaxpapers.core import bench, registry
from jaxpapers.core.errors import UsageError

SLEEP = 0.02


class _Lazy:
  """An output whose `block_until_ready` takes SLEEP seconds, like an array still computing."""

  def __init__(self):
    self.blocked = False

  def block_until_ready(self):
    time.sleep(SLEEP)
    self.blocked = True
    return self


def test_time_fn_measures_seconds_per_call_of_a_known_sleep():
  calls = []

  def fn(x):
    calls.append(x)
    time.sleep(SLEEP)
    return x

  timing = bench.time_fn(fn, 1, warmup=2, repeats=3, number=2)
  assert len(calls) == 1 + 2 + 3 * 2  # first call (its compile), warm-up, repeats x number
  assert len(timing.all) == 3 and (timing.number, timing.warmup) == (2, 2)
  assert timing.min <= timing.median <= timing.max
  assert SLEEP <= timing.min and timing.max < SLEEP + 0.5  # per call, not per repeat of 2
  assert timing.compile_seconds >= SLEEP  # without jit, the first call stands for compilation
  np.testing.assert_allclose(timing.rate(10.0), 10.0 / timing.median)
  assert timing.rates() == [1 / t for t in timing.all]
  as_dict = timing.to_dict()
  assert as_dict["median_s"] == timing.median and as_dict["all_s"] == list(timing.all)


def test_time_fn_blocks_on_the_output_inside_the_timer():
  out = _Lazy()
  timing = bench.time_fn(lambda: out, warmup=0, repeats=3)
  assert out.blocked and timing.min >= SLEEP  # the fn returns at once; blocking is timed


def test_compilation_is_kept_out_of_the_statistics():
  def heavy(x):  # slow to compile (a long unrolled chain), fast to run
    for i in range(300):
      x = jnp.sin(x) * (1.0 + 1e-3 * i)
    return x

  timing = bench.time_fn(jax.jit(heavy), jnp.ones(8), warmup=1, repeats=5)
  assert timing.compile_seconds > 10 * timing.median, timing
  calls = []
  timing = bench.time_fn(lambda: calls.append("run"), warmup=1, repeats=2,
                         precompile=lambda: calls.append("compile"))
  assert calls == ["compile", "run", "run", "run"]  # precompile replaces the first call


def test_min_repeat_seconds_grows_the_calls_per_repeat():
  timing = bench.time_fn(time.sleep, SLEEP, warmup=0, repeats=1, min_repeat_seconds=5 * SLEEP)
  assert 2 <= timing.number <= 6  # 5 unless sleeps overshoot on a loaded machine
  assert bench.time_fn(time.sleep, SLEEP, warmup=0, repeats=1, number=2,
                       min_repeat_seconds=0.0).number == 2  # never below `number`


def test_time_interleaved_runs_the_cases_round_robin():
  order = []
  timings = bench.time_interleaved(
      {"a": lambda: order.append("a"), "b": bench.Case(order.append, ("b",), lambda: None)},
      warmup=1, repeats=3)
  assert set(timings) == {"a", "b"}
  # a: first call + warm-up; b: its precompile then a warm-up; then a, b alternating.
  assert order == ["a", "a", "b"] + ["a", "b"] * 3
  with pytest.raises(ValueError, match="repeats >= 1"):
    bench.time_interleaved({"a": lambda: None}, repeats=0)


def test_environment_record(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  env = bench.environment()
  assert tuple(env) == bench.ENVIRONMENT_KEYS
  assert env["backend"] == jax.default_backend() == "cpu"
  assert env["device_count"] == jax.device_count() == 8  # tests/conftest.py's fake devices
  assert env["device_kind"] == jax.devices()[0].device_kind
  assert env["jax_version"] == jax.__version__ and env["jaxlib_version"]
  assert env["xla_flags"] == "--xla_force_host_platform_device_count=8"
  assert env["cpu_count"] >= 1 and env["time_utc"].endswith("+00:00")


def test_targets_and_the_verdict_of_a_record():
  assert bench.target(4.0, ">=", 5) == {"value": 4.0, "target": ">= 5", "passed": False}
  assert bench.target(0.5, "<", 1)["passed"] is True
  assert bench.target(None, "<=", 1)["passed"] is None
  assert bench.target(float("nan"), "<=", 1) == {"value": None, "target": "<= 1", "passed": None}
  with pytest.raises(ValueError, match="unknown comparison"):
    bench.target(1.0, "==", 1)
  ok, bad, unmeasured = bench.target(1, "<=", 2), bench.target(3, "<=", 2), bench.target(None, "<=", 2)
  assert bench.bench_record("x", {})["passed"] is None  # no targets
  assert bench.bench_record("x", {}, targets={"a": ok})["passed"] is True
  assert bench.bench_record("x", {}, targets={"a": ok, "b": bad})["passed"] is False
  assert bench.bench_record("x", {}, targets={"a": ok, "b": unmeasured})["passed"] is None
  assert bench.bench_record("x", {}, targets={"b": bad, "c": unmeasured})["passed"] is False


def test_bench_record_is_strict_json_in_the_shared_schema():
  timing = bench.Timing.from_times([0.2, 0.1, 0.3], 1.5, 1, 1)
  record = bench.bench_record(
      "demo", {"rate": np.float32(2.5), "n": np.int64(3), "ok": np.bool_(True), "gap": float("nan"),
               "curve": np.arange(3), "pair": (1, 2), "timing": timing},
      description="a demo", config={"size": 4})
  assert tuple(record) == bench.RECORD_KEYS
  assert record["results"] == {"rate": 2.5, "n": 3, "ok": True, "gap": None, "curve": [0, 1, 2],
                               "pair": [1, 2], "timing": timing.to_dict()}
  assert record["results"]["timing"]["median_s"] == 0.2
  assert json.loads(json.dumps(record, allow_nan=False)) == record
  bench.check_record(record, "demo")
  with pytest.raises(ValueError, match="not the benchmark's name"):
    bench.check_record(record, "other")
  with pytest.raises(ValueError, match="keys"):
    bench.check_record({k: v for k, v in record.items() if k != "environment"})
  with pytest.raises(ValueError, match="strict JSON"):
    bench.check_record({**record, "results": {"x": float("inf")}})
  with pytest.raises(TypeError, match="JSON values"):
    bench.bench_record("demo", {"x": object()})


def _smoke_kwargs(target: str) -> tuple:
  module_name, _, function = target.partition(":")
  module = importlib.import_module(module_name)
  kwargs = getattr(module, "SMOKE_KWARGS", {}).get(function)
  assert kwargs is not None, (f"{module_name} defines no SMOKE_KWARGS[{function!r}]: the keyword "
                              "arguments of a quick run of the benchmark (see jaxpapers.core.bench)")
  return getattr(module, function), kwargs


BENCHMARKS = sorted(name for name, target in registry.benchmarks().items() if target is not None)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_registered_benchmark_writes_the_shared_schema(name):
  fn, kwargs = _smoke_kwargs(registry.benchmarks()[name])
  try:
    rows, record = fn(**kwargs)
  except UsageError as e:  # an optional comparison library (e.g. torch) is not installed
    if "pip install" not in str(e):
      raise
    pytest.skip(str(e))
  bench.check_record(record, name)
  assert record["environment"]["backend"] == jax.default_backend()
  assert record["passed"] in (True, False, None) and record["results"]
  assert rows and all(len(row) == len(rows[0]) for row in rows)  # a rectangular table


def test_trainer_benchmark_is_core_and_the_cli_writes_its_record(tmp_path, monkeypatch, capsys):
  assert registry.benchmarks()["trainer"] == "jaxpapers.core.bench_trainer:bench_trainer"
  fn, kwargs = _smoke_kwargs(registry.benchmarks()["trainer"])
  monkeypatch.setattr(registry, "load_benchmark", lambda name: functools.partial(fn, **kwargs))
  assert cli.main(["bench", "trainer", "--out", str(tmp_path)]) == 0
  record = json.loads((tmp_path / "bench_trainer.json").read_text())
  bench.check_record(record, "trainer")
  results = record["results"]
  assert results["bare_steps_per_second"] > 0 and results["shared_steps_per_second"] > 0
  np.testing.assert_allclose(results["overhead_percent"], 100 * (
      results["bare_steps_per_second"] / results["shared_steps_per_second"] - 1))
  assert record["targets"]["overhead_percent"]["target"] == "< 5"
  rates = results["dispatch_steps_per_second"]  # the smoke size times K in (1, 4)
  assert list(rates) == ["1", "4"] and rates["1"] == results["shared_steps_per_second"]
  np.testing.assert_allclose(results["dispatch_speedup_over_bare"]["4"],
                             rates["4"] / results["bare_steps_per_second"])
  best = max(rates, key=rates.get)
  assert results["best_steps_per_dispatch"] == int(best)
  np.testing.assert_allclose(results["best_speedup_over_bare"], rates[best] / results["bare_steps_per_second"])
  assert record["targets"]["best_speedup_over_bare"]["target"] == ">= 2"
  out = capsys.readouterr().out
  assert "jaxpapers Trainer" in out and "K=4" in out


@pytest.mark.parametrize("taken", ["trainer", "gpu", "games"])
def test_a_benchmark_name_claimed_twice_is_refused(monkeypatch, taken):
  """`trainer` and `gpu` are core's; an experiment's BENCHMARKS may not take them, nor another's."""
  real = registry._run_module  # pylint: disable=protected-access
  victim = next(n for n in registry.experiment_names() if n != "games")

  class _Run:
    BENCHMARKS = {taken: "bench:bench_x"}

  monkeypatch.setattr(registry, "_run_module", lambda name: _Run if name == victim else real(name))
  owner = "core" if taken in registry.CORE_BENCHMARKS else "experiments/games"
  with pytest.raises(UsageError, match=f"{taken!r} is claimed by") as error:
    registry.load_benchmark(taken)
  assert owner in str(error.value) and f"experiments/{victim}" in str(error.value)
