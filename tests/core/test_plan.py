"""`jaxpapers plan`: parameter counts, per-device bytes, FLOPs, fit and exit codes.

In-process on the test session's 8 fake CPU devices (tests/conftest.py), one subprocess test on
16 fake devices. Smoke presets only.
"""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from jaxpapers import cli
from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import plan as plan_lib
from jaxpapers.core import registry
from jaxpapers.core.errors import UsageError
from jaxpapers.core.train import Trainer
from jaxpapers.nn import partitioning as pt

# Dense dispatch: its work does not depend on how the batch is split, so FLOPs can be compared
# across meshes (the preset's blocked dispatch pads each shard's rows to whole blocks, more
# padding per token on smaller shards: jaxpapers/nn/moe.py).
FSDP8 = ["mesh.fsdp=8", "model.dispatch=dense"]


@pytest.fixture(scope="module")
def trinity():
  """Trinity smoke on fsdp=8: its plan and a real (initialized) trainer of the same config."""
  exp = registry.load_experiment("trinity")
  config = exp.config("smoke", FSDP8)
  record = plan_lib.plan("trinity", "smoke", devices=8, overrides=FSDP8)
  return record, config, experiment_lib.build_trainer(exp, config, None)


def _params(model: nnx.Module) -> list[nnx.Variable]:
  return jax.tree.leaves(nnx.state(model, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable))


def test_abstract_trainer_matches_the_real_state(trinity):
  """`Trainer.abstract`'s state has the real state's structure, shapes, dtypes and shardings."""
  _, config, real = trinity
  exp = registry.load_experiment("trinity")
  task = exp.stage().make_task(config, real.mesh, {})
  abstract = Trainer.abstract(task, config.train, real.mesh, mesh_lib.logical_rules(config.mesh))
  assert not hasattr(abstract, "_leaves")  # no state was created
  assert jax.tree.structure(abstract.abstract_state) == jax.tree.structure(real.state)
  for a, r in zip(jax.tree.leaves(abstract.abstract_state), jax.tree.leaves(real.state)):
    assert (a.shape, a.dtype, a.sharding) == (r.shape, r.dtype, r.sharding)


def test_trinity_parameter_counts(trinity):
  record, config, real = trinity
  total = sum(v.size for v in _params(real.model))
  assert record["params_total"] == total == 58_976
  m = config.model  # inactive: per MoE layer, (E - K) of E routed experts of gate, up, down
  inactive = m.num_moe_layers * 3 * m.d_model * m.expert_width * (m.num_experts - m.top_k)
  assert record["params_active"] == total - inactive < total
  assert record["param_bytes_total"] == 4 * total  # float32


def test_trinity_bytes_per_device_on_fsdp8(trinity):
  """Leaves named `embed` on a dimension 8 divides hold 1/8 per device, the rest all of it;
  AdamW's two moments follow their parameters; the batch is split 8 ways."""
  record, config, real = trinity
  split = whole = 0
  for v in _params(real.model):
    names = pt.names_of(v) or ()
    if any(n == pt.EMBED and size % 8 == 0 for n, size in zip(names, v.shape)):
      split += v.size * 4
    else:
      whole += v.size * 4
  per = record["bytes_per_device"]
  assert split > 10 * whole  # most bytes are annotated
  assert per["params"] == split // 8 + whole
  assert 2 * per["params"] <= per["optimizer"] <= 2 * per["params"] + 64  # mu, nu, counters
  batch = next(registry.load_experiment("trinity").stage().make_task(
      config, real.mesh, {}).train_data)
  assert per["batch"] == sum(np.asarray(x).nbytes for x in batch.values()) // 8
  assert per["temporaries"] > 0
  parts = sum(v for k, v in per.items() if k != "total")
  assert per["total"] == parts
  assert record["devices"] == 8 and record["mesh"]["fsdp"] == 8
  assert record["fits"] is None and record["device_memory"] is None  # CPU: no memory known


def test_trinity_flops_do_not_depend_on_the_mesh(trinity):
  """Per-device FLOPs x devices on fsdp=8 is the one-device program's FLOPs, within the
  redundant work on replicated leaves (norm gains, counters: each device updates them)."""
  record, _, _ = trinity
  one = plan_lib.plan("trinity", "smoke", devices=1, overrides=["mesh.data=1", FSDP8[1]])
  assert one["devices"] == 1 and one["flops_per_step"] > 1e8
  assert record["flops_per_step"] == 8 * record["flops_per_device"]
  assert 1.0 <= record["flops_per_step"] / one["flops_per_step"] < 1.05
  assert one["bytes_per_device"]["params"] == one["param_bytes_total"]


