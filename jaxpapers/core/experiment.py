"""What an experiment declares, and the one driver that trains its stages in a workdir.

An experiment folder (`experiments/<name>/run.py`) exposes `EXPERIMENT`, an `Experiment`. Its
training runs are `Stage`s: each builds a `Task` from the config, the mesh and the trained model
states of the stages it needs (teacher -> student, pretrain -> post-train), and has its own
`TrainConfig` field. A single-stage experiment has one stage, `train`, trained in WORKDIR from the
config's `train` field; a multi-stage experiment trains stage S in WORKDIR/S from the field named
S. An experiment without training (games) declares no stages.

Two entry points run stages, and nothing else builds a `Trainer`:
  * `train()` (the CLI's `jaxpapers train`): resumable. It owns the workdir rules (one run per
    workdir through `workdir_lock`, config.json, refusal of foreign or mismatching workdirs,
    `--overwrite` that moves, never deletes, the old run), trains the stages the target needs in
    order, restores a finished stage instead of retraining it, and resumes an unfinished one from
    its newest checkpoint.
  * `run_stage()` (reproductions): one fresh run of a stage, without checkpoints.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from jaxpapers.core import config as config_lib
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import report as report_lib
from jaxpapers.core.config import TrainConfig
from jaxpapers.core.errors import CheckpointError, ConfigError, UsageError, WorkdirError
from jaxpapers.core.train import Task, Trainer, TrainResult, params_checksum
from jaxpapers.core.workdir_lock import WorkdirLock, is_lock_file

PRESETS = ("smoke", "small", "paper")
SINGLE_STAGE = "train"  # the name (and TrainConfig field) of a single-stage experiment's stage

Progress = Callable[[str, int], Any]  # (label, total steps) -> callback(step, record) or None
Notify = Callable[[str], None]


def folder_name(module_name: str) -> str:
  """The registry name of the experiment whose module is `module_name`: its folder's name.

  `run.py` builds its experiment with `name=folder_name(__name__)`, so the name cannot drift
  from the folder (`jaxpapers.experiments.<folder>.run` -> `<folder>`).
  """
  parts = module_name.split(".")
  if "experiments" not in parts[:-1]:
    raise ValueError(f"{module_name!r} is not a module of an experiment folder")
  return parts[parts.index("experiments") + 1]


def get_field(config: Any, path: str) -> Any:
  """The (nested) field `path` of a config, e.g. `get_field(c, "lm.train")`."""
  for name in path.split("."):
    config = getattr(config, name)
  return config


def replace_field(config: Any, path: str, value: Any) -> Any:
  """`config` with its (nested) field `path` replaced by `value`."""
  head, _, rest = path.partition(".")
  if rest:
    value = replace_field(getattr(config, head), rest, value)
  return dataclasses.replace(config, **{head: value})


@dataclasses.dataclass(frozen=True)
class Stage:
  """One training run of an experiment.

  Attributes:
    name: the stage's name (`jaxpapers train NAME --stage S`; its workdir is WORKDIR/S).
    make_task: `(config, mesh, inputs) -> Task`; `inputs` maps each stage in `needs` to its
      trained model state (an `nnx.State` of host arrays).
    needs: names of earlier stages whose trained models this stage starts from or uses.
    train_field: dotted path of the stage's `TrainConfig` in the config, or a function of the
      config returning it (for a choice made by config, e.g. crispedit's `task=mlp|lm`).
      Default: `train` for a single-stage experiment, the stage's name otherwise.
  """

  name: str
  make_task: Callable[[Any, jax.sharding.Mesh, Mapping[str, Any]], Task]
  needs: tuple[str, ...] = ()
  train_field: str | Callable[[Any], str] | None = None

  def field(self, config: Any) -> str:
    """The dotted path of this stage's TrainConfig in `config`."""
    return self.train_field(config) if callable(self.train_field) else self.train_field

  def train_config(self, config: Any) -> TrainConfig:
    """This stage's TrainConfig in `config`."""
    return get_field(config, self.field(config))

  def with_train_config(self, config: Any, train: TrainConfig) -> Any:
    """`config` with this stage's TrainConfig replaced by `train`."""
    return replace_field(config, self.field(config), train)


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A paper's experiment as the CLI sees it.

  Attributes:
    name: registry name (`jaxpapers train NAME`): the folder's name, `folder_name(__name__)`.
    paper: arXiv id.
    title: paper title.
    presets: preset name -> config (a frozen dataclass with a `mesh` field and one TrainConfig
      per stage).
    reproduce: `(config, preset, out_dir, progress) -> (claims, plots)`; see core/report.
    stages: the training runs, in dependency order (each stage needs only earlier ones); the
      last is what `jaxpapers train NAME` trains. Empty: no training run.
    status: one word for `jaxpapers list` (e.g. "reproduced", "in progress").
  """

  name: str
  paper: str
  title: str
  presets: dict[str, Any]
  reproduce: Callable[..., Any]
  stages: tuple[Stage, ...] = ()
  status: str = "reproduced"

  def __post_init__(self):
    stages, seen = [], set()
    default_field = SINGLE_STAGE if len(self.stages) == 1 else None
    for stage in self.stages:
      if not stage.name.isidentifier() or stage.name in seen:
        raise ValueError(f"{self.name}: stage name {stage.name!r} is not a unique identifier")
      unknown = [n for n in stage.needs if n not in seen]
      if unknown:
        raise ValueError(f"{self.name}: stage {stage.name!r} needs {unknown}, which are not "
                         "earlier stages")
      seen.add(stage.name)
      if stage.train_field is None:
        stage = dataclasses.replace(stage, train_field=default_field or stage.name)
      stages.append(stage)
    object.__setattr__(self, "stages", tuple(stages))
    for preset, config in self.presets.items():
      for stage in self.stages:
        try:
          ok = isinstance(stage.train_config(config), TrainConfig)
        except AttributeError:
          ok = False
        if not ok:
          raise ValueError(f"{self.name}: preset {preset} has no TrainConfig field "
                           f"{stage.field(config)!r} for stage {stage.name}")

  @property
  def trainable(self) -> bool:
    """Whether the experiment has a training run."""
    return bool(self.stages)

  @property
  def stage_names(self) -> tuple[str, ...]:
    return tuple(s.name for s in self.stages)

  def config(self, preset: str, overrides: Sequence[str] = ()) -> Any:
    """The preset's config with `key=value` overrides applied."""
    if preset not in self.presets:
      raise ConfigError(f"unknown preset {preset!r} for {self.name}; choose one of {', '.join(self.presets)}")
    return config_lib.override(self.presets[preset], list(overrides))

  def stage(self, name: str | None = None) -> Stage:
    """The stage `name` (default: the last).

    Raises:
      UsageError: the experiment has no training run, or no such stage.
    """
    if not self.stages:
      raise UsageError(f"the {self.name} experiment has no training run; use `jaxpapers "
                       f"reproduce {self.name}`")
    if name is None:
      return self.stages[-1]
    for stage in self.stages:
      if stage.name == name:
        return stage
    raise UsageError(f"unknown stage {name!r} of {self.name}; choose --stage from "
                     f"{', '.join(self.stage_names)}")

  def plan(self, name: str | None = None) -> list[Stage]:
    """The stage `name` after every stage it needs, directly or not, in declaration order."""
    target = self.stage(name)
    wanted, todo = {target.name}, [target]
    while todo:
      for need in todo.pop().needs:
        if need not in wanted:
          wanted.add(need)
          todo.append(self.stage(need))
    return [s for s in self.stages if s.name in wanted]


@dataclasses.dataclass
class StageRun:
  """A trained stage.

  Attributes:
    stage: its name.
    workdir: where it was trained (None: in memory only).
    result: the loop's result (`history` is empty for a stage restored as finished).
    model: the trained model (arrays on the mesh).
    initial_state: the model state before training (host arrays), when asked for.
  """

  stage: str
  workdir: Path | None
  result: TrainResult
  model: nnx.Module
  initial_state: Any = None

  @property
  def history(self) -> list[dict[str, Any]]:
    return self.result.history

  @property
  def final_metrics(self) -> dict[str, Any]:
    return self.result.final_metrics

  @functools.cached_property
  def state(self) -> Any:
    """The trained model state on the host (what later stages receive as input)."""
    return jax.device_get(nnx.state(self.model))

  @property
  def initial_model(self) -> nnx.Module | None:
    """The model before training (host arrays), if `initial_state` was kept."""
    if self.initial_state is None:
      return None
    return nnx.merge(nnx.graphdef(self.model), self.initial_state)


def _record(experiment: str, config: Any) -> dict[str, Any]:
  """The config.json record, as JSON reads it back (tuples become lists), so records compare."""
  return json.loads(json.dumps({"experiment": experiment, "config": config_lib.to_dict(config)}))


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
  keys = sorted(set(old) | set(new))
  out = []
  for k in keys:
    a, b = old.get(k), new.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _diff(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k}: {a!r} -> {b!r}")
  return out


RESULT_NEUTRAL_FIELDS = ("steps_per_dispatch",)
"""Config fields that change how a run is executed, not its results: a workdir is resumed
across them."""


def _comparable(record: Any) -> Any:
  """`record` without the result-neutral fields, at any depth."""
  if not isinstance(record, dict):
    return record
  return {k: _comparable(v) for k, v in record.items() if k not in RESULT_NEUTRAL_FIELDS}


def _move_away(workdir: Path) -> Path:
  """Moves the contents of `workdir` (all but its lock) to a sibling `NAME.old-TIMESTAMP`."""
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  target = workdir.with_name(f"{workdir.name}.old-{stamp}")
  target.mkdir()
  for entry in sorted(workdir.iterdir()):
    if not is_lock_file(entry.name):
      shutil.move(str(entry), str(target / entry.name))
  return target


def _sync(name: str) -> None:
  """Barrier across processes (multi-host); a no-op in one process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def _agree(flag: bool) -> bool:
  """Process 0's `flag`, on every process (multi-host); `flag` itself in one process."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def _holds_other_files(workdir: Path) -> bool:
  return workdir.is_dir() and any(not is_lock_file(e.name) for e in workdir.iterdir())


def check_workdir(workdir: Path) -> None:
  """Refuses a workdir that is a file or a non-empty folder holding no jaxpapers run; writes nothing.

  Raises:
    WorkdirError: as above.
  """
  workdir = Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"workdir {workdir} is a file; pass a directory to --workdir")
  if not (workdir / "config.json").exists() and _holds_other_files(workdir):
    raise WorkdirError(
        f"workdir {workdir} is not empty and holds no jaxpapers run (no config.json); choose an "
        "empty or new --workdir")


