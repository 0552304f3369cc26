"""Trinity: smoke results, the sharded step (FSDP + expert axis) against one device, step stamps."""

import chex
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.experiments.trinity.run import EXPERIMENT


def _run(mesh_overrides, steps=4):
  config = EXPERIMENT.config("smoke", [f"train.steps={steps}", "train.eval_every=0",
                                       "train.checkpoint_every=0", *mesh_overrides])
  trainer = experiment_lib.build_trainer(EXPERIMENT, config, None)
  result = trainer.run()
  return trainer, result


def _biases(trainer):
  return np.stack([np.asarray(m.expert_bias[...]) for m in trainer.model.moe_layers()])


@pytest.fixture(scope="module")
def one_device():
  return _run(["mesh.data=1"])


@pytest.mark.parametrize("mesh", [
    pytest.param(("mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"), marks=pytest.mark.slow),
    ("mesh.fsdp=2", "mesh.expert=2", "mesh.tensor=2")])  # the second also shards the experts
def test_sharded_step_equals_one_device_and_smebu_sees_global_loads(one_device, mesh):
  one, one_result = one_device
  sharded, sharded_result = _run(list(mesh))
  params = jax.tree.map(np.asarray, jax.device_get(one.params()))
  sharded_params = jax.tree.map(np.asarray, jax.device_get(sharded.params()))
  chex.assert_trees_all_close(sharded_params, params, rtol=1e-4, atol=1e-5)
  # SMEBU updated the biases from the same (global) loads on both meshes: per-shard loads
  # (a quarter of the tokens) would give different excesses and different biases.
  assert np.abs(_biases(one)).max() > 0
  np.testing.assert_allclose(_biases(sharded), _biases(one), atol=1e-7)
  np.testing.assert_allclose(sharded_result.final_metrics["train_loss"],
                             one_result.final_metrics["train_loss"], rtol=1e-5)
  # stored layouts follow the logical names: experts (expert, embed, mlp), attention (embed, heads)
  layer = sharded.params()["layers"][1]
  expert = "expert" if "mesh.expert=2" in mesh else None
  tensor = "tensor" if "mesh.tensor=2" in mesh else None
  assert layer["mlp"]["gate"].sharding.spec == P(expert, "fsdp", tensor)
  assert layer["attn"]["q"].sharding.spec == P("fsdp", tensor)


def test_loop_stamps_steps_so_the_z_loss_weight_drops_mid_run(one_device):
  """4 steps, switch at 0.5: the batches of steps 0-1 weigh the z-loss 1e-4, of steps 2-3 1e-6."""
  _, result = one_device
  train = [r for r in result.history if r["kind"] == "train"]
  assert [r["step"] for r in train] == [1, 2, 3, 4]
  np.testing.assert_allclose([r["z_loss_weight"] for r in train], [1e-4, 1e-4, 1e-6, 1e-6])
  assert all(r["loss"] > r["lm_loss"] for r in train)  # the router losses are in the loss


def test_smoke_report_covers_router_rsdb_muon_and_lm(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed."""
  run = smoke_report("trinity")
  ids = {c["id"] for c in run.record["claims"]}
  assert {"router_bias_sum_zero", "rsdb_domtv_ratio", "muon_split_labels", "lm_bias_sum"} <= ids
  for png in ("router.png", "rsdb.png", "lm.png"):
    assert (run.folder / png).read_bytes()[:4] == b"\x89PNG"
