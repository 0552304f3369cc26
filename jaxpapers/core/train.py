"""The one training loop of jaxpapers.

Experiments describe themselves with a `Task` (model, optimizer, loss, data, evaluation, and an
optional state update after each optimizer step) and hand it to `Trainer`. The loop jits one
step over `nnx.split` state with NamedShardings on a (data, fsdp) mesh, donates the state
buffers, evaluates every N steps on sharded evaluation batches, writes metrics.jsonl, checkpoints with orbax, resumes
automatically, and saves and stops on SIGTERM. A seed fixes the run; a resumed run ends with
bit-identical parameters to an uninterrupted one. With `train.steps_per_dispatch=K` one jitted
call runs up to K steps (`lax.scan`), never past the next eval, log or checkpoint step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import metrics as metrics_lib
from jaxpapers.core.checkpoint import Checkpointer
from jaxpapers.core.config import TrainConfig
from jaxpapers.core.errors import CheckpointError
from jaxpapers.core.metrics import MetricsWriter

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class DataIterator(Protocol):
  """A resumable iterator of this process's slice of each global batch."""

  def __next__(self) -> dict[str, np.ndarray]: ...
  def get_state(self) -> dict[str, Any]: ...
  def set_state(self, state: dict[str, Any]) -> None: ...


@dataclasses.dataclass(frozen=True)
class Task:
  """What an experiment gives the training loop.

  Attributes:
    init_model: builds the model as `init_model(rngs=nnx.Rngs(seed))`.
    optimizer: the optax transform applied to the `wrt` variables.
    loss_fn: `(model, batch, rng) -> (loss, aux)`; `aux` is a dict of arrays: scalars are
      logged, everything is passed to `after_update`.
    train_data: resumable iterator of host batches (dicts of numpy arrays), e.g.
      `jaxpapers.data.batches(...)` (grain).
    eval_data: split name -> that split's host batches (equal shapes, `"mask"` on padding rows,
      e.g. `jaxpapers.data.eval_batches(...)`). A sequence is sent to the devices once and kept
      there; any other iterable is read again at each evaluation.
    eval_fn: `(model, batch) -> dict of metrics`, run jitted on each sharded batch of each split
      every `eval_every` steps. Return `jaxpapers.core.metrics.mean(values, batch["mask"])`
      (a (sum, count) pair): sums and counts add over the batches, so a padded last batch gives
      the exact mean. A plain scalar is averaged over the batches. Logged as `SPLIT_NAME`.
    model_metrics: `model -> dict of scalar metrics` that need no data (weight norms, spectra),
      logged with the evaluation metrics under their own names.
    after_update: `(model, aux) -> dict or None`, mutates non-differentiated model state after
      each optimizer step, outside autodiff (e.g. router-bias balancing); scalar metrics it
      returns are logged with the step's.
      wrt: filter of the variables that are differentiated and optimized.
  """

  init_model: Callable[[nnx.Rngs], nnx.Module]
  optimizer: optax.GradientTransformation
  loss_fn: Callable[[nnx.Module, Batch, jax.Array], tuple[jax.Array, Metrics]]
  train_data: DataIterator
  eval_data: Mapping[str, Iterable[dict[str, np.ndarray]]] | None = None
  eval_fn: Callable[[nnx.Module, Batch], Metrics] | None = None
  model_metrics: Callable[[nnx.Module], Metrics] | None = None
  after_update: Callable[[nnx.Module, Metrics], Metrics | None] | None = None
  wrt: Any = nnx.Param


@dataclasses.dataclass
class TrainResult:
  """Outcome of `Trainer.run`: the last step reached and what was measured on the way."""

  step: int
  completed: bool
  history: list[dict[str, Any]]
  final_metrics: dict[str, Any]
  params_checksum: str