def lock_workdir(workdir: Path) -> tuple[WorkdirLock, list[str]]:
  """Takes the one-run lock of `workdir` (process 0 of a multi-host run takes it for all).

  Returns:
    (the lock, to `release()` when the run ends; notices, e.g. a stale lock taken over).

  Raises:
    WorkdirError: a live run holds the workdir, or it cannot be created.
  """
  lock, notices, error = WorkdirLock(workdir), [], None
  if jax.process_index() == 0:
    try:
      notices = lock.acquire()
    except WorkdirError as e:
      error = e
  if not _agree(error is None):
    if error is not None:
      raise error
    raise WorkdirError(f"workdir {workdir} is in use by another run (process 0 of this run names "
                       "it); wait for that run to end, or choose another --workdir")
  return lock, notices


def prepare_workdir(workdir: Path, experiment: str, config: Any, overwrite: bool = False) -> list[str]:
  """Makes `workdir` ready for a run of `config`; returns notices for the user.

  A workdir is accepted when it is new, empty, or holds a run of the same experiment and
  config (which is then resumed). Otherwise it is refused, or with `overwrite` its old contents
  are moved to a sibling `NAME.old-TIMESTAMP` folder (nothing is deleted). A non-empty folder
  that holds no jaxpapers run is always refused. In a multi-host run every process checks the
  same files, then process 0 alone writes. The workdir's lock file (if any) stays in place.

  Raises:
    WorkdirError: the workdir is unwritable, foreign, or holds a different run.
  """
  workdir = Path(workdir)
  new = _record(experiment, config)
  config_file = workdir / "config.json"
  check_workdir(workdir)
  move = False
  if config_file.exists():
    try:
      old = json.loads(config_file.read_text())
    except ValueError:
      old = {"unreadable": str(config_file)}
    if _comparable(old) != _comparable(new):
      changes = _diff(_comparable(old), _comparable(new))
      if not overwrite:
        shown = "; ".join(changes[:4]) + (" ..." if len(changes) > 4 else "")
        raise WorkdirError(
            f"workdir {workdir} holds a different run ({shown}); use another --workdir, or "
            "--overwrite to move the old run aside")
      move = True
  _sync("jaxpapers-workdir-checked")
  notices = []
  if jax.process_index() == 0:
    try:
      workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise WorkdirError(f"cannot create workdir {workdir} ({e.strerror}); choose another --workdir") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
      raise WorkdirError(f"workdir {workdir} is not writable; choose another --workdir")
    if move:
      notices.append(f"moved the previous run in {workdir} to {_move_away(workdir)}")
    config_file.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n")
  _sync("jaxpapers-workdir-ready")
  return notices


