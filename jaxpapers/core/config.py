"""Frozen dataclass configs: presets, `key=value` overrides, validation, config.json.

Every experiment config is a frozen dataclass that nests the shared `TrainConfig` and
`MeshConfig`. Validation lives in `__post_init__` and raises `ConfigError` with the field
name and the allowed range, so a bad override fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

from jaxpapers.core.errors import ConfigError

C = TypeVar("C")


def check(ok: bool, name: str, value: Any, allowed: str) -> None:
  """Raises ConfigError `name=value is invalid: must be ALLOWED` unless `ok`."""
  if not ok:
    raise ConfigError(f"config field {name}={value!r} is invalid: must be {allowed}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
  check(value in choices, name, value, "one of " + ", ".join(map(str, choices)))


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh: `data` x `fsdp` x `expert` x `tensor` devices; -1 on `data`: all the rest.

  Attributes:
    data: data-parallel degree (batch sharded, parameters replicated).
    fsdp: fully-sharded degree (batch and parameters sharded).
    expert: expert-parallel degree (batch sharded, routed experts split by expert).
    tensor: tensor-parallel degree (heads and MLP hidden units split; the batch is not).
    axis_types: "explicit" or "auto" sharding mode of the data, fsdp and expert axes
      (`tensor` is always auto).
    rules: logical-axis rules over the defaults (`jaxpapers.core.mesh.DEFAULT_RULES`), each
      "name=axis" or "name=axis+axis", or "name=" to replicate, e.g. `mesh.rules=embed=,mlp=fsdp`.
  """

  data: int = -1
  fsdp: int = 1
  expert: int = 1
  tensor: int = 1
  axis_types: str = "explicit"
  rules: tuple[str, ...] = ()

  def __post_init__(self):
    check(self.data == -1 or self.data >= 1, "mesh.data", self.data, ">= 1, or -1 for all devices")
    check(self.fsdp >= 1, "mesh.fsdp", self.fsdp, ">= 1")
    check(self.expert >= 1, "mesh.expert", self.expert, ">= 1")
    check(self.tensor >= 1, "mesh.tensor", self.tensor, ">= 1")
    check_choice("mesh.axis_types", self.axis_types, ("explicit", "auto"))
    axes = ("data", "fsdp", "expert", "tensor")
    for rule in self.rules:
      name, sep, targets = rule.partition("=")
      check(bool(sep and name.strip()) and all(a.strip() in axes for a in targets.split("+")
                                               if a.strip()),
            "mesh.rules", rule, "name=axis[+axis] with axes among " + ", ".join(axes))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Settings of the shared training loop.

  Attributes:
    steps: optimizer steps in the run.
    seed: fixes initialization, data order and every random draw of the run.
    eval_every: steps between evaluations (0: only at the end).
    log_every: steps between training-metric records in metrics.jsonl.
    checkpoint_every: steps between checkpoints (0: no checkpoints).
    keep_checkpoints: how many recent checkpoints to keep.
    steps_per_dispatch: optimizer steps per jitted call (K): `lax.scan` over K stacked batches,
      or K times over the one device batch of a full-batch task. A call never crosses an
      eval, log or checkpoint step or the end (it runs fewer steps there), so cadences, logged
      records and resume are those of K=1; SIGTERM is seen between calls.
  """

  steps: int = 1000
  seed: int = 0
  eval_every: int = 100
  log_every: int = 100
  checkpoint_every: int = 500
  keep_checkpoints: int = 2
  steps_per_dispatch: int = 1

  def __post_init__(self):
    check(self.steps >= 1, "train.steps", self.steps, ">= 1")
    check(self.seed >= 0, "train.seed", self.seed, ">= 0")
    check(self.eval_every >= 0, "train.eval_every", self.eval_every, ">= 0")
    check(self.log_every >= 1, "train.log_every", self.log_every, ">= 1")
    check(self.checkpoint_every >= 0, "train.checkpoint_every", self.checkpoint_every, ">= 0")
    check(self.keep_checkpoints >= 1, "train.keep_checkpoints", self.keep_checkpoints, ">= 1")
    check(self.steps_per_dispatch >= 1, "train.steps_per_dispatch", self.steps_per_dispatch, ">= 1")


def to_dict(config: Any) -> dict[str, Any]:
  """The config as a JSON-ready nested dict."""
  return dataclasses.asdict(config)


def _field_types(cls: type) -> dict[str, Any]:
  return typing.get_type_hints(cls)


def _parse_value(name: str, text: str, typ: Any) -> Any:
  """Parses `text` as type `typ` (bool, int, float, str, tuples and unions of them)."""
  origin = typing.get_origin(typ)
  if origin in (typing.Union, types.UnionType):
    if text.lower() in ("none", "null") and type(None) in typing.get_args(typ):
      return None
    errors = []
    for arg in typing.get_args(typ):
      if arg is type(None):
        continue
      try:
        return _parse_value(name, text, arg)
      except ConfigError as e:
        errors.append(str(e))
    raise ConfigError(errors[0])
  if origin is tuple:
    (elem, *_) = typing.get_args(typ)
    items = [t for t in text.strip("()[] ").split(",") if t.strip()]
    return tuple(_parse_value(name, t.strip(), elem) for t in items)
  if typ is bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
      return True
    if lowered in ("0", "false", "no", "off"):
      return False
    raise ConfigError(f"config field {name}={text!r} has the wrong type: expected true or false")
  if typ in (int, float):
    try:
      value = float(text) if typ is float else int(text)
    except ValueError:
      raise ConfigError(
          f"config field {name}={text!r} has the wrong type: expected {typ.__name__}, "
          f"e.g. {name}={'0.001' if typ is float else '100'}") from None
    return value
  if typ is str:
    return text
  raise ConfigError(f"config field {name} cannot be set from the command line")


def override(config: C, assignments: Sequence[str]) -> C:
  """Returns `config` with `key=value` assignments applied (dotted keys for nested fields).

  Args:
    config: a frozen dataclass instance.
    assignments: strings like `lr=1e-3` or `train.steps=200`.

  Raises:
    ConfigError: malformed assignment, unknown field, wrong type or out-of-range value.
  """
  for assignment in assignments:
    key, sep, text = assignment.partition("=")
    if not sep or not key:
      raise ConfigError(f"override {assignment!r} is not of the form key=value (e.g. train.steps=200)")
    config = _set(config, key.strip().split("."), text.strip(), key.strip())
  return config


def _set(config: Any, path: list[str], text: str, full_key: str) -> Any:
  names = [f.name for f in dataclasses.fields(config)]
  head, rest = path[0], path[1:]
  if head not in names:
    raise ConfigError(
        f"unknown config field {full_key!r}; known fields: {', '.join(_all_keys(config))}")
  current = getattr(config, head)
  if rest:
    if not dataclasses.is_dataclass(current):
      raise ConfigError(f"config field {'.'.join(full_key.split('.')[:-len(rest)])} has no sub-fields")
    value = _set(current, rest, text, full_key)
  else:
    if dataclasses.is_dataclass(current):
      raise ConfigError(f"config field {full_key} is a group; set one of its fields, e.g. {full_key}.{dataclasses.fields(current)[0].name}=...")
    value = _parse_value(full_key, text, _field_types(type(config))[head])
  return dataclasses.replace(config, **{head: value})


def _all_keys(config: Any, prefix: str = "") -> list[str]:
  keys = []
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    if dataclasses.is_dataclass(value):
      keys += _all_keys(value, prefix + f.name + ".")
    else:
      keys.append(prefix + f.name)
  return keys


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
  """Rebuilds a (nested) config dataclass from `to_dict` output."""
  hints = _field_types(cls)
  kwargs = {}
  for f in dataclasses.fields(cls):
    if f.name not in data:
      continue
    value, typ = data[f.name], hints[f.name]
    if dataclasses.is_dataclass(typ):
      value = from_dict(typ, value)
    elif typing.get_origin(typ) is tuple:
      value = tuple(value)
    kwargs[f.name] = value
  return cls(**kwargs)


def write_json(config: Any, path: Path) -> None:
  """Writes the resolved config as pretty JSON."""
  Path(path).write_text(json.dumps(to_dict(config), indent=2, sort_keys=True) + "\n")
