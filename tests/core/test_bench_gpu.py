"""`jaxpapers bench gpu`: the dry run of every registered GPU check through the CLI (once, shared
by the tests of this module), the refusal without a GPU, and the runner's budget, error and
write-as-you-go rules on stand-in checks."""

from __future__ import annotations

import contextlib
import io
import json
import math
import time

import jax
import numpy as np
import pytest

from jaxpapers import cli
from jaxpapers.core import bench, bench_gpu, registry
from jaxpapers.experiments.trinity import bench_gpu as trinity_gpu

EXPECTED = {"sparge_attention2.kernel", "sparge_attention2.bench", "trinity.mfu",
            "two_mamba.kernel", "two_mamba.bench"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
  """(exit code, record of bench_gpu_dry.json, stdout) of `jaxpapers bench gpu --dry-run`."""
  out = tmp_path_factory.mktemp("gpu_dry")
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    code = cli.main(["bench", "gpu", "--dry-run", "--out", str(out)])
  record = json.loads((out / "bench_gpu_dry.json").read_text())
  assert sorted(p.name for p in out.iterdir()) == ["bench_gpu_dry.json"]  # no temporary file left
  return code, record, stdout.getvalue()


def test_gpu_is_a_core_benchmark_handled_by_the_cli():
  assert registry.benchmarks()["gpu"] is None
  assert set(registry.gpu_checks()) >= EXPECTED
  assert all(isinstance(c, bench_gpu.GpuCheck) and c.budget_s > 0
             for c in registry.gpu_checks().values())
  # The budgets fit the suite's, which leaves the 6 minutes room for start-up and install.
  assert sum(c.budget_s for c in registry.gpu_checks().values()) <= bench_gpu.SUITE_BUDGET_S
  assert bench_gpu.SUITE_BUDGET_S < bench_gpu.SUITE_TARGET_S == 360


def test_dry_run_runs_every_registered_check_in_the_shared_schema(dry_run):
  code, record, stdout = dry_run
  bench.check_record(record, "gpu")
  results = record["results"]
  assert results["dry_run"] is True and results["complete"] is True
  assert set(results["checks"]) == set(registry.gpu_checks()) and results["order"] == list(registry.gpu_checks())
  assert results["pending"] == results["skipped"] == results["errors"] == []
  statuses = {name: c["status"] for name, c in results["checks"].items()}
  assert all(s in ("passed", "measured") for s in statuses.values()), statuses
  assert record["targets"]["suite.errors"] == {"value": 0.0, "target": "<= 0", "passed": True}
  assert record["passed"] is True and code == 0
  assert "suite.errors" in stdout and "bench_gpu_dry.json" in stdout


@pytest.mark.parametrize("name", ["sparge_attention2.kernel", "two_mamba.kernel"])
def test_dry_run_kernels_match_their_references_and_lower_for_cuda(dry_run, name):
  _, record, _ = dry_run
  check = record["results"]["checks"][name]
  assert check["status"] == "passed"
  out = check["results"]
  assert out["interpret"] is True and out["cases"]
  for case, result in out["cases"].items():
    errors = result["max_rel_error"]
    assert {"out", "dq", "dk", "dv"} <= set(errors)
    assert result["worst"] == max(errors.values()) <= result["tolerance"], (case, errors)
    assert record["targets"][f"{name}.{case}.max_rel_error"]["passed"] is True
    assert result["kernel_calls"] == 0  # interpret mode: no compiled kernel in the program
  # The GPU cases' compiled kernels (forward, and two backward kernels) lower for cuda here.
  assert set(out["cuda_lowering"]) and all(
      lowered.get("kernel_calls") == 3 for lowered in out["cuda_lowering"].values()), out["cuda_lowering"]
  assert all(record["targets"][f"{name}.{case}.cuda_kernel_calls"]["passed"] is True
             for case in out["cuda_lowering"])


def test_dry_run_benchmarks_keep_their_speed_targets_unjudged(dry_run):
  _, record, _ = dry_run
  for name in ("sparge_attention2.bench", "two_mamba.bench"):
    out = record["results"]["checks"][name]["results"]
    bench.check_record({"benchmark": "x", "description": "", "environment": record["environment"],
                        **{k: out["record"][k] for k in ("config", "results")},
                        "targets": out["dry_run_targets"], "passed": None})
    assert out["dry_run_targets"]
  judged = sorted(k for k in record["targets"] if ".bench." in k)  # reference comparisons only
  assert judged == ["sparge_attention2.bench.ours_0_vs_dense_max_abs_diff"]
  sparge = record["results"]["checks"]["sparge_attention2.bench"]["results"]["record"]["results"]
  ours = sparge["results"][0]["ours"]
  assert set(ours) == {"0.00", "0.95"} and ours["0.00"]["max_abs_diff_vs_dense"] < 1e-4
  kernels = record["results"]["checks"]["two_mamba.bench"]["results"]["record"]["results"]["kernels"]
  assert {r["impl"] for r in kernels} == {"square", "pallas_flash"}
  assert all("median_s" in r["fwd"] and "median_s" in r["fwd_bwd"] for r in kernels)


def test_dry_run_trinity_step_figures_follow_from_the_timing(dry_run):
  _, record, _ = dry_run
  out = record["results"]["checks"]["trinity.mfu"]["results"]
  tokens = out["tokens_per_step"]
  assert tokens == out["config"]["batch"] * out["config"]["seq"] == 2 * 64
  np.testing.assert_allclose(out["tokens_per_second"], tokens / out["step"]["median_s"])
  assert out["model_flops_per_step"] == 6 * out["params_active"] * tokens
  assert out["param_dtypes"] == ["bfloat16"] and math.isfinite(out["loss_after"])
  assert out["peak_flops"] is None and out["mfu"] is None  # no peak known for a CPU
  assert trinity_gpu.peak_flops("NVIDIA H200") == 989.4e12
  # The GPU configuration's active parameters (the MFU numerator), against the closed form:
  # every parameter but the routed experts a token is not sent to.
  gpu = trinity_gpu.gpu_config(False).model
  params = out["gpu_config"]["params"]
  routed = gpu.num_moe_layers * gpu.num_experts * 3 * gpu.d_model * gpu.expert_width
  assert params["total"] - params["active"] == routed * (gpu.num_experts - gpu.top_k) // gpu.num_experts
  assert out["gpu_config"]["d_model"] == 2048 and out["gpu_config"]["experts"] == 64


def test_bench_gpu_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys):
  assert jax.default_backend() == "cpu"
  assert cli.main(["bench", "gpu", "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "no GPU here" in err and "--dry-run" in err
  assert not (tmp_path / "out").exists()
  assert cli.main(["bench", "trainer", "--dry-run", "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "--dry-run is for `jaxpapers bench gpu` only" in err
  assert not (tmp_path / "out").exists()


def test_runner_writes_after_each_check_records_errors_and_skips_past_the_budget(tmp_path):
  path = tmp_path / "bench_gpu_dry.json"
  seen = {}

  def first(dry_run, budget_s):
    return {"value": 1.5, "budget_seen": budget_s,
            "targets": {"ok": bench.target(1.0, "<=", 2), "slow": bench.target(3.0, "<=", 2)}}

  def broken(dry_run, budget_s):  # pylint: disable=unused-argument
    seen["file"] = json.loads(path.read_text())  # what a run cut short here would keep
    raise RuntimeError("the kernel did not lower\nsecond line")

  def spend(dry_run, budget_s):  # pylint: disable=unused-argument
    time.sleep(1.1)
    return {}

  checks = {"a.first": bench_gpu.GpuCheck(first, 10.0), "a.broken": bench_gpu.GpuCheck(broken, 1.0),
            "b.spend": bench_gpu.GpuCheck(spend, 1.0), "b.late": bench_gpu.GpuCheck(first, 1.0)}
  record = bench_gpu.run(tmp_path, True, checks, budget_s=1.0)
  bench.check_record(record, "gpu")
  assert json.loads(path.read_text()) == record
  checks_out = record["results"]["checks"]
  assert checks_out["a.first"]["status"] == "failed"  # one of its targets failed
  assert checks_out["a.first"]["results"]["budget_seen"] == pytest.approx(1.0, abs=0.2)
  assert record["targets"]["a.first.slow"]["passed"] is False and record["passed"] is False
  assert checks_out["a.broken"]["status"] == "error"
  assert checks_out["a.broken"]["error"] == "RuntimeError: the kernel did not lower"
  assert "test_bench_gpu.py" in checks_out["a.broken"]["where"]
  assert checks_out["b.spend"]["status"] == "measured"
  assert checks_out["b.late"]["status"] == "skipped"  # it would start after the 1 s budget
  results = record["results"]
  assert results["errors"] == ["a.broken"] and results["skipped"] == ["b.late"]
  assert results["complete"] and results["pending"] == []
  assert record["targets"]["suite.errors"]["value"] == 1
  partial = seen["file"]["results"]  # written after the first check, before the second ended
  bench.check_record(seen["file"], "gpu")
  assert list(partial["checks"]) == ["a.first"] and not partial["complete"]
  assert partial["pending"] == ["a.broken", "b.spend", "b.late"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["bench_gpu_dry.json"]