def build_trainer(experiment: Experiment, config: Any, workdir: Path | None,
                  stage: str | None = None, inputs: Mapping[str, Any] | None = None) -> Trainer:
  """The trainer of a stage (default: the last) of `config` on a mesh of all devices, not resumed.

  Args:
    experiment: the experiment.
    config: its resolved config.
    workdir: the stage's own workdir (metrics, checkpoints, summary.json); None keeps nothing.
    stage: the stage's name.
    inputs: trained model states of the stages it needs, by name.
  """
  s = experiment.stage(stage)
  inputs = dict(inputs or {})
  missing = [n for n in s.needs if n not in inputs]
  if missing:
    raise ValueError(f"stage {s.name} of {experiment.name} needs the trained {missing}; pass them "
                     "in `inputs`")
  mesh = mesh_lib.make_mesh(config.mesh)
  task = s.make_task(config, mesh, {n: inputs[n] for n in s.needs})
  return Trainer(task, s.train_config(config), mesh, workdir, experiment.name,
                 _record(experiment.name, config), rules=mesh_lib.logical_rules(config.mesh))


def no_progress(label: str, total: int):  # pylint: disable=unused-argument
  """A progress factory that shows nothing (library and test use)."""
  return None


def _ignore(message: str) -> None:  # pylint: disable=unused-argument
  """A notice sink that drops every notice."""


