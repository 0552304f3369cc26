"""`jaxpapers plan`: what a stage's train step needs, from its compiled program; nothing allocated.

The stage's task is built as for training, its state only abstractly (`Trainer.abstract`:
`jax.ShapeDtypeStruct`s carrying the shardings of the logical-axis rules), and the jitted train
step is lowered on that state and on one batch's shapes (global batch, `mesh.batch_sharding`)
and compiled for a mesh of N devices. When N exceeds the local devices, the command re-runs
itself in a subprocess on N fake CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=N`,
`JAX_PLATFORMS=cpu`) and passes its JSON back: the numbers are then those of XLA's CPU compiler.

Reported, per step:
  * `params_total`: the model's `nnx.Param` elements; `params_active`: those one token touches,
    every parameter but the routed experts a token is not sent to: each `jaxpapers.nn.moe.MoE`
    contributes `top_k / num_experts` of its routed `gate`, `up` and `down` (the "activated
    parameters" of MoE reports, e.g. Trinity, arXiv 2602.17004, section 2; DeepSeek-V3, arXiv
    2412.19437, section 1).
  * `bytes_per_device`: parameters, optimizer state and the other state (router state, RNG) from
    each leaf's sharding (`shard_shape` x itemsize, summed; the largest device where a split is
    uneven), the batch, XLA's temporaries (`memory_analysis().temp_size_in_bytes`) and the
    outputs not aliased to donated inputs; their sum is `total`.
  * `flops_per_step`: XLA's per-device `cost_analysis()["flops"]` times the mesh's devices. XLA
    counts what it compiles: a dense-dispatch MoE runs every expert on every token, and on CPU
    `ragged_dot` is a masked dense contraction, so both count more than the useful FLOPs. It
    counts a `while` body once, whatever its trip count: with scanned layers (or any loop of
    matrix products that runs more than once; `while_loops` lists the loops) `flops_lower_bound`
    is true and the figure is only a lower bound (trinity: plan `model.scan_layers=false` for
    the full count).
  * `compile_seconds` (and `lower_seconds`), and `fits`: `total <= device memory`; null when no
    memory is known (`--device-memory`, else the local accelerator's `bytes_limit` when planned
    in-process on it; a CPU reports none).

A stage that needs earlier stages (a student and its teacher) gets their model states as zeros of
the right shapes and dtypes: concrete numpy arrays, not abstract ones, since a `make_task` may
close over them or copy them to devices (sparge's student starts from its teacher's state and
distils from it). `np.zeros` commits host memory only where it is written; a `make_task` that
copies them allocates them once, as training would.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core.errors import ConfigError, UsageError

CHILD_FLAG = "JAXPAPERS_PLAN_CHILD"  # set in the fake-device subprocess (it must not spawn again)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_ROUTED = ("gate", "up", "down")  # the routed-expert parameters of an MoE layer


def parse_size(text: str) -> int:
  """Bytes in a size such as `80GB` (10^9), `16GiB` (2^30), `1KB`, `512MiB`; a bare number is GB.

  Raises:
    UsageError: not a size.
  """
  match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]?i?b?)\s*", str(text), re.I)
  unit = match and match.group(2).lower()
  if not match or unit not in _UNITS:
    raise UsageError(f"--device-memory {text!r} is not a size; write e.g. 80GB (10^9 bytes) or "
                     "16GiB (2^30 bytes)")
  return int(float(match.group(1)) * (_UNITS[unit] if unit else 10**9))


def _itemsize(dtype: Any) -> int:
  return np.dtype(dtype).itemsize


def per_device_bytes(tree: Any) -> int:
  """Bytes one device holds of a tree of sharded `ShapeDtypeStruct`s (or arrays): per leaf its
  `sharding.shard_shape` x itemsize; where a split is uneven, the device holding the most."""
  even, uneven = 0, {}
  for leaf in jax.tree.leaves(tree):
    itemsize, shape = _itemsize(leaf.dtype), tuple(leaf.shape)
    try:
      even += math.prod(leaf.sharding.shard_shape(shape)) * itemsize
    except ValueError:  # uneven: count each device's slices
      for device, index in leaf.sharding.devices_indices_map(shape).items():
        size = math.prod(len(range(*s.indices(n))) for s, n in zip(index, shape))
        uneven[device] = uneven.get(device, 0) + size * itemsize
  return even + max(uneven.values(), default=0)


def global_bytes(tree: Any) -> int:
  """Bytes of the whole (unsharded) arrays of a tree."""
  return sum(math.prod(leaf.shape) * _itemsize(leaf.dtype) for leaf in jax.tree.leaves(tree))


def count_params(model: nnx.Module) -> tuple[int, int]:
  """(total, active) `nnx.Param` elements of a (possibly abstract) model.

  Active: all but the fraction `1 - top_k / num_experts` of every `MoE` layer's routed experts
  (`gate`, `up`, `down`; stacked layers included, since the count is over each array's size).
  """
  from jaxpapers.nn.moe import MoE  # pylint: disable=g-import-not-at-top
  total = sum(math.prod(np.shape(x)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  inactive = 0
  for _, node in nnx.iter_graph(model):
    if isinstance(node, MoE):
      routed = sum(math.prod(np.shape(getattr(node, name).get_value())) for name in _ROUTED)
      inactive += routed // node.num_experts * (node.num_experts - node.top_k)
  return total, total - inactive


def _zeros_like(abstract: Any) -> Any:
  """Concrete zeros (numpy; random keys from zero key data) of an abstract tree."""
  def zeros(leaf):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      data = jax.eval_shape(jax.random.key_data, leaf)
      return jax.random.wrap_key_data(np.zeros(data.shape, data.dtype))
    return np.zeros(leaf.shape, leaf.dtype)
  return jax.tree.map(zeros, abstract)


def _placeholder_state(task: Any, seed: int) -> Any:
  """A stage's model state as zeros of its shapes (what a later stage receives instead of the
  trained state when planning)."""
  abstract = nnx.eval_shape(lambda: task.init_model(rngs=nnx.Rngs(seed)))
  return _zeros_like(nnx.state(abstract))


def _abstract_batch(task: Any, mesh: jax.sharding.Mesh) -> dict[str, jax.ShapeDtypeStruct]:
  """One host batch's global shapes and dtypes, sharded as the trainer shards batches."""
  local = next(task.train_data)
  sharding = mesh_lib.batch_sharding(mesh)
  split = math.prod(mesh.shape[a] for a in mesh_lib.BATCH_AXES)
  batch = {}
  for key, value in local.items():
    value = np.asarray(value)
    shape = (value.shape[0] * jax.process_count(), *value.shape[1:])
    if shape[0] % split:
      axes = " x ".join(f"{a}={mesh.shape[a]}" for a in mesh_lib.BATCH_AXES)
      raise ConfigError(f"the global batch of {shape[0]} rows ({key!r}) does not split over "
                        f"the mesh's batch axes ({axes} = {split} devices); change the mesh or "
                        "the batch size")
    batch[key] = jax.ShapeDtypeStruct(shape, value.dtype, sharding=sharding)
  return batch


