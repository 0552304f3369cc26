"""The experiment driver: stages in dependency order, their workdirs, restore, resume, reproduce.

A toy two-stage experiment (a teacher regression MLP, then a student started from the trained
teacher) runs in-process on one device, so every check is about the driver, not a paper.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import data
from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import metrics, report
from jaxpapers.core.config import MeshConfig, TrainConfig
from jaxpapers.core.errors import UsageError
from jaxpapers.core.train import Task, params_checksum
from jaxpapers.core.workdir_lock import LOCK_NAME

X = np.random.default_rng(0).normal(size=(48, 4)).astype(np.float32)
Y = np.sin(X @ np.linspace(-1, 1, 4)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  lr: float = 1e-2
  teacher: TrainConfig = TrainConfig(steps=12, eval_every=6, log_every=3, checkpoint_every=4)
  student: TrainConfig = TrainConfig(steps=10, eval_every=5, log_every=5, checkpoint_every=5)
  mesh: MeshConfig = MeshConfig(data=1)


class Net(nnx.Module):

  def __init__(self, *, rngs: nnx.Rngs):
    self.l1 = nnx.Linear(4, 16, rngs=rngs)
    self.l2 = nnx.Linear(16, 1, rngs=rngs)

  def __call__(self, x):
    return self.l2(jnp.tanh(self.l1(x)))[:, 0]


def _mse(model, batch, target):
  err = (model(batch["x"]) - target) ** 2
  return jnp.sum(err * batch["mask"]) / jnp.sum(batch["mask"])


def _batches(seed: int):
  return data.batches(data.ArraySource({"x": X, "y": Y}), 16, seed=seed)


def teacher_task(config: ToyConfig, mesh, inputs) -> Task:  # pylint: disable=unused-argument
  return Task(init_model=Net, optimizer=optax.adam(config.lr),
              loss_fn=lambda m, b, rng: (_mse(m, b, b["y"]), {}),
              train_data=_batches(config.teacher.seed),
              eval_data={"all": data.eval_batches(data.ArraySource({"x": X, "y": Y}), len(X))},
              eval_fn=lambda m, b: {"mse": metrics.mean((m(b["x"]) - b["y"]) ** 2, b["mask"])})


def student_task(config: ToyConfig, mesh, inputs) -> Task:  # pylint: disable=unused-argument
  """Starts at the teacher and fits the teacher's outputs plus a bump (so it moves away)."""
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: Net(rngs=nnx.Rngs(0))))
  teacher = inputs["teacher"]

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    target = nnx.merge(graphdef, teacher)(batch["x"]) + 0.5 * batch["x"][:, 0]
    return _mse(model, batch, jax.lax.stop_gradient(target)), {}

  return Task(init_model=lambda rngs: nnx.merge(graphdef, jax.tree.map(jnp.asarray, teacher)),
              optimizer=optax.sgd(config.lr), loss_fn=loss_fn, train_data=_batches(config.student.seed))


def _reproduce(config, preset, out_dir, progress):  # pylint: disable=unused-argument
  return [report.at_least("lr_seen", "the lr the config reached", config.lr, 0.0)], []


def toy(stages=None, presets=None) -> experiment_lib.Experiment:
  stages = stages if stages is not None else (
      experiment_lib.Stage("teacher", teacher_task),
      experiment_lib.Stage("student", student_task, needs=("teacher",)))
  return experiment_lib.Experiment(name="toy", paper="0000.00000", title="toy", reproduce=_reproduce,
                                   presets=presets or {"smoke": ToyConfig()}, stages=stages)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """`jaxpapers train toy --stage student` in a fresh workdir: (workdir, student run, notices)."""
  workdir = tmp_path_factory.mktemp("toy") / "w"
  notices = []
  run = experiment_lib.train(toy(), ToyConfig(), workdir, notify=notices.append, stage="student")
  return workdir, run, notices