def run_stage(experiment: Experiment, config: Any, workdir: Path | None,
              progress: Progress = no_progress, *, stage: str | None = None,
              inputs: Mapping[str, Any] | None = None, label: str | None = None,
              keep_initial: bool = False) -> StageRun:
  """One fresh run of a stage for a reproduction: from scratch, no checkpoints.

  Metrics and summary.json go to `workdir` (a previous run with another config there is moved
  aside, as with --overwrite). A reproduction that trains several variants passes configs that
  differ in their fields (e.g. `dataclasses.replace` of the stage's TrainConfig for a seed).

  Args:
    experiment: the experiment.
    config: its config.
    workdir: the run's folder (None: nothing on disk).
    progress: `progress(label, total_steps) -> callback or None`.
    stage: the stage's name (default: the last, the only one of a single-stage experiment).
    inputs: trained model states of the stages it needs (`StageRun.state`), by name.
    label: the progress bar's label (default: the stage's name).
    keep_initial: also keep the model state before training (`StageRun.initial_state`).
  """
  s = experiment.stage(stage)
  train_config = dataclasses.replace(s.train_config(config), checkpoint_every=0)
  config = s.with_train_config(config, train_config)
  if workdir is not None:
    prepare_workdir(workdir, experiment.name, config, overwrite=True)
  trainer = build_trainer(experiment, config, workdir, s.name, inputs)
  initial = jax.device_get(trainer.state["model"]) if keep_initial else None
  result = trainer.run(progress(label or s.name, train_config.steps))
  return StageRun(s.name, None if workdir is None else Path(workdir), result, trainer.model, initial)


