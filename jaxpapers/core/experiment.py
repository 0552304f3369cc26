"""What an experiment declares, and the driver that trains one in a workdir.

An experiment folder (`experiments/<name>/run.py`) exposes `EXPERIMENT`, an `Experiment`. The
CLI and tests go through `train()` here, which owns the workdir rules: config.json, refusal of
foreign or mismatching workdirs, `--overwrite` that moves (never deletes) the old run, and
auto-resume from the newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import jax

from jaxpapers.core import config as config_lib
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import report as report_lib
from jaxpapers.core.errors import CheckpointError, ConfigError, UsageError, WorkdirError
from jaxpapers.core.train import Task, Trainer, TrainResult

PRESETS = ("smoke", "small", "paper")


def folder_name(module_name: str) -> str:
  """The registry name of the experiment whose module is `module_name`: its folder's name.

  `run.py` builds its experiment with `name=folder_name(__name__)`, so the name cannot drift
  from the folder (`jaxpapers.experiments.<folder>.run` -> `<folder>`).
  """
  parts = module_name.split(".")
  if "experiments" not in parts[:-1]:
    raise ValueError(f"{module_name!r} is not a module of an experiment folder")
  return parts[parts.index("experiments") + 1]


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A paper's experiment as the CLI sees it.

  Attributes:
    name: registry name (`jaxpapers train NAME`): the folder's name, `folder_name(__name__)`.
    paper: arXiv id.
    title: paper title.
    presets: preset name -> config (a frozen dataclass with `train` and `mesh` fields).
    make_task: `(config, mesh) -> Task`, the pieces the shared loop runs.
    reproduce: `(config, preset, out_dir, callback) -> (claims, plots)`; see core/report.
    status: one word for `jaxpapers list` (e.g. "reproduced", "in progress").
    trainable: False for experiments without a training run (`jaxpapers train` refuses them
      before touching the workdir).
  """

  name: str
  paper: str
  title: str
  presets: dict[str, Any]
  make_task: Callable[[Any, jax.sharding.Mesh], Task]
  reproduce: Callable[..., Any]
  status: str = "reproduced"
  trainable: bool = True

  def config(self, preset: str, overrides: list[str] = ()) -> Any:
    """The preset's config with `key=value` overrides applied."""
    if preset not in self.presets:
      raise ConfigError(f"unknown preset {preset!r} for {self.name}; choose one of {', '.join(self.presets)}")
    return config_lib.override(self.presets[preset], list(overrides))


def _record(experiment: str, config: Any) -> dict[str, Any]:
  return {"experiment": experiment, "config": config_lib.to_dict(config)}


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


def _move_away(workdir: Path) -> Path:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  target = workdir.with_name(f"{workdir.name}.old-{stamp}")
  shutil.move(str(workdir), str(target))
  workdir.mkdir()
  return target


