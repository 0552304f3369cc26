"""`jaxpapers bench gpu`: every accelerator check of the experiments in one call (issue 15).

Each experiment contributes its checks through an optional `GPU_CHECKS` in its `run.py` (the
registry finds them; there is no central list): a dict from a check name to a `GpuCheck`, whose
`target` is a `"module:function"` inside the experiment's folder, like `BENCHMARKS`:

  GPU_CHECKS = {"kernel": GpuCheck("gpu_bench:check_kernel", budget_s=30,
                                   description="...")}

The function is called as `fn(dry_run=..., budget_s=...)` and returns a JSON-able dict of its
figures, with an optional `"targets"` entry (name -> `jaxpapers.core.bench.target`): a reference
comparison (a kernel against its pure-jnp reference) or a speed target. `budget_s` is the check's
share of the suite's time (at most what is left of it); a check that loops over cases stops
starting new ones once it is spent. With `dry_run` the check runs at tiny sizes on CPU (Pallas
kernels in interpret mode), so the suite is exercised by the default test suite.

`run` executes the checks one by one in registry order (experiment name, then the order of its
`GPU_CHECKS`) and rewrites `DIR/bench_gpu.json` (`bench_gpu_dry.json` with `dry_run`) after each
check ends, atomically (a temporary file, then a rename), so a run cut short keeps what it
measured. A check that raises is recorded with its error line and the suite goes on; once the
suite's budget (`SUITE_BUDGET_S`, sized so that the whole command finishes in under 6 minutes on
one H200) is spent, the remaining checks are recorded as skipped. The file is a
`jaxpapers.core.bench.bench_record` named "gpu":

  results = {"dry_run", "complete", "suite_budget_s", "wall_s", "order", "pending", "skipped",
             "errors", "checks": {"EXPERIMENT.CHECK": {"status", "seconds", "budget_s",
             "description", "results" | "error" and "where"}}}
  targets = {"EXPERIMENT.CHECK.NAME": each check's targets, "suite.errors": checks that raised
             (<= 0), and off dry runs "suite.wall_s" (<= SUITE_TARGET_S)}

A check's status is "passed" (every target measured and passed), "failed" (a target failed),
"measured" (no target, or one not measured), "error" or "skipped".

Also here: the helpers the kernel checks share (`KernelCase`, `check_kernels`): a Pallas kernel
compiled for real (`interpret=False`, Triton lowering) forward and backward against its
reference on the device; in a dry run, in interpret mode at tiny sizes, plus the real-size
kernels lowered for the `cuda` platform from the CPU host (`jax.jit(f).trace(...).lower(
lowering_platforms=("cuda",))`), which runs Pallas' Triton lowering without a GPU.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.core import bench

NAME = "gpu"
SUITE_BUDGET_S = 330.0  # checks start only while the suite has spent less than this
SUITE_TARGET_S = 360.0  # the "under 6 minutes" for the whole suite
# Custom-call targets of a compiled (not interpreted) Pallas kernel in lowered StableHLO.
KERNEL_CALL_MARKERS = ("__gpu$xla.gpu.triton", "mosaic_gpu")


@dataclasses.dataclass(frozen=True)
class GpuCheck:
  """One check of `jaxpapers bench gpu`, declared in an experiment's `GPU_CHECKS`.

  Attributes:
    target: `"module:function"` inside the experiment's folder (or the function itself); it
      takes `(dry_run: bool, budget_s: float)` and returns a JSON-able dict (optional "targets").
    budget_s: its share of the suite's time on one H200, in seconds.
    description: one line saying what it measures.
  """

  target: str | Callable[..., dict]
  budget_s: float
  description: str = ""


def output_name(dry_run: bool) -> str:
  """The file the suite writes: `bench_gpu.json`, or `bench_gpu_dry.json` for a dry run."""
  return f"bench_{NAME}_dry.json" if dry_run else f"bench_{NAME}.json"


def write_json_atomic(path: Path, record: Mapping[str, Any]) -> None:
  """Writes `record` to `path` through a temporary file in the same folder and a rename."""
  path = Path(path)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(fd, "w") as f:
      f.write(json.dumps(record, indent=2, allow_nan=False) + "\n")
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would stick to the result
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def _load(target: str | Callable[..., dict]) -> Callable[..., dict]:
  if callable(target):
    return target
  module, _, attr = target.partition(":")
  return getattr(importlib.import_module(module), attr)


def _error_line(e: BaseException) -> tuple[str, str]:
  """(one line naming the error, "file:line" of the frame that raised it)."""
  message = str(e).strip().splitlines()
  line = f"{type(e).__name__}: {message[0][:300] if message else ''}".rstrip(": ")
  frames = traceback.extract_tb(e.__traceback__)
  where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
  return line, where


def _status(targets: Mapping[str, Mapping[str, Any]]) -> str:
  verdicts = [t["passed"] for t in targets.values()]
  if any(v is False for v in verdicts):
    return "failed"
  return "passed" if verdicts and all(v is True for v in verdicts) else "measured"


def _record(checks: Mapping[str, GpuCheck], state: dict[str, Any], targets: dict, dry_run: bool,
            start: float, budget_s: float) -> dict[str, Any]:
  wall = time.perf_counter() - start
  suite_targets = dict(targets)
  suite_targets["suite.errors"] = bench.target(len(state["errors"]), "<=", 0)
  if not dry_run:
    suite_targets["suite.wall_s"] = bench.target(wall if state["complete"] else None, "<=",
                                                 SUITE_TARGET_S)
  results = {"dry_run": dry_run, "complete": state["complete"], "suite_budget_s": budget_s,
             "wall_s": wall, "order": list(checks), "pending": state["pending"],
             "skipped": state["skipped"], "errors": state["errors"], "checks": state["checks"]}
  return bench.bench_record(
      NAME, results,
      description="every accelerator check of the experiments' GPU_CHECKS: Pallas kernels "
                  "against their references, GPU benchmarks, training-step MFU",
      config={"dry_run": dry_run, "suite_budget_s": budget_s,
              "budgets_s": {name: c.budget_s for name, c in checks.items()}},
      targets=suite_targets)


def run(out_dir: Path, dry_run: bool, checks: Mapping[str, GpuCheck] | None = None,
        notify: Callable[[str], None] | None = None,
        budget_s: float = SUITE_BUDGET_S) -> dict[str, Any]:
  """Runs the GPU checks one by one; returns the final record (also written to `out_dir`).

  Args:
    out_dir: folder of `bench_gpu.json` (or `bench_gpu_dry.json`); it must exist.
    dry_run: tiny sizes on CPU (interpret mode), see the module docstring.
    checks: "EXPERIMENT.CHECK" -> GpuCheck with a full `module:function` target (default:
      every experiment's, `jaxpapers.core.registry.gpu_checks`).
    notify: called with one line per check as it starts and ends (the CLI prints them).
    budget_s: the suite's time budget; checks that would start later are skipped.

  Returns:
    The record written last (`bench.bench_record` named "gpu").
  """
  if checks is None:
    from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top
    checks = registry.gpu_checks()
  notify = notify or (lambda line: None)
  path = Path(out_dir) / output_name(dry_run)
  start = time.perf_counter()
  state: dict[str, Any] = {"complete": False, "pending": list(checks), "skipped": [],
                           "errors": [], "checks": {}}
  targets: dict[str, Any] = {}
  write_json_atomic(path, _record(checks, state, targets, dry_run, start, budget_s))
  for name, check in checks.items():
    state["pending"].remove(name)
    left = budget_s - (time.perf_counter() - start)
    entry: dict[str, Any] = {"description": check.description, "budget_s": check.budget_s}
    if left <= 0:
      entry.update(status="skipped", seconds=0.0,
                   reason=f"the suite's {budget_s:g} s budget was spent")
      state["skipped"].append(name)
      notify(f"{name}: skipped (budget spent)")
    else:
      notify(f"{name}: running (budget {min(check.budget_s, left):.0f} s)")
      t0 = time.perf_counter()
      try:
        out = dict(_load(check.target)(dry_run=dry_run, budget_s=min(check.budget_s, left)))
        own = out.pop("targets", {}) or {}
        out = bench._jsonable(out)  # pylint: disable=protected-access  # fails here, not at the write
        bad = [k for k, t in own.items() if not isinstance(t, dict) or tuple(t) != bench.TARGET_KEYS]
        if bad:
          raise ValueError(f"targets {bad} are not jaxpapers.core.bench.target(...) records")
        entry.update(status=_status(own), results=out, targets=sorted(own))
        targets.update({f"{name}.{k}": t for k, t in own.items()})
      except Exception as e:  # pylint: disable=broad-except
        line, where = _error_line(e)
        entry.update(status="error", error=line, where=where)
        state["errors"].append(name)
      entry["seconds"] = time.perf_counter() - t0
      over = " (over budget)" if entry["seconds"] > check.budget_s else ""
      notify(f"{name}: {entry['status']} in {entry['seconds']:.1f} s{over}"
             + (f": {entry['error']}" if "error" in entry else ""))
    state["checks"][name] = entry
    write_json_atomic(path, _record(checks, state, targets, dry_run, start, budget_s))
  state["complete"] = True
  record = _record(checks, state, targets, dry_run, start, budget_s)
  write_json_atomic(path, record)
  return record


def table(record: Mapping[str, Any]) -> list[tuple[str, ...]]:
  """Rows of the CLI's table: one per check, then each target."""
  rows = [("check", "status", "seconds", "budget s")]
  for name, entry in record["results"]["checks"].items():
    status = entry["status"] + (f" ({entry['error'][:80]})" if "error" in entry else "")
    rows.append((name, status, f"{entry['seconds']:.1f}", f"{entry['budget_s']:g}"))
  rows.append(("", "", "", ""))
  rows.append(("target", "value", "bound", "verdict"))
  for name, t in record["targets"].items():
    value = "not measured" if t["value"] is None else f"{t['value']:.4g}"
    rows.append((name, value, t["target"], {True: "pass", False: "FAIL", None: "-"}[t["passed"]]))
  return rows


# ---------------------------------------------------------------------------
# Kernel checks: a Pallas kernel against its pure-jnp reference.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KernelCase:
  """One comparison of a Pallas kernel with its reference, forward and backward.

  Attributes:
    kernel: `interpret -> f(*args)`, the public op with its Pallas path.
    reference: `f(*args)`, the pure-jnp reference (run in float32 at highest precision).
    args: the inputs; the first `len(grad_names)` are differentiated.
    grad_names: names of the differentiated inputs ("q", "k", ...).
    tolerance: the largest `max|x - ref| / max|ref|` allowed over the output and gradients.
    kernels: `pallas_call`s in the forward + backward program (3 for a forward and two
      backward kernels), the count a real lowering must show.
  """

  kernel: Callable[[bool], Callable[..., jax.Array]]
  reference: Callable[..., jax.Array]
  args: tuple
  grad_names: tuple[str, ...]
  tolerance: float
  kernels: int


def _upcast(x: Any) -> Any:
  dtype = getattr(x, "dtype", None)
  return x.astype(jnp.float32) if dtype is not None and jnp.issubdtype(dtype, jnp.floating) else x


def _with_grads(fn: Callable, n: int) -> Callable:
  """`(w, *args) -> (fn(*args), gradients of sum(fn(*args) * w) w.r.t. the first n args)`: the
  forward and backward in one program (the forward kernel runs once, as in training)."""
  def both(w, *args):
    out, pullback = jax.vjp(lambda *a: fn(*a, *args[n:]).astype(jnp.float32), *args[:n])
    return out, pullback(w)
  return both


def _rel_error(x: jax.Array, ref: jax.Array) -> float:
  x, ref = np.asarray(x, np.float32), np.asarray(ref, np.float32)
  scale = float(np.max(np.abs(ref)))
  return float(np.max(np.abs(x - ref))) / (scale if scale > 0 else 1.0)


def kernel_calls(lowered_text: str) -> int:
  """Compiled Pallas kernels (Triton or Mosaic GPU custom calls) in lowered StableHLO text."""
  return sum(lowered_text.count(marker) for marker in KERNEL_CALL_MARKERS)


def compare(case: KernelCase, interpret: bool) -> dict[str, Any]:
  """Runs `case` on the default device: relative errors of output and gradients, compile time.

  Returns:
    {"max_rel_error": {"out": e, "dq": e, ...}, "worst": max of them, "tolerance", "dtype",
     "shape", "compile_s" (the kernel's forward + backward program), "kernel_calls" (Pallas
     calls in it; 0 in interpret mode)}.
  """
  n = len(case.grad_names)
  out = jax.eval_shape(case.kernel(interpret), *case.args)
  w = jax.random.normal(jax.random.key(0), out.shape, jnp.float32)
  t0 = time.perf_counter()
  lowered = jax.jit(_with_grads(case.kernel(interpret), n)).lower(w, *case.args)
  calls = kernel_calls(lowered.as_text())
  got_out, got_grads = lowered.compile()(w, *case.args)
  compile_s = time.perf_counter() - t0
  with jax.default_matmul_precision("highest"):
    want_out, want_grads = jax.jit(_with_grads(case.reference, n))(
        w, *(_upcast(a) for a in case.args))
  names = ("out", *(f"d{a}" for a in case.grad_names))
  errors = {name: _rel_error(g, r)
            for name, g, r in zip(names, (got_out, *got_grads), (want_out, *want_grads))}
  return {"max_rel_error": errors, "worst": max(errors.values()), "tolerance": case.tolerance,
          "dtype": str(case.args[0].dtype), "shape": list(case.args[0].shape),
          "compile_s": compile_s, "kernel_calls": calls}


def lower_for_cuda(case: KernelCase) -> dict[str, Any]:
  """Lowers `case`'s compiled (interpret=False) forward + backward for `cuda` from this host.

  Returns:
    {"kernel_calls": Triton/Mosaic custom calls in the lowered program, "lower_s"}, or
    {"error": line, "lower_s"} when this jax cannot lower it here.
  """
  fn = case.kernel(False)
  shapes = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in case.args)
  out = jax.eval_shape(fn, *shapes)
  w = jax.ShapeDtypeStruct(out.shape, jnp.float32)
  t0 = time.perf_counter()
  try:
    lowered = jax.jit(_with_grads(fn, len(case.grad_names))).trace(w, *shapes).lower(
        lowering_platforms=("cuda",))
    calls = kernel_calls(lowered.as_text())
  except Exception as e:  # pylint: disable=broad-except
    return {"error": _error_line(e)[0], "lower_s": time.perf_counter() - t0}
  return {"kernel_calls": calls, "lower_s": time.perf_counter() - t0}