def test_cli_json_exit_1_when_it_does_not_fit(capsys):
  """modular_addition (unannotated: replicated): the JSON is printed, exit 1 for 1KB."""
  code = cli.main(["plan", "modular_addition", "--preset", "smoke", "--devices", "8",
                   "--device-memory", "1KB", "--json"])
  record = json.loads(capsys.readouterr().out)
  assert code == 1 and record["fits"] is False and record["device_memory"] == 1000
  config = registry.load_experiment("modular_addition").config("smoke")
  assert record["params_total"] == record["params_active"] == 2 * config.p * config.width
  assert record["bytes_per_device"]["params"] == record["param_bytes_total"] == 8 * config.p * config.width
  assert record["flops_per_step"] > 0 and record["compile_seconds"] > 0
  assert record["bytes_per_device"]["total"] > 1000
  big = str(record["bytes_per_device"]["total"]) + "B"  # exactly enough fits
  assert cli.main(["plan", "modular_addition", "--preset", "smoke", "--devices", "8",
                   "--device-memory", big]) == 0
  table = capsys.readouterr().out
  assert "params total" in table and "fits" in table and "yes" in table


@pytest.mark.parametrize("args, hint", [
    (["plan", "no_such_paper"], "unknown experiment"),
    (["plan", "trinity", "--preset", "smoke", "--devices", "8", "mesh.fsdp=3"], "mesh.fsdp=3"),
    (["plan", "trinity", "--preset", "smoke", "--devices", "8", "mesh.data=1", "mesh.fsdp=8",
      "batch_size=4"], "does not split"),
    (["plan", "trinity", "--preset", "smoke", "--stage", "nope"], "unknown stage"),
    (["plan", "trinity", "--device-memory", "lots"], "not a size"),
])
def test_bad_input_exits_2(args, hint, capsys):
  assert cli.main(args) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("jaxpapers: error: ") and hint in err[0], err


@pytest.mark.parametrize("text, expected", [
    ("80GB", 80 * 10**9), ("16GiB", 16 * 2**30), ("1KB", 1000), ("512MiB", 512 * 2**20),
    ("2", 2 * 10**9), ("1.5 gb", 1_500_000_000), ("100B", 100)])
def test_parse_size(text, expected):
  assert plan_lib.parse_size(text) == expected


def test_parse_size_refuses_junk():
  for text in ("", "GB", "12XB", "-1GB"):
    with pytest.raises(UsageError):
      plan_lib.parse_size(text)


def test_sixteen_devices_plan_in_a_subprocess(trinity):
  """More devices than the session's 8: fake CPU devices in a subprocess, same parameter
  shardings as fsdp=8 here (data=2 doubles the replicas, not the split)."""
  record, _, _ = trinity
  sub = plan_lib.plan("trinity", "smoke", devices=16,
                      overrides=["mesh.data=2", "mesh.fsdp=8", "batch_size=16", FSDP8[1]])
  assert sub["fake_devices"] and sub["devices"] == 16
  assert sub["mesh"] == {"data": 2, "fsdp": 8, "expert": 1, "tensor": 1}
  for key in ("params_total", "params_active", "param_bytes_total"):
    assert sub[key] == record[key]
  assert sub["bytes_per_device"]["params"] == record["bytes_per_device"]["params"]
  assert sub["bytes_per_device"]["batch"] == record["bytes_per_device"]["batch"]  # 16 rows / 16
  assert math.isclose(sub["flops_per_step"], 2 * record["flops_per_step"], rel_tol=0.05)


def test_active_count_of_scanned_layers():
  """Stacked MoE layers (`scan_layers`, one MoE module whose arrays have a leading `layers`
  axis) count like the unscanned ones: total and active agree, active from the config."""
  from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM  # pylint: disable=g-import-not-at-top
  m = AfmoeConfig(num_layers=12, num_dense_layers=1, global_every=4, d_model=16, num_heads=2,
                  num_kv_heads=1, head_dim=8, dense_width=32, num_experts=8, top_k=3,
                  expert_width=8, window=8)
  counts = {}
  for scanned in (False, True):
    config = dataclasses.replace(m, scan_layers=scanned)
    assert (config.scan_plan()[1] > 0) == scanned  # scanned: layers 4-11, two groups
    model = nnx.eval_shape(lambda c=config: AfmoeLM(c, rngs=nnx.Rngs(0)))
    counts[scanned] = plan_lib.count_params(model)
  inactive = m.num_moe_layers * 3 * m.d_model * m.expert_width * (m.num_experts - m.top_k)
  assert counts[True] == counts[False] == (counts[False][0], counts[False][0] - inactive)


@pytest.mark.slow  # two 6-layer plans (~45 s)
def test_flops_of_scanned_layers_are_flagged_as_a_lower_bound():
  """XLA counts a while body once: trinity with two scanned groups (layers 2-5 of 6) counts one
  group's FLOPs, fewer than the same model unscanned, and the record says it is a lower bound;
  threefry's rounds (a loop without matrix products) do not raise the flag."""
  base = ["mesh.data=1", "model.num_layers=6"]
  flat = plan_lib.plan("trinity", "smoke", devices=1, overrides=base)
  scanned = plan_lib.plan("trinity", "smoke", devices=1, overrides=[*base, "model.scan_layers=true"])
  assert not flat["flops_lower_bound"] and scanned["flops_lower_bound"]
  assert not any(loop["matmuls"] for loop in flat["while_loops"])
  assert {"trips": 2, "matmuls": True} in scanned["while_loops"]
  assert scanned["params_total"] == flat["params_total"]
  assert scanned["params_active"] == flat["params_active"]
  assert scanned["flops_per_step"] < 0.9 * flat["flops_per_step"]
  assert "at least" in plan_lib.format_table(scanned)
