"""The shared training loop: sharding equivalence, determinism, resume, hooks, records,
multi-step dispatch."""

import dataclasses
import json
import os
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import data
from jaxpapers.core import experiment, metrics
from jaxpapers.core.config import MeshConfig, TrainConfig
from jaxpapers.core.mesh import make_mesh
from jaxpapers.core.train import Task, Trainer, params_checksum
from jaxpapers.experiments.modular_addition.run import EXPERIMENT
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


def eval_fn(model, batch):
  return {"mse": metrics.mean((model(batch["x"]) - batch["y"]) ** 2, batch["mask"]),
          "batches": jnp.ones(())}  # a plain scalar: averaged over the batches


def make_trainer(steps=30, seed=0, mesh=MeshConfig(data=1), workdir=None, checkpoint_every=0,
                 eval_every=10, steps_per_dispatch=1):
  source = data.ArraySource({"x": X, "y": Y})
  task = Task(init_model=MLP, optimizer=optax.adam(3e-3), loss_fn=loss_fn,
              train_data=data.batches(source, 16, seed=seed),
              eval_data={"all": data.eval_batches(source, 24, pad_to_multiple=8)},  # 24, 24, 16 + 8 pad
              eval_fn=eval_fn, model_metrics=lambda m: {"kernel_norm": jnp.linalg.norm(m.l1.kernel[...])},
              after_update=after_update)
  config = TrainConfig(steps=steps, seed=seed, eval_every=eval_every, log_every=5,
                       checkpoint_every=checkpoint_every, steps_per_dispatch=steps_per_dispatch)
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
  np.testing.assert_allclose(result.final_metrics["all_mse"], ref_result.final_metrics["all_mse"], rtol=1e-5)
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
  assert result.history[0]["all_mse"] > result.history[-1]["all_mse"]


def test_eval_sums_and_counts_give_the_exact_mean_over_uneven_batches(one_device):
  """The padded last batch (16 real rows of 24) adds nothing: the full-data mean, exactly."""
  trainer, result = one_device
  model = trainer.model
  np.testing.assert_allclose(result.final_metrics["all_mse"], np.mean((model(X) - Y) ** 2), rtol=1e-6)
  assert result.final_metrics["all_batches"] == 1.0
  np.testing.assert_allclose(result.final_metrics["kernel_norm"],
                             np.linalg.norm(np.asarray(model.l1.kernel[...])), rtol=1e-6)
  assert all(isinstance(b["x"], jax.Array) for b in trainer._eval_device["all"])  # sent once, kept


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


def _records(history):
  """(step, kind) of each record, and its metrics but the wall-clock rate."""
  return [((r["step"], r["kind"]), {k: v for k, v in r.items()
                                    if k not in ("step", "kind", "steps_per_second")})
          for r in history]


def _assert_same_records(history, reference):
  got, want = _records(history), _records(reference)
  assert [key for key, _ in got] == [key for key, _ in want]
  for (key, rec_metrics), (_, ref_rec_metrics) in zip(got, want):
    assert rec_metrics.keys() == ref_rec_metrics.keys(), key
    for name, value in rec_metrics.items():
      assert value == pytest.approx(ref_rec_metrics[name], rel=1e-6, abs=1e-7), (key, name)


def test_multi_step_dispatch_equals_one_step_per_call(one_device):
  """K=5 (stacked shuffled batches): the same parameters, hook counts and records as K=1."""
  reference, ref_result = one_device
  trainer = make_trainer(steps_per_dispatch=5)
  result = trainer.run()
  chex.assert_trees_all_close(as_numpy(trainer.params()), as_numpy(reference.params()), rtol=1e-6, atol=1e-7)
  assert int(trainer.model.updates[...]) == 30  # the hook ran once per step inside the scan
  _assert_same_records(result.history, ref_result.history)


def test_multi_step_dispatch_on_modular_addition_smoke():
  """Full batch (one device batch scanned over), with cadences K=4 does not divide."""
  results = {}
  for k in (1, 4):
    config = EXPERIMENT.config("smoke", ["mesh.data=1", "train.steps=30", "train.log_every=3",
                                         "train.eval_every=10", "train.checkpoint_every=0",
                                         f"train.steps_per_dispatch={k}"])
    results[k] = experiment.build_trainer(EXPERIMENT, config, None).run()
  one, four = results[1], results[4]
  assert one.step == four.step == 30 and four.completed
  assert four.final_metrics["train_loss"] == pytest.approx(one.final_metrics["train_loss"], rel=1e-6)
  _assert_same_records(four.history, one.history)
  assert [r["step"] for r in four.history if r["kind"] == "train"] == list(range(3, 31, 3))


@pytest.fixture(scope="module")
def three_per_call():
  """An uninterrupted run at K=3."""
  return make_trainer(steps_per_dispatch=3).run()


def test_multi_step_dispatch_resumes_bit_identically(three_per_call, tmp_path):
  """K=3 with checkpoints every 7 steps, stopped at 17: the resumed run ends as an uninterrupted one."""
  uninterrupted = three_per_call
  first = make_trainer(workdir=tmp_path, checkpoint_every=7, steps_per_dispatch=3)
  first.config = dataclasses.replace(first.config, steps=17)
  first.run()
  assert first.checkpointer.steps() == [14, 17]
  resumed = make_trainer(workdir=tmp_path, checkpoint_every=7, steps_per_dispatch=3)
  assert resumed.restore_latest() == 17
  result = resumed.run()
  assert result.params_checksum == uninterrupted.params_checksum
  assert resumed.checkpointer.steps() == [28, 30]
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 17, 20, 25, 30]  # 17: its end


def test_multi_step_dispatch_stops_on_sigterm_between_calls(three_per_call, tmp_path):
  """SIGTERM during the record at step 15 (K=3): that call's steps are done, step 15 is saved."""

  def terminate(step, record):
    if record["kind"] == "train" and step >= 12:
      os.kill(os.getpid(), signal.SIGTERM)

  first = make_trainer(workdir=tmp_path, checkpoint_every=7, steps_per_dispatch=3)
  stopped = first.run(callback=terminate)
  assert not stopped.completed and stopped.step == 15 and first.checkpointer.latest_step() == 15
  resumed = make_trainer(workdir=tmp_path, checkpoint_every=7, steps_per_dispatch=3)
  assert resumed.restore_latest() == 15
  assert resumed.run().params_checksum == three_per_call.params_checksum