def test_plan_runs_what_a_stage_needs_in_declaration_order():
  @dataclasses.dataclass(frozen=True)
  class FourStages:
    a: TrainConfig = TrainConfig()
    b: TrainConfig = TrainConfig(steps=2)
    c: TrainConfig = TrainConfig(steps=3)
    d: TrainConfig = TrainConfig(steps=4)

  stage = functools.partial(experiment_lib.Stage, make_task=teacher_task)
  exp = toy(stages=(stage("a"), stage("b", needs=("a",)), stage("c", needs=("a",)),
                    stage("d", needs=("b",))), presets={"smoke": FourStages()})
  assert [s.name for s in exp.plan("d")] == ["a", "b", "d"]
  assert [s.name for s in exp.plan("c")] == ["a", "c"]
  assert [s.name for s in exp.plan()] == ["a", "b", "d"]  # default: the last stage
  # Multi-stage: each stage's TrainConfig is the field named after it.
  assert [s.train_config(FourStages()).steps for s in exp.stages] == [1000, 2, 3, 4]


def test_experiment_refuses_bad_stage_declarations():
  stage = functools.partial(experiment_lib.Stage, make_task=teacher_task)
  with pytest.raises(ValueError, match="needs \\['student'\\]"):
    toy(stages=(stage("teacher", needs=("student",)), stage("student")))
  with pytest.raises(ValueError, match="no TrainConfig field 'train'"):  # single stage: `train`
    toy(stages=(stage("only"),))
  with pytest.raises(ValueError, match="unique"):
    toy(stages=(stage("teacher"), stage("teacher")))


def test_stage_lookup_errors_name_the_fix():
  exp = toy()
  assert exp.stage().name == "student" and exp.stage_names == ("teacher", "student")
  with pytest.raises(UsageError, match="unknown stage 'pupil'.*teacher, student"):
    exp.stage("pupil")
  games_like = toy(stages=())
  assert not games_like.trainable
  with pytest.raises(UsageError, match="no training run.*jaxpapers reproduce toy"):
    games_like.plan()


def test_stages_train_in_their_own_workdirs(trained):
  workdir, run, notices = trained
  assert notices == []
  assert run.stage == "student" and run.workdir == workdir / "student" and run.result.completed
  assert sorted(p.name for p in workdir.iterdir()) == ["config.json", "student", "teacher"]  # no lock left
  teacher = json.loads((workdir / "teacher" / "summary.json").read_text())
  student = json.loads((workdir / "student" / "summary.json").read_text())
  assert (teacher["step"], student["step"]) == (12, 10)
  assert student["params_checksum"] == run.result.params_checksum != teacher["params_checksum"]
  record = json.loads((workdir / "config.json").read_text())
  assert record["config"]["student"]["steps"] == 10 and record["experiment"] == "toy"


def test_finished_stages_are_restored_not_retrained(trained):
  workdir, run, _ = trained
  before = (workdir / "teacher" / "metrics.jsonl").read_text()
  notices = []
  again = experiment_lib.train(toy(), ToyConfig(), workdir, notify=notices.append, stage="student")
  assert notices == ["stage teacher: already trained to step 12; restored its final checkpoint",
                     "stage student: already trained to step 10; restored its final checkpoint"]
  assert again.result.params_checksum == run.result.params_checksum
  assert (workdir / "teacher" / "metrics.jsonl").read_text() == before
  teacher = experiment_lib.train(toy(), ToyConfig(), workdir, stage="teacher")
  summary = json.loads((workdir / "teacher" / "summary.json").read_text())
  assert teacher.result.params_checksum == summary["params_checksum"]


def test_interrupted_student_resumes_to_the_same_bits(trained, tmp_path):
  _, reference, _ = trained
  workdir = tmp_path / "w"
  experiment_lib.train(toy(), ToyConfig(), workdir, stage="teacher")
  teacher = experiment_lib.train(toy(), ToyConfig(), workdir, stage="teacher")
  # A student run stopped after 5 of its 10 steps, as a killed run leaves it (checkpoint at 5).
  (workdir / "student").mkdir()
  first = experiment_lib.build_trainer(toy(), ToyConfig(), workdir / "student", "student",
                                       {"teacher": teacher.state})
  first.config = dataclasses.replace(first.config, steps=5)
  first.run()
  assert first.checkpointer.steps() == [5]
  notices = []
  resumed = experiment_lib.train(toy(), ToyConfig(), workdir, notify=notices.append)
  assert notices == ["stage teacher: already trained to step 12; restored its final checkpoint",
                     "stage student: resumed from the checkpoint of step 5"]
  assert resumed.result.params_checksum == reference.result.params_checksum