def _memory(compiled: Any) -> dict[str, int] | None:
  stats = compiled.memory_analysis()
  if stats is None:
    return None
  fields = ("argument", "output", "alias", "temp", "generated_code")
  return {f: int(getattr(stats, f"{f}_size_in_bytes", 0) or 0) for f in fields}


def _flops(compiled: Any) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", 0.0))


_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([^\s(]+)\s*\(.*\{\s*$")
_CALLS = re.compile(r"\b(?:calls|body|condition|to_apply|branch_computations)=\{?([%\w.\-, ]+)")
_TRIPS = re.compile(r'known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"(\d+)"')


def _computations(text: str) -> dict[str, list[str]]:
  """The HLO module's computations: name -> instruction lines."""
  out, name = {}, None
  for line in text.splitlines():
    header = _HEADER.match(line)
    if header and not line.startswith(" "):
      name = header.group(1)
      out[name] = []
    elif line.startswith("}"):
      name = None
    elif name is not None:
      out[name].append(line)
  return out


def _multiplies(name: str, computations: dict[str, list[str]], seen: set[str]) -> bool:
  """Whether computation `name`, or one it calls, holds a matrix product."""
  if name in seen or name not in computations:
    return False
  seen.add(name)
  for line in computations[name]:
    if " dot(" in line or " convolution(" in line or ("custom-call(" in line and "matmul" in line):
      return True
    for called in _CALLS.findall(line):
      if any(_multiplies(c.strip().lstrip("%"), computations, seen) for c in called.split(",")):
        return True
  return False


def while_loops(compiled: Any) -> list[dict[str, Any]]:
  """The `while` loops of the compiled program: `trips` (None where XLA does not know it) and
  `matmuls` (whether its body multiplies matrices: not, e.g., threefry's rounds).

  XLA's cost analysis counts a loop body once, whatever its trip count, so the FLOPs of a
  program whose loop of matrix products runs more than once (scanned layers, an optimizer's
  Newton-Schulz iteration) are a lower bound.
  """
  try:
    text = compiled.as_text()
  except Exception:  # pylint: disable=broad-except  # a backend without HLO text
    return []
  computations = _computations(text)
  loops = []
  for lines in computations.values():
    for line in lines:
      if " while(" not in line:
        continue
      trips = _TRIPS.search(line)
      body = re.search(r"\bbody=%?([\w.\-]+)", line)
      loops.append({"trips": int(trips.group(1)) if trips else None,
                    "matmuls": bool(body) and _multiplies(body.group(1), computations, set())})
  return loops


def _local_device_memory() -> int | None:
  device = jax.local_devices()[0]
  if device.platform == "cpu":
    return None
  try:
    stats = device.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    return None
  return stats.get("bytes_limit")


def plan_stage(experiment: Any, config: Any, stage: str | None = None, devices: int | None = None,
               device_memory: int | None = None, preset: str | None = None,
               available: Sequence[Any] | None = None) -> dict[str, Any]:
  """Plans a stage (default: the last) of `config` in this process, on its first `devices`.

  Args:
    experiment: the `Experiment`.
    config: its resolved config.
    stage: the stage's name.
    devices: devices to plan for, at most the local ones (default: all of them).
    device_memory: bytes of one device's memory (default: the local accelerator's, if any).
    preset: the preset's name, recorded.
    available: the devices to plan on (default `jax.devices()`); abstract TPU devices of a
      topology (`jaxpapers.core.tpu`) compile for TPU.

  Returns:
    The plan record (see the module docstring).

  Raises:
    UsageError: no such stage, more devices than there are, a mesh or batch that does not fit.
  """
  from jaxpapers.core.train import Trainer  # pylint: disable=g-import-not-at-top
  available = jax.devices() if available is None else list(available)
  devices = len(available) if devices is None else devices
  if not 1 <= devices <= len(available):
    raise UsageError(f"--devices {devices}: this process has {len(available)} devices")
  target = experiment.stage(stage)
  mesh = mesh_lib.make_mesh(config.mesh, available[:devices])
  states: dict[str, Any] = {}
  for s in experiment.plan(target.name)[:-1]:
    task = s.make_task(config, mesh, {n: states[n] for n in s.needs})
    states[s.name] = _placeholder_state(task, s.train_config(config).seed)
  task = target.make_task(config, mesh, {n: states[n] for n in target.needs})
  rules = mesh_lib.logical_rules(config.mesh)
  trainer = Trainer.abstract(task, target.train_config(config), mesh, rules)
  batch = _abstract_batch(task, mesh)
  start = time.perf_counter()
  lowered = trainer.lower_train_step(batch)
  lowered_at = time.perf_counter()
  with mesh_lib.use_mesh(mesh, rules):
    try:
      compiled = lowered.compile()
    except Exception as e:  # pylint: disable=broad-except
      compiled = _OutOfMemory.parse(e)  # the TPU compiler refuses a program that does not fit
      if compiled is None:
        raise
  compile_seconds = time.perf_counter() - lowered_at

  model_state = trainer.abstract_state["model"]
  params, other = nnx.split_state(model_state, nnx.Param, ...)
  total, active = count_params(nnx.merge(trainer._model_def, model_state))  # pylint: disable=protected-access
  memory = _memory(compiled)
  if isinstance(compiled, _OutOfMemory):
    memory = {"argument": None, "output": 0, "alias": 0, "temp": compiled.temporaries,
              "generated_code": None}
  per_device = {
      "params": per_device_bytes(params),
      "optimizer": per_device_bytes(trainer.abstract_state["optimizer"]),
      "other_state": per_device_bytes(other) + per_device_bytes(trainer.abstract_state["rng"]),
      "batch": per_device_bytes(batch),
      "temporaries": memory["temp"] if memory else None,
      "outputs_not_aliased": max(memory["output"] - memory["alias"], 0) if memory else None,
  }
  per_device["total"] = sum(v or 0 for v in per_device.values())
  if device_memory is None:
    device_memory = _local_device_memory()
  n = mesh.devices.size
  flops, loops = _flops(compiled), while_loops(compiled)
  refused = isinstance(compiled, _OutOfMemory)
  return {
      "name": experiment.name, "preset": preset, "stage": target.name,
      "devices": n, "platform": mesh.devices.flat[0].platform,
      "mesh": {axis: int(size) for axis, size in mesh.shape.items()},
      "params_total": total, "params_active": active,
      "param_bytes_total": global_bytes(params),
      "bytes_per_device": per_device,
      "memory_analysis": memory,
      "flops_per_device": None if refused else flops,
      "flops_per_step": None if refused else flops * n,
      "while_loops": loops,
      "flops_lower_bound": any(loop["matmuls"] and loop["trips"] != 1 for loop in loops),
      "lower_seconds": lowered_at - start, "compile_seconds": compile_seconds,
      "device_memory": device_memory,
      "fits": (False if refused else None if device_memory is None
               else per_device["total"] <= device_memory),
      "compile_error": compiled.message if refused else None,
  }


_TEMPORARIES = re.compile(r"HLO temporaries \(([0-9.]+)([KMGT]?)\)")


class _OutOfMemory:
  """A compile the TPU compiler refused for memory (`RESOURCE_EXHAUSTED: Ran out of memory on
  HBM, the total memory required for HLO temporaries (644.68G) exceeds available HBM (95.74G)`):
  it stands in for the compiled program, with the temporaries the compiler reported."""

  def __init__(self, message: str, temporaries: int):
    self.message, self.temporaries = message, temporaries

  @classmethod
  def parse(cls, error: Exception) -> "_OutOfMemory | None":
    text = str(error)
    match = _TEMPORARIES.search(text)
    if "RESOURCE_EXHAUSTED" not in text or match is None:
      return None
    scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[match.group(2)]
    line = next(ln for ln in text.splitlines() if "RESOURCE_EXHAUSTED" in ln)
    return cls(line.strip(), int(float(match.group(1)) * scale))

  def memory_analysis(self):
    return None

  def cost_analysis(self):
    return None

  def as_text(self):
    raise ValueError("no program: the compiler refused it")


def _child_env(devices: int) -> dict[str, str]:
  env = dict(os.environ)
  flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", env.get("XLA_FLAGS", ""))
  env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={devices}".strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_NUM_CPU_DEVICES"] = str(devices)
  env[CHILD_FLAG] = "1"
  return env


def plan_in_subprocess(name: str, preset: str, stage: str | None, devices: int,
                       device_memory: str | None, overrides: Sequence[str]) -> dict[str, Any]:
  """`jaxpapers plan ... --json` in a subprocess with `devices` fake CPU devices; its record.

  Raises:
    UsageError: the subprocess reported bad input (its one line).
    RuntimeError: it failed otherwise.
  """
  argv = [sys.executable, "-m", "jaxpapers.cli", "plan", name, "--preset", preset,
          "--devices", str(devices), "--json"]
  argv += ["--stage", stage] if stage else []
  argv += ["--device-memory", device_memory] if device_memory else []
  argv += list(overrides)
  done = subprocess.run(argv, env=_child_env(devices), capture_output=True, text=True, check=False)
  if done.returncode == 2:
    lines = done.stderr.strip().splitlines() or ["the planning subprocess reported bad input"]
    raise UsageError(lines[-1].removeprefix("jaxpapers: error: "))
  try:  # exit 1 with the record: it does not fit; without one: a crash
    record = json.loads(done.stdout.strip().splitlines()[-1])
  except (IndexError, ValueError):
    record = None
  if done.returncode not in (0, 1) or not isinstance(record, dict):
    raise RuntimeError(f"the planning subprocess on {devices} fake CPU devices failed (exit "
                       f"{done.returncode}):\n{done.stderr[-4000:]}")
  record["fake_devices"] = True
  return record


def plan(name: str, preset: str = "small", stage: str | None = None, devices: int | None = None,
         device_memory: str | None = None, overrides: Sequence[str] = (),
         topology: str | None = None) -> dict[str, Any]:
  """Plans experiment `name`'s stage on `devices` (in a fake-device subprocess when there are
  fewer local ones), or on every device of the TPU `topology` with the TPU compiler;
  `device_memory` is a size string (`parse_size`; for a topology, default its HBM per device).

  Raises:
    UsageError: bad name, preset, stage, override, mesh, size or topology.
  """
  from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top
  memory = None if device_memory is None else parse_size(device_memory)
  if devices is not None and devices < 1:
    raise UsageError(f"--devices {devices} is invalid: give at least 1")
  if devices is not None and topology is not None:
    raise UsageError("--devices and --topology exclude each other: a topology plans on all its "
                     "devices (name a smaller topology for fewer)")
  exp = registry.load_experiment(name)
  config = exp.config(preset, overrides)
  exp.stage(stage)
  if topology is not None:
    return plan_topology(exp, config, stage, topology, memory, preset)
  if devices is not None and devices > jax.device_count():
    if os.environ.get(CHILD_FLAG):
      raise UsageError(f"could not create {devices} fake CPU devices (got {jax.device_count()})")
    return plan_in_subprocess(name, preset, stage, devices, device_memory, overrides)
  record = plan_stage(exp, config, stage, devices, memory, preset)
  record["fake_devices"] = bool(os.environ.get(CHILD_FLAG))
  return record


def plan_topology(experiment: Any, config: Any, stage: str | None, name: str,
                  device_memory: int | None, preset: str | None) -> dict[str, Any]:
  """`plan_stage` on the abstract devices of TPU topology `name`, with the TPU compiler; the
  record adds `topology`, `device_kind` and `chips`, and `device_memory` defaults to the HBM
  of one of its devices (`jaxpapers.core.tpu.HBM_PER_CHIP`)."""
  from jaxpapers.core import tpu  # pylint: disable=g-import-not-at-top
  slice_ = tpu.topology(name)
  memory = slice_.device_memory if device_memory is None else device_memory
  record = plan_stage(experiment, config, stage, None, memory, preset, available=slice_.devices)
  record.update(topology=name, device_kind=slice_.device_kind, chips=slice_.chips,
                fake_devices=False)
  return record


def _size(n: int | None) -> str:
  if n is None:
    return "unknown"
  for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n >= scale:
      return f"{n / scale:.3g} {unit}"
  return f"{n} B"


def _count(n: int) -> str:
  for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
    if n >= scale:
      return f"{n:,} ({n / scale:.3g}{unit})"
  return f"{n:,}"


def format_table(record: Mapping[str, Any]) -> str:
  """The plan as a short aligned table (the human output of `jaxpapers plan`)."""
  mesh = " x ".join(f"{a} {n}" for a, n in record["mesh"].items())
  fake = ", fake CPU devices" if record.get("fake_devices") else ""
  if record.get("topology"):
    fake = (f", {record['device_kind']}, topology {record['topology']}, {record['chips']} chips; "
            "the TPU compiler")
  per = record["bytes_per_device"]
  fits = {None: "unknown (no --device-memory)", True: "yes", False: "NO"}[record["fits"]]
  rows = [
      ("experiment", f"{record['name']} ({record['preset']}), stage {record['stage']}"),
      ("devices", f"{record['devices']} ({record['platform']}{fake}): {mesh}"),
      ("params total", _count(record["params_total"])),
      ("params active", _count(record["params_active"])),
      ("param bytes", f"{_size(record['param_bytes_total'])} in all"),
      ("per device", ""),
      *((f"  {k.replace('_', ' ')}", _size(v)) for k, v in per.items()),
      ("FLOPs per step", "unknown (not compiled)" if record["flops_per_step"] is None else
       f"{record['flops_per_step']:.4g} (all devices)" + (
          "; at least: XLA counts a loop body once (loops of matrix products, trips: "
          + ", ".join(str(loop["trips"]) for loop in record["while_loops"] if loop["matmuls"])
          + ")"
          if record.get("flops_lower_bound") else "")),
      ("compile", f"{record['compile_seconds']:.1f} s (lowering {record['lower_seconds']:.1f} s)"),
      ("device memory", _size(record["device_memory"])),
      ("fits", fits),
      *((("compiler", record["compile_error"]),) if record.get("compile_error") else ()),
  ]
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in rows)