def params_checksum(tree: Any) -> str:
  """sha256 of the leaves' bytes, in the fixed order of their sorted key paths."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  digest = hashlib.sha256()
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      leaf = multihost_utils.process_allgather(leaf, tiled=True)
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(str(array.dtype).encode() + str(array.shape).encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _gather(x: jax.Array, sharding: NamedSharding) -> jax.Array:
  """All-gathers a parameter over `fsdp` before use (its transpose reduce-scatters the grads).

  The other axes of its `sharding` stay: `tensor` (Auto: the compiler partitions the matmuls)
  and `expert` (the MoE layer dispatches to the experts where they live).
  """
  mesh = sharding.mesh
  target = mesh_lib.without_axes(sharding.spec, ("fsdp",))
  if mesh_lib.is_explicit(mesh):  # reshard the Explicit axes, constrain the Auto one
    x = jax.sharding.reshard(x, mesh_lib.without_axes(target, ("tensor",)))
    target = mesh_lib.without_axes(target, mesh_lib.BATCH_AXES)
    if all(entry is None for entry in target):
      return x
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, target))


class _StopFlag:
  """Set by SIGTERM (when the trainer runs in the main thread)."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _stacked_batch(local_batches: list[dict[str, np.ndarray]], mesh: jax.sharding.Mesh) -> Batch:
  """Host batches stacked on a new leading axis: global [n, batch, ...] arrays, batch-sharded on axis 1."""
  sharding = mesh_lib.batch_sharding(mesh)
  stacked = NamedSharding(mesh, jax.sharding.PartitionSpec(None, *sharding.spec))
  return {k: jax.make_array_from_process_local_data(
      stacked, np.stack([np.asarray(b[k]) for b in local_batches])) for k in local_batches[0]}


class _DeviceBatches:
  """Host batches -> global device arrays; a batch object handed out again is not re-sent.

  Full-batch iterators return the same batch object every step (see data.FullBatch), so the
  loop transfers it once. `state` is the data-iterator position after the last batch taken.
  """

  def __init__(self, iterator: DataIterator, mesh: jax.sharding.Mesh):
    self._iterator, self._mesh = iterator, mesh
    self._host: dict[str, np.ndarray] | None = None
    self._device: Batch | None = None

  @property
  def state(self) -> dict[str, Any]:
    return self._iterator.get_state()

  def _on_device(self, local: dict[str, np.ndarray]) -> Batch:
    if local is not self._host:
      self._host, self._device = local, mesh_lib.global_batch(local, self._mesh)
    return self._device

  def take(self, n: int) -> tuple[Batch, bool]:
    """The next `n` batches on device.

    Returns:
      (batch, stacked): the `n` batches stacked on a new leading axis and True, or, when the
      iterator handed out one object `n` times (full batch), that one device batch and False.
    """
    local = [next(self._iterator) for _ in range(n)]
    if all(b is local[0] for b in local):
      return self._on_device(local[0]), False
    return _stacked_batch(local, self._mesh), True