def check_kernels(gpu_cases: Mapping[str, KernelCase], cpu_cases: Mapping[str, KernelCase],
                  dry_run: bool) -> dict[str, Any]:
  """A kernel check's output: each case against its reference, with targets.

  On the GPU every case of `gpu_cases` runs compiled (`interpret=False`): targets
  `CASE.max_rel_error <= tolerance` and `CASE.kernel_calls >= kernels` (the lowered program
  holds the real kernels). In a dry run `cpu_cases` run in interpret mode (the error targets),
  and `gpu_cases` are lowered for `cuda` from this host (`CASE.cuda_kernel_calls >= kernels`;
  not measured, with the error recorded, where this jax cannot lower them off a GPU).
  """
  out: dict[str, Any] = {"interpret": dry_run, "cases": {}, "cuda_lowering": {}}
  targets: dict[str, Any] = {}
  for name, case in (cpu_cases if dry_run else gpu_cases).items():
    result = compare(case, interpret=dry_run)
    out["cases"][name] = result
    targets[f"{name}.max_rel_error"] = bench.target(result["worst"], "<=", case.tolerance)
    if not dry_run:
      targets[f"{name}.kernel_calls"] = bench.target(result["kernel_calls"], ">=", case.kernels)
  if dry_run:
    for name, case in gpu_cases.items():
      lowered = lower_for_cuda(case)
      out["cuda_lowering"][name] = lowered
      targets[f"{name}.cuda_kernel_calls"] = bench.target(lowered.get("kernel_calls"), ">=",
                                                          case.kernels)
  out["targets"] = targets
  return out