def _finished_summary(workdir: Path | None, steps: int) -> dict[str, Any] | None:
  """The summary.json of a run finished at `steps` in `workdir`, or None."""
  if workdir is None:
    return None
  try:
    summary = json.loads((Path(workdir) / "summary.json").read_text())
  except (OSError, ValueError):
    return None
  if not isinstance(summary, dict) or summary.get("step") != steps:
    return None
  if not {"final_metrics", "params_checksum"} <= set(summary):
    return None
  return summary


def _resume_stage(experiment: Experiment, config: Any, stage: Stage, workdir: Path | None,
                  inputs: Mapping[str, Any], progress: Progress, notify: Notify) -> StageRun:
  """Trains `stage` in `workdir` to its step count, resuming; a finished stage is restored."""
  multi = len(experiment.stages) > 1
  steps = stage.train_config(config).steps
  stage_dir = workdir
  if workdir is not None and multi:
    stage_dir = workdir / stage.name
    if jax.process_index() == 0:
      stage_dir.mkdir(exist_ok=True)
    _sync(f"jaxpapers-stage-{stage.name}")
  trainer = build_trainer(experiment, config, stage_dir, stage.name, inputs)
  resumed = trainer.restore_latest()
  prefix = f"stage {stage.name}: " if multi else ""
  summary = _finished_summary(stage_dir, steps) if resumed == steps else None
  finished = _agree(summary is not None)
  if finished:  # every process: the checksum gathers parameters sharded across hosts
    checksum = params_checksum(trainer.params())
    # A summary of another run (not these parameters): finish this one (final eval, new summary).
    finished = _agree(summary is not None and summary["params_checksum"] == checksum)
  if finished:
    notify(f"{prefix}already trained to step {steps}; restored its final checkpoint")
    result = TrainResult(steps, True, [], (summary or {}).get("final_metrics", {}), checksum)
  else:
    if resumed:
      notify(f"{prefix}resumed from the checkpoint of step {resumed}")
    label = f"{experiment.name} {stage.name}" if multi else experiment.name
    result = trainer.run(progress(label, steps))
  return StageRun(stage.name, stage_dir, result, trainer.model)


def _train_plan(experiment: Experiment, config: Any, workdir: Path | None, plan: list[Stage],
                progress: Progress, notify: Notify) -> StageRun:
  needed = {n for s in plan for n in s.needs}
  states: dict[str, Any] = {}
  run = None
  for stage in plan:
    run = _resume_stage(experiment, config, stage, workdir, {n: states[n] for n in stage.needs},
                        progress, notify)
    if not run.result.completed:  # SIGTERM: saved; the same command resumes here
      return run
    if stage.name in needed:
      states[stage.name] = run.state
  return run


