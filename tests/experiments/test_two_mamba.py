"""2Mamba experiment (arXiv 2602.17363): smoke results, recall data, memory
figures against the closed form, the benchmark's blocked quadratic form, and the GPU script's
logic at a tiny size (slow)."""

import json

import jax
import numpy as np
import pytest

from jaxpapers.core import bench
from jaxpapers.experiments.two_mamba import checks, gpu_bench
from jaxpapers.experiments.two_mamba.bench import quadratic_blocked
from jaxpapers.experiments.two_mamba.model import KEY_HIGH, KEY_LOW, VALUE_LOW, recall_batch
from kernels_pallas.second_order_attention import reference


def test_smoke_report_covers_forms_kernels_recall_memory_and_decode(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed."""
  run = smoke_report("two_mamba")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"forms_square_chunked", "forms_square_recurrent", "kernel_grads_square",
          "kernel_grads_exp", "feature_map_identity", "recall_smoke_loss_cut",
          "memory_crossover_d64", "decode_vs_parallel"} <= set(claims)
  assert claims["memory_crossover_d64"]["measured"] == 1058
  assert (run.folder / "two_mamba.png").read_bytes()[:4] == b"\x89PNG"


def test_recall_batch_pairs_values_with_their_keys():
  batch = recall_batch(np.random.default_rng(0), 4, pairs=6, queries=5)
  inputs, targets, weights = batch["inputs"], batch["targets"], batch["weights"]
  assert inputs.shape == (4, 17) and weights.sum() == 4 * 5
  for row in range(4):
    keys, values = inputs[row, 0:12:2], inputs[row, 1:12:2]
    assert len(set(keys)) == 6 and keys.min() >= KEY_LOW and keys.max() < KEY_HIGH
    assert values.min() >= VALUE_LOW
    lookup = dict(zip(keys, values))
    for t in range(12, 17):
      assert targets[row, t] == lookup[inputs[row, t]]


def test_memory_matches_the_closed_form():
  mem = checks.memory(dims=(16,))  # d = 64 (crossover 1,058) is a claim of the smoke run
  for d, m in mem.items():
    features = d * (d + 1) // 2
    assert m["state_bytes"] == 4 * (d * features + features + 3 * d)  # paper Sec. 5.1
    assert m["kv_bytes_per_token"] == 4 * 2 * d
  assert mem[16]["crossover"] == 74  # floor(17^2 / 4 + 1.5) + 1


@pytest.mark.slow  # ~20-50 s of interpret-mode compiles
def test_gpu_script_logic_runs_tiny_on_cpu(tmp_path, monkeypatch):
  monkeypatch.setitem(gpu_bench.TINY, "repeats", 1)
  monkeypatch.setitem(gpu_bench.TINY, "seq", (64,))
  monkeypatch.setitem(gpu_bench.TINY, "chunked_seq", (64,))
  monkeypatch.setitem(gpu_bench.TINY, "decode_ctx", (64,))
  out = tmp_path / "gpu.json"
  assert gpu_bench.main(["--tiny", "--out", str(out)]) == 0
  record = json.loads(out.read_text())
  bench.check_record(record, "two_mamba_gpu")  # the shared bench_*.json schema
  impls = {r["impl"]: r for r in record["results"]["kernels"]}
  assert set(impls) == {"square", "exp", "pallas_flash"}
  assert all("median_s" in r["fwd"] and "median_s" in r["fwd_bwd"] for r in impls.values())
  assert impls["square"]["fwd_over_pallas_flash"] > 0
  assert record["results"]["decode"]["state_bytes"] == 4 * (2 * 136 * 16 + 2 * 136)  # H = 2, d = 16


def test_bench_blocked_quadratic_matches_reference():
  ks = jax.random.split(jax.random.key(0), 4)
  q, k, v = (jax.random.normal(ks[i], (1, 1024, 1, 8)) for i in range(3))
  a = -jax.nn.softplus(jax.random.normal(ks[3], (1, 1024, 1)))
  np.testing.assert_allclose(quadratic_blocked(q, k, v, a), reference.squared_attention(q, k, v, a),
                             atol=1e-5, rtol=1e-4)