def _sync(name: str) -> None:
  """Barrier across processes (multi-host); a no-op in one process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def prepare_workdir(workdir: Path, experiment: str, config: Any, overwrite: bool = False) -> list[str]:
  """Makes `workdir` ready for a run of `config`; returns notices for the user.

  A workdir is accepted when it is new, empty, or holds a run of the same experiment and
  config (which is then resumed). Otherwise it is refused, or with `overwrite` its old contents
  are moved to a sibling `NAME.old-TIMESTAMP` folder (nothing is deleted). A non-empty folder
  that holds no jaxpapers run is always refused. In a multi-host run every process checks the
  same files, then process 0 alone writes.

  Raises:
    WorkdirError: the workdir is unwritable, foreign, or holds a different run.
  """
  workdir = Path(workdir)
  new = _record(experiment, config)
  config_file = workdir / "config.json"
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"workdir {workdir} is a file; pass a directory to --workdir")
  move = False
  if config_file.exists():
    try:
      old = json.loads(config_file.read_text())
    except ValueError:
      old = {"unreadable": str(config_file)}
    if old != new:
      changes = _diff(old, new)
      if not overwrite:
        shown = "; ".join(changes[:4]) + (" ..." if len(changes) > 4 else "")
        raise WorkdirError(
            f"workdir {workdir} holds a different run ({shown}); use another --workdir, or "
            "--overwrite to move the old run aside")
      move = True
  elif workdir.is_dir() and any(workdir.iterdir()):
    raise WorkdirError(
        f"workdir {workdir} is not empty and holds no jaxpapers run (no config.json); choose an "
        "empty or new --workdir")
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


def build_trainer(experiment: Experiment, config: Any, workdir: Path | None) -> Trainer:
  """The trainer of `config` on a mesh of all devices, not yet resumed."""
  mesh = mesh_lib.make_mesh(config.mesh)
  task = experiment.make_task(config, mesh)
  return Trainer(task, config.train, mesh, workdir, experiment.name,
                 _record(experiment.name, config))


def fresh_trainer(experiment: Experiment, config: Any, workdir: Path) -> Trainer:
  """A trainer for a reproduction run: from scratch, no checkpoints, metrics in `workdir`.

  A previous run with another config in `workdir` is moved aside (as with --overwrite).
  """
  train_config = dataclasses.replace(config.train, checkpoint_every=0)
  config = dataclasses.replace(config, train=train_config)
  prepare_workdir(workdir, experiment.name, config, overwrite=True)
  return build_trainer(experiment, config, workdir)


def train(experiment: Experiment, config: Any, workdir: Path | None,
          overwrite: bool = False, callback=None, notices: list[str] | None = None) -> TrainResult:
  """Trains `config` in `workdir`, resuming from its newest checkpoint if it has one.

  With `overwrite`, a workdir holding a different run or an unreadable checkpoint is moved
  aside (and named in `notices`) and the run starts fresh.
  """
  notices = [] if notices is None else notices
  if not experiment.trainable:
    raise UsageError(f"the {experiment.name} experiment has no training run; use `jaxpapers "
                     f"reproduce {experiment.name}` or `jaxpapers bench {experiment.name}`")
  mesh_lib.make_mesh(config.mesh)  # a mesh that does not fit the devices fails before any write
  if workdir is not None:
    notices.extend(prepare_workdir(workdir, experiment.name, config, overwrite))
  trainer = build_trainer(experiment, config, workdir)
  try:
    resumed = trainer.restore_latest()
  except CheckpointError:
    if not overwrite:
      raise
    notices.append(f"moved the run with the unreadable checkpoint to {_move_away(Path(workdir))}")
    prepare_workdir(workdir, experiment.name, config)
    trainer = build_trainer(experiment, config, workdir)
    resumed = 0
  if resumed:
    notices.append(f"resumed from the checkpoint of step {resumed}")
  return trainer.run(callback)


def init_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
  """Starts `jax.distributed` (gloo collectives on CPU) before any device is used."""
  if coordinator is None and "JAX_COORDINATOR_ADDRESS" not in os.environ:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


def no_progress(label: str, total: int):  # pylint: disable=unused-argument
  """A progress factory that shows nothing (library and test use)."""
  return None


def reproduce(experiment: Experiment, preset: str, out_dir: Path, progress=no_progress,
              overrides: list[str] = ()) -> dict[str, Any]:
  """Runs an experiment's reproduction and writes OUT_DIR/NAME/report.{json,md} and plots.

  Args:
    experiment: the experiment.
    preset: smoke, small or paper.
    out_dir: parent folder of the experiment's report folder.
    progress: `progress(label, total_steps) -> callback or None`, for the CLI's progress bars.
    overrides: `key=value` overrides of the preset.

  Returns:
    The report.json record.
  """
  config = experiment.config(preset, list(overrides))
  folder = Path(out_dir) / experiment.name
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"cannot create output folder {folder} ({e.strerror}); choose another --out") from None
  if not os.access(folder, os.W_OK):
    raise WorkdirError(f"output folder {folder} is not writable; choose another --out")
  start = time.perf_counter()
  claims, plots = experiment.reproduce(config, preset, folder, progress)
  record = report_lib.build_report(experiment.name, experiment.paper, preset, claims,
                                   time.perf_counter() - start)
  if jax.process_index() == 0:
    report_lib.write_report(folder, record, experiment.title, plots)
  return record