def test_run_stage_is_the_reproduction_path_of_the_same_runs(trained, tmp_path):
  _, reference, _ = trained
  teacher = experiment_lib.run_stage(toy(), ToyConfig(), tmp_path / "teacher", stage="teacher")
  student = experiment_lib.run_stage(toy(), ToyConfig(), tmp_path / "student", stage="student",
                                     inputs={"teacher": teacher.state}, keep_initial=True)
  assert student.result.params_checksum == reference.result.params_checksum
  # The student starts exactly at the trained teacher (what `inputs` hands over).
  chex.assert_trees_all_equal(student.initial_state, teacher.state)
  assert params_checksum(nnx.state(student.initial_model, nnx.Param)) == teacher.result.params_checksum
  assert not (tmp_path / "student" / "checkpoints").exists()  # reproductions keep no checkpoints
  assert [r["step"] for r in student.history if r["kind"] == "eval"] == [0, 5, 10]
  with pytest.raises(ValueError, match="needs the trained \\['teacher'\\]"):
    experiment_lib.run_stage(toy(), ToyConfig(), None, stage="student")


def test_reproduce_records_its_overrides_and_applies_them(tmp_path):
  record = experiment_lib.reproduce(toy(), "smoke", tmp_path, overrides=["lr=0.25"])
  assert record["overrides"] == ["lr=0.25"]
  assert record["claims"][0]["measured"] == 0.25
  on_disk = json.loads((tmp_path / "toy" / "report.json").read_text())
  assert on_disk == record and list(on_disk)[:5] == ["experiment", "paper", "preset", "passed", "overrides"]
  assert not (tmp_path / "toy" / LOCK_NAME).exists()
  assert experiment_lib.reproduce(toy(), "smoke", tmp_path)["overrides"] == []


def test_field_helpers_reach_nested_train_configs():
  @dataclasses.dataclass(frozen=True)
  class Inner:
    train: TrainConfig = TrainConfig(steps=3)

  @dataclasses.dataclass(frozen=True)
  class Outer:
    lm: Inner = Inner()

  outer = experiment_lib.replace_field(Outer(), "lm.train.seed", 7)
  assert experiment_lib.get_field(outer, "lm.train") == TrainConfig(steps=3, seed=7)
  assert Outer().lm.train.seed == 0


def test_no_experiment_builds_its_own_trainer():
  """Experiments train through the driver (stages, `run_stage`); only benchmarks, which time the
  loop itself, may build a `Trainer`."""
  root = Path(__file__).resolve().parents[2] / "experiments"
  offenders = []
  for path in sorted(root.glob("*/*.py")):
    if path.name.startswith("bench"):
      continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if re.search(r"\bTrainer\(|\bfresh_trainer\b|\bbuild_trainer\(", line):
        offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
  assert not offenders, offenders


def test_a_workdir_resumes_across_steps_per_dispatch_but_not_across_a_real_change(tmp_path):
  from jaxpapers.core.errors import WorkdirError  # pylint: disable=g-import-not-at-top
  config = TrainConfig(steps=10)
  experiment_lib.prepare_workdir(tmp_path, "demo", config)
  experiment_lib.prepare_workdir(tmp_path, "demo", dataclasses.replace(config, steps_per_dispatch=4))
  assert json.loads((tmp_path / "config.json").read_text())["config"]["steps_per_dispatch"] == 4
  with pytest.raises(WorkdirError, match="steps: 10 -> 11"):
    experiment_lib.prepare_workdir(tmp_path, "demo", dataclasses.replace(config, steps=11))