def train(experiment: Experiment, config: Any, workdir: Path | None, overwrite: bool = False,
          progress: Progress = no_progress, notify: Notify = _ignore,
          stage: str | None = None) -> StageRun:
  """Trains a stage of `config` (default: the last) after the stages it needs, resuming each.

  A single-stage experiment trains in `workdir`; a multi-stage one trains stage S in
  `workdir/S`, with config.json and the lock in `workdir`. A stage already trained to its step
  count is restored from its final checkpoint rather than retrained; an unfinished one resumes
  from its newest checkpoint. While the run lasts, the workdir is locked against other runs. With
  `overwrite`, a workdir holding a different run or an unreadable checkpoint is moved aside (and
  named in a notice) and the run starts fresh.

  Args:
    experiment: the experiment.
    config: its resolved config.
    workdir: the top workdir (None: train in memory, nothing on disk).
    overwrite: move a mismatching or damaged run aside instead of refusing.
    progress: `progress(label, total_steps) -> callback or None`, one bar per stage run.
    notify: receives one-line notices (resumed, restored, lock taken over, moved aside).
    stage: the stage to train (default: the last).

  Returns:
    The target stage's run; `result.completed` is False when SIGTERM stopped a stage (then
    `stage` and `workdir` name the stopped stage).

  Raises:
    UsageError: no training run or no such stage; WorkdirError (refused or locked workdir) and
    CheckpointError (unreadable checkpoint, without `overwrite`) are UsageErrors too.
  """
  plan = experiment.plan(stage)
  mesh_lib.make_mesh(config.mesh)  # a mesh that does not fit the devices fails before any write
  if workdir is None:
    return _train_plan(experiment, config, None, plan, progress, notify)
  workdir = Path(workdir)
  check_workdir(workdir)  # a foreign folder is refused before the lock is written into it
  lock, notices = lock_workdir(workdir)
  try:
    for notice in notices:
      notify(notice)
    for notice in prepare_workdir(workdir, experiment.name, config, overwrite):
      notify(notice)
    try:
      return _train_plan(experiment, config, workdir, plan, progress, notify)
    except CheckpointError:
      if not overwrite:
        raise
      if jax.process_index() == 0:
        notify(f"moved the run with the unreadable checkpoint to {_move_away(workdir)}")
      _sync("jaxpapers-moved-away")
      prepare_workdir(workdir, experiment.name, config)
      return _train_plan(experiment, config, workdir, plan, progress, notify)
  finally:
    lock.release()


def init_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
  """Starts `jax.distributed` (gloo collectives on CPU) before any device is used."""
  if coordinator is None and "JAX_COORDINATOR_ADDRESS" not in os.environ:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


def reproduce(experiment: Experiment, preset: str, out_dir: Path, progress: Progress = no_progress,
              overrides: Sequence[str] = (), notify: Notify = _ignore) -> dict[str, Any]:
  """Runs an experiment's reproduction and writes OUT_DIR/NAME/report.{json,md} and plots.

  The report folder holds one reproduction at a time (the workdir lock).

  Args:
    experiment: the experiment.
    preset: smoke, small or paper.
    out_dir: parent folder of the experiment's report folder.
    progress: `progress(label, total_steps) -> callback or None`, for the CLI's progress bars.
    overrides: `key=value` overrides of the preset, recorded verbatim in the report.
    notify: receives one-line notices (e.g. a stale lock taken over).

  Returns:
    The report.json record.
  """
  overrides = [str(o) for o in overrides]
  config = experiment.config(preset, overrides)
  folder = Path(out_dir) / experiment.name
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"cannot create output folder {folder} ({e.strerror}); choose another --out") from None
  if not os.access(folder, os.W_OK):
    raise WorkdirError(f"output folder {folder} is not writable; choose another --out")
  lock, notices = lock_workdir(folder)
  try:
    for notice in notices:
      notify(notice)
    start = time.perf_counter()
    claims, plots = experiment.reproduce(config, preset, folder, progress)
    record = report_lib.build_report(experiment.name, experiment.paper, preset, claims,
                                     time.perf_counter() - start, overrides=overrides)
    if jax.process_index() == 0:
      report_lib.write_report(folder, record, experiment.title, plots)
  finally:
    lock.release()
  return record
