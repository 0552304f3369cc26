"""The shared training loop: sharding equivalence, determinism, resume, hooks, records."""

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import data
from jaxpapers.core.config import MeshConfig, TrainConfig
from jaxpapers.core.mesh import make_mesh
from jaxpapers.core.train import Task, Trainer, params_checksum
from jaxpapers.nn import partitioning as pt

X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
Y = (X @ np.linspace(-1, 1, 8) + np.sin(X[:, 0])).astype(np.float32)


class Counter(nnx.Variable):
  """Non-differentiated state updated by the after-update hook."""


class MLP(nnx.Module):

  def __init__(self, *, rngs: nnx.Rngs):
    self.l1 = nnx.Linear(8, 32, rngs=rngs, kernel_metadata=pt.metadata((pt.EMBED, pt.MLP)),
                         bias_metadata=pt.metadata((pt.MLP,)))
    self.l2 = nnx.Linear(32, 1, rngs=rngs, kernel_metadata=pt.metadata((pt.MLP, pt.EMBED)))
    self.updates = Counter(jnp.zeros((), jnp.int32))
    self.last_loss = Counter(jnp.zeros(()))

  def __call__(self, x):
    return self.l2(jax.nn.gelu(self.l1(x)))[:, 0]


def loss_fn(model, batch, rng):
  noise = 0.01 * jax.random.normal(rng, batch["y"].shape)  # uses the per-step RNG
  err = (model(batch["x"]) - batch["y"] - noise) ** 2
  loss = jnp.sum(err * batch["mask"]) / jnp.sum(batch["mask"])
  return loss, {"loss_copy": loss}


def after_update(model, aux):
  model.updates[...] += 1
  model.last_loss[...] = aux["loss_copy"]
  return {"hook_count": model.updates[...]}


def make_trainer(steps=30, seed=0, mesh=MeshConfig(data=1), workdir=None, checkpoint_every=0,
                 eval_every=10):
  source = data.ArraySource({"x": X, "y": Y})
  task = Task(init_model=MLP, optimizer=optax.adam(3e-3), loss_fn=loss_fn,
              train_data=data.BatchIterator(source, 16, seed=seed),
              eval_fn=lambda m: {"mse": jnp.mean((m(X) - Y) ** 2)}, after_update=after_update)
  config = TrainConfig(steps=steps, seed=seed, eval_every=eval_every, log_every=5,
                       checkpoint_every=checkpoint_every)
  return Trainer(task, config, make_mesh(mesh), workdir, "test_mlp", {"test": True})


def as_numpy(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


@pytest.fixture(scope="module")
def one_device():
  trainer = make_trainer()
  result = trainer.run()
  return trainer, result


@pytest.mark.parametrize("mesh", [MeshConfig(data=8), MeshConfig(data=4, fsdp=2), MeshConfig(data=2, fsdp=2, expert=2),
                                  MeshConfig(data=2, fsdp=2, tensor=2),
                                  MeshConfig(data=2, fsdp=4, axis_types="auto")])
def test_sharded_training_equals_one_device(one_device, mesh):
  reference, ref_result = one_device
  trainer = make_trainer(mesh=mesh)
  result = trainer.run()
  np.testing.assert_allclose(result.final_metrics["mse"], ref_result.final_metrics["mse"], rtol=1e-5)
  chex.assert_trees_all_close(as_numpy(trainer.params()), as_numpy(reference.params()), rtol=2e-5, atol=2e-6)
  # the hidden kernel [8, 32] (embed, mlp) is stored split over fsdp and tensor
  expected = jax.sharding.PartitionSpec("fsdp" if mesh.fsdp > 1 else None,
                                        "tensor" if mesh.tensor > 1 else None)
  kernel = trainer.params()["l1"]["kernel"]
  assert kernel.sharding.is_equivalent_to(jax.NamedSharding(trainer.mesh, expected), 2)


def test_same_seed_same_bits_other_seed_other_bits(one_device):
  _, ref_result = one_device
  assert make_trainer().run().params_checksum == ref_result.params_checksum
  assert make_trainer(seed=1).run().params_checksum != ref_result.params_checksum


def test_after_update_hook_runs_once_per_step_outside_autodiff(one_device):
  trainer, result = one_device
  model = trainer.model
  assert int(model.updates[...]) == 30
  assert float(model.last_loss[...]) == pytest.approx(result.final_metrics["train_loss"], rel=1e-6)
  assert "updates" not in trainer.params()  # only nnx.Param leaves are optimized
  logged = [(r["step"], r["hook_count"]) for r in result.history if r["kind"] == "train"]
  assert all(step == count for step, count in logged)  # the hook's metrics are logged


def test_records_follow_the_cadence(one_device):
  _, result = one_device
  evals = [r["step"] for r in result.history if r["kind"] == "eval"]
  trains = [r["step"] for r in result.history if r["kind"] == "train"]
  assert evals == [0, 10, 20, 30]
  assert trains == [5, 10, 15, 20, 25, 30]
  assert result.history[0]["mse"] > result.history[-1]["mse"]


def test_resume_from_checkpoint_is_bit_identical(one_device, tmp_path):
  reference, ref_result = one_device
  first = make_trainer(workdir=tmp_path, checkpoint_every=10)
  first.config = dataclasses.replace(first.config, steps=20)  # stop early, as a killed run would
  first.run()
  assert first.checkpointer.steps() == [10, 20]
  resumed = make_trainer(workdir=tmp_path, checkpoint_every=10)
  assert resumed.restore_latest() == 20
  result = resumed.run()
  assert result.params_checksum == ref_result.params_checksum
  chex.assert_trees_all_equal(as_numpy(resumed.params()), as_numpy(reference.params()))  # names a differing leaf
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["kind"] == "eval"] == [0, 10, 20, 30]
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))  # tensorboardX installed
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["step"] == 30 and summary["params_checksum"] == ref_result.params_checksum


def test_params_checksum_is_order_free_and_value_sensitive():
  a = {"w": np.arange(6.0).reshape(2, 3), "b": np.zeros(3)}
  b = {"b": np.zeros(3), "w": np.arange(6.0).reshape(2, 3)}
  assert params_checksum(a) == params_checksum(b)
  b["w"][0, 0] = np.nextafter(0.0, 1.0)
  assert params_checksum(a) != params_checksum(b)