class Trainer:
  """Runs a `Task` for `config.steps` optimizer steps on `mesh`.

  Args:
    task: the experiment's pieces.
    config: loop settings (steps, seed, eval/log/checkpoint cadence).
    mesh: the (data, fsdp, expert, tensor) device mesh.
    workdir: where metrics, checkpoints and summary.json go; None keeps nothing on disk.
    experiment: name recorded in checkpoints.
    run_config: the full resolved config, recorded in checkpoints.
    rules: logical-axis rules placing the parameters (`mesh.logical_rules(config.mesh)`).

  The state is born sharded: its shapes and logical names come from `nnx.eval_shape`, its
  shardings from `rules`, and one `jax.jit(init, out_shardings=...)` creates it, so no
  full-size array ever exists on one device. `Trainer.abstract` stops before that jit.

  Attributes:
    abstract_state: the state as `jax.ShapeDtypeStruct`s carrying their shardings.
    shardings: the state's NamedShardings (same structure).
  """

  def __init__(self, task: Task, config: TrainConfig, mesh: jax.sharding.Mesh,
               workdir: Path | None = None, experiment: str = "", run_config: dict | None = None,
               rules: mesh_lib.Rules = mesh_lib.DEFAULT_RULES):
    self._prepare(task, config, mesh, rules)
    self.workdir = None if workdir is None else Path(workdir)
    with mesh_lib.use_mesh(mesh, rules):
      state = jax.jit(lambda: self._init_state(*self._init_modules()),
                      out_shardings=self.shardings)()
    self._treedef = jax.tree.structure(state)
    self.state = state
    self.checkpointer = None
    if self.workdir is not None and config.checkpoint_every:
      self.checkpointer = Checkpointer(self.workdir / "checkpoints", experiment,
                                       run_config or {}, keep=config.keep_checkpoints)

  @classmethod
  def abstract(cls, task: Task, config: TrainConfig, mesh: jax.sharding.Mesh,
               rules: mesh_lib.Rules = mesh_lib.DEFAULT_RULES) -> Trainer:
    """A trainer whose state is never created (planning: `jaxpapers plan`).

    It has `abstract_state`, `shardings` and the jitted `_train_step` (to `.lower` on
    `abstract_state`'s leaves), but no `state`: nothing is allocated, no init is run.
    """
    trainer = cls.__new__(cls)
    trainer._prepare(task, config, mesh, rules)
    trainer.workdir, trainer.checkpointer = None, None
    return trainer

  def _prepare(self, task: Task, config: TrainConfig, mesh: jax.sharding.Mesh,
               rules: mesh_lib.Rules) -> None:
    """Everything but the state: graph definitions, shardings, abstract state, jitted steps."""
    self.task, self.config, self.mesh, self.rules = task, config, mesh, rules
    abstract = nnx.eval_shape(self._init_modules)  # outside the mesh: names are not mesh axes
    self._model_def, self._opt_def = nnx.graphdef(abstract[0]), nnx.graphdef(abstract[1])
    abstract_state = self._init_state(*abstract)
    self.shardings = mesh_lib.state_shardings(abstract_state, mesh, rules)
    # `shardings` is a prefix of the state (a leaf-less subtree, e.g. optax's MaskedNode, gets
    # one sharding too), so it leads the map.
    self.abstract_state = jax.tree.map(
        lambda s, sub: jax.tree.map(lambda a: jax.ShapeDtypeStruct(
            a.shape, a.dtype, sharding=s, weak_type=getattr(a, "weak_type", False)), sub),
        self.shardings, abstract_state)
    self._treedef = jax.tree.structure(abstract_state)
    self._param_shardings = nnx.split_state(self.shardings["model"], task.wrt, ...)[0]
    self.step = 0
    self._train_step = jax.jit(self._flat_step, donate_argnums=0)
    # Multi-step programs (train.steps_per_dispatch): jit caches one per chunk length.
    self._train_repeated = jax.jit(self._flat_repeated, donate_argnums=0, static_argnums=2)
    self._train_stacked = jax.jit(self._flat_stacked, donate_argnums=0)
    if bool(task.eval_data) != (task.eval_fn is not None):
      raise ValueError("a Task needs eval_data and eval_fn together (or neither)")
    self._eval_step = jax.jit(self._eval_accumulate, donate_argnums=2)
    self._model_metrics = jax.jit(self._model_metrics_fn) if task.model_metrics else None
    self._eval_device: dict[str, list[Batch]] = {}  # sequences of eval batches, sent once
    self._eval_shapes: dict[str, Any] = {}  # each split's metric shapes

  def lower_train_step(self, batch: Any) -> jax.stages.Lowered:
    """The jitted train step lowered on `abstract_state` and `batch` (ShapeDtypeStructs or
    arrays with the batch sharding), for its compiled memory and cost analyses."""
    with mesh_lib.use_mesh(self.mesh, self.rules):
      return self._train_step.lower(jax.tree.leaves(self.abstract_state), batch)

  @property
  def state(self) -> dict[str, Any]:
    """Train state: {"model": nnx state, "optimizer": nnx state, "rng": key data}."""
    return jax.tree.unflatten(self._treedef, self._leaves)

  @state.setter
  def state(self, value: dict[str, Any]) -> None:
    self._leaves = jax.tree.leaves(value)

  # ---- pure functions (traced once) ----

  def _init_modules(self) -> tuple[nnx.Module, nnx.Optimizer]:
    model = self.task.init_model(rngs=nnx.Rngs(self.config.seed))
    return model, nnx.Optimizer(model, self.task.optimizer, wrt=self.task.wrt)

  def _init_state(self, model: nnx.Module, optimizer: nnx.Optimizer) -> dict[str, Any]:
    rng = jax.random.key_data(jax.random.key(self.config.seed + 1))
    return {"model": nnx.state(model), "optimizer": nnx.state(optimizer), "rng": rng}

  def _gathered(self, params):
    return jax.tree.map(_gather, params, self._param_shardings)

  def _flat_step(self, leaves, batch):
    """The step on the state's flat leaves: a list dispatches faster than nested nnx states."""
    state, metrics = self._step_fn(jax.tree.unflatten(self._treedef, leaves), batch)
    assert jax.tree.structure(state) == self._treedef, "the step changed the state's structure"
    return jax.tree.leaves(state), metrics

  def _flat_repeated(self, leaves, batch, length: int):
    """`length` steps on the one `batch` (full-batch tasks); the last step's metrics."""
    leaves, metrics = jax.lax.scan(lambda carry, _: self._flat_step(carry, batch), leaves,
                                   length=length)
    return leaves, jax.tree.map(lambda m: m[-1], metrics)

  def _flat_stacked(self, leaves, batches):
    """One step per leading index of `batches` ([n, batch, ...]); the last step's metrics."""
    leaves, metrics = jax.lax.scan(self._flat_step, leaves, batches)
    return leaves, jax.tree.map(lambda m: m[-1], metrics)

  def _model(self, state) -> nnx.Module:
    params, rest = nnx.split_state(state["model"], self.task.wrt, ...)
    return nnx.merge(self._model_def, self._gathered(params), rest)

  def _step_fn(self, state, batch):
    rng, step_rng = jax.random.split(jax.random.wrap_key_data(state["rng"]))
    params, rest = nnx.split_state(state["model"], self.task.wrt, ...)

    def loss_of(params):
      model = nnx.merge(self._model_def, self._gathered(params), rest)
      loss, aux = self.task.loss_fn(model, batch, step_rng)
      return loss, (aux, nnx.state(model, nnx.Not(self.task.wrt)))

    (loss, (aux, rest)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    model = nnx.merge(self._model_def, params, rest)
    optimizer = nnx.merge(self._opt_def, state["optimizer"])
    optimizer.update(model, grads)
    if self.task.after_update is not None:
      aux = {**aux, **(self.task.after_update(model, aux) or {})}
    scalars = {k: v for k, v in aux.items() if jnp.ndim(v) == 0}
    new_state = {"model": nnx.state(model), "optimizer": nnx.state(optimizer),
                 "rng": jax.random.key_data(rng)}
    return new_state, {"loss": loss, **scalars}

  def _eval_metrics(self, leaves, batch) -> dict[str, metrics_lib.Mean]:
    model = self._model(jax.tree.unflatten(self._treedef, leaves))
    return {k: metrics_lib.as_mean(v) for k, v in self.task.eval_fn(model, batch).items()}

  def _eval_accumulate(self, leaves, batch, totals):
    """`totals` plus this batch's (sum, count) of every metric."""
    out = self._eval_metrics(leaves, batch)
    return jax.tree.map(jnp.add, totals, out)

  def _model_metrics_fn(self, leaves):
    return self.task.model_metrics(self._model(jax.tree.unflatten(self._treedef, leaves)))

  # ---- host-side loop ----

  @property
  def model(self) -> nnx.Module:
    """The current model (a fresh Module over the current state)."""
    return nnx.merge(self._model_def, self.state["model"])

  def params(self) -> Any:
    return nnx.split_state(self.state["model"], self.task.wrt, ...)[0]

  def restore_latest(self) -> int:
    """Resumes from the newest checkpoint in the workdir, if any; returns the step."""
    if self.checkpointer is None:
      return self.step
    latest = self.checkpointer.latest_step()
    if latest is None:
      return self.step
    state, data_state = self.checkpointer.restore(latest, self.state)
    if jax.tree.structure(state) != self._treedef:
      raise CheckpointError(
          f"checkpoint {latest} in {self.checkpointer.directory} holds a differently structured "
          "state than this model's; it was left untouched: use another --workdir")
    try:
      self.task.train_data.set_state(data_state)
    except (ValueError, KeyError, TypeError) as e:
      raise CheckpointError(
          f"the data position in checkpoint {latest} of {self.checkpointer.directory} does not fit "
          f"this run's data ({e}); it was left untouched: use another --workdir") from None
    self.state, self.step = state, latest
    return latest

  def _save(self, data_state: dict[str, Any]) -> None:
    if self.checkpointer is not None and self.checkpointer.latest_step() != self.step:
      self.checkpointer.save(self.step, self.state, data_state)

  def _chunk(self) -> int:
    """Steps of the next call: at most K, never past the next eval, log or checkpoint step."""
    cfg = self.config
    limits = [cfg.steps_per_dispatch, cfg.steps - self.step]
    limits += [every - self.step % every
               for every in (cfg.eval_every, cfg.log_every, cfg.checkpoint_every) if every]
    return min(limits)

  def _dispatch(self, data: _DeviceBatches, n: int) -> Metrics:
    """Runs `n` steps in one jitted call on the next `n` batches; the last step's metrics."""
    batch, stacked = data.take(n)
    if stacked:
      self._leaves, metrics = self._train_stacked(self._leaves, batch)
    elif n == 1:
      self._leaves, metrics = self._train_step(self._leaves, batch)
    else:
      self._leaves, metrics = self._train_repeated(self._leaves, batch, n)
    self.step += n
    return metrics

  def _eval_split(self, name: str, batches: Iterable[dict[str, np.ndarray]]):
    """The device batches of one split (a sequence is sent once and cached)."""
    if name in self._eval_device:
      return self._eval_device[name]
    on_device = (mesh_lib.global_batch(b, self.mesh) for b in batches)
    if isinstance(batches, Sequence):
      on_device = self._eval_device[name] = list(on_device)
    return on_device

  def evaluate(self) -> dict[str, float]:
    """Every split's metrics (sums and counts over its batches) and the model metrics."""
    out: dict[str, Any] = {}
    with mesh_lib.use_mesh(self.mesh, self.rules):
      for split, batches in (self.task.eval_data or {}).items():
        totals = None
        for batch in self._eval_split(split, batches):
          if totals is None:
            if split not in self._eval_shapes:
              self._eval_shapes[split] = jax.eval_shape(self._eval_metrics, self._leaves, batch)
            totals = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._eval_shapes[split])
          totals = self._eval_step(self._leaves, batch, totals)
        if totals is None:
          raise ValueError(f"evaluation split {split!r} has no batches")
        out.update({f"{split}_{k}": m.value() for k, m in totals.items()})
      if self._model_metrics is not None:
        out.update(self._model_metrics(self._leaves))
    return {k: float(v) for k, v in jax.device_get(out).items()}

  def run(self, callback: Callable[[int, dict[str, Any]], None] | None = None) -> TrainResult:
    """Trains from the current step to `config.steps`.

    Args:
      callback: called as `callback(step, record)` after each logged record (for progress
        bars); `record["kind"]` is "train" or "eval".

    Returns:
      The result; `completed` is False when SIGTERM stopped the run (a checkpoint was saved).
      SIGTERM is seen between jitted calls: with `steps_per_dispatch` K > 1 the running call's
      steps (at most K) finish first, and the checkpoint is of the step they reach.
    """
    cfg = self.config
    writer = MetricsWriter(self.workdir)
    writer.rewind(self.step)
    history: list[dict[str, Any]] = []
    last_train: dict[str, Any] = {}

    def record(kind: str, metrics: dict[str, Any]) -> None:
      rec = writer.write(self.step, kind, metrics)
      history.append(rec)
      if callback is not None:
        callback(self.step, rec)

    data = _DeviceBatches(self.task.train_data, self.mesh)
    t0, s0 = time.perf_counter(), self.step
    try:
      with _StopFlag() as stop, mesh_lib.use_mesh(self.mesh, self.rules):
        while self.step < cfg.steps:
          if cfg.eval_every and self.step % cfg.eval_every == 0:
            record("eval", self.evaluate())
          metrics = self._dispatch(data, self._chunk())
          if self.step % cfg.log_every == 0 or self.step == cfg.steps:
            elapsed = time.perf_counter() - t0
            last_train = {k: float(v) for k, v in jax.device_get(metrics).items()}
            record("train", {**last_train, "steps_per_second": (self.step - s0) / max(elapsed, 1e-9)})
          if stop.requested or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
            self._save(data.state)
          if stop.requested:
            return TrainResult(self.step, False, history, last_train, params_checksum(self.params()))
        final_eval = self.evaluate()
        record("eval", final_eval)
    finally:
      writer.close()
    self._save(data.state)
    final = {**{f"train_{k}": v for k, v in last_train.items()}, **final_eval}
    result = TrainResult(self.step, True, history, final, params_checksum(self.params()))
    if self.workdir is not None and jax.process_index() == 0:
      summary = {"step": result.step, "final_metrics": final, "params_checksum": result.params_checksum}
      (self.workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result
