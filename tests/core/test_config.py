"""Config overrides, validation messages and round trips."""

import dataclasses
import json

import pytest

from jaxpapers.core import config as config_lib
from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.modular_addition.config import PRESETS, ModularAdditionConfig


def test_overrides_parse_types_and_nested_fields():
  cfg = config_lib.override(PRESETS["small"], ["lr=3e-3", "train.steps=20", "activation=quad",
                                                "mesh.fsdp=2", "train.seed=7"])
  assert cfg.lr == 3e-3 and isinstance(cfg.lr, float)
  assert cfg.train.steps == 20 and isinstance(cfg.train.steps, int)
  assert (cfg.activation, cfg.mesh.fsdp, cfg.train.seed) == ("quad", 2, 7)
  assert cfg.width == PRESETS["small"].width  # untouched fields keep the preset


@pytest.mark.parametrize("assignment, message", [
    ("lr=-1", "config field lr=-1.0 is invalid: must be in (0, 10]"),
    ("p=24", "config field p=24 is invalid: must be an odd integer >= 3"),
    ("train.steps=0", "config field train.steps=0 is invalid: must be >= 1"),
    ("train.steps_per_dispatch=0", "config field train.steps_per_dispatch=0 is invalid: must be >= 1"),
    ("activation=tanh", "config field activation='tanh' is invalid: must be one of relu, quad"),
    ("mesh.axis_types=manual", "mesh.axis_types='manual' is invalid: must be one of explicit, auto"),
    ("train.steps=ten", "config field train.steps='ten' has the wrong type: expected int"),
    ("frac_train=0.0", "config field frac_train=0.0 is invalid: must be in (0, 1]"),
    ("nope=1", "unknown config field 'nope'; known fields: p, width"),
    ("train.nope=1", "unknown config field 'train.nope'"),
    ("train=3", "config field train is a group"),
    ("lr", "is not of the form key=value"),
])
def test_bad_overrides_name_the_field_and_the_allowed_range(assignment, message):
  with pytest.raises(ConfigError) as err:
    config_lib.override(PRESETS["small"], [assignment])
  assert message in str(err.value)


def test_configs_are_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    PRESETS["small"].lr = 1.0


def test_json_round_trip(tmp_path):
  cfg = config_lib.override(PRESETS["smoke"], ["train.steps=5", "mesh.data=2"])
  config_lib.write_json(cfg, tmp_path / "config.json")
  back = config_lib.from_dict(ModularAdditionConfig, json.loads((tmp_path / "config.json").read_text()))
  assert back == cfg


def test_presets_match_the_spec():
  smoke, small, paper = PRESETS["smoke"], PRESETS["small"], PRESETS["paper"]
  assert (smoke.p, smoke.width, smoke.lr, smoke.weight_decay, smoke.train.steps) == (23, 256, 1e-3, 1.0, 4000)
  assert (small.p, small.width, small.lr, small.weight_decay, small.train.steps) == (31, 931, 1e-4, 2.0, 12000)
  assert (paper.p, paper.width) == (97, 9107)
  for cfg in PRESETS.values():
    assert (cfg.b1, cfg.b2, cfg.eps, cfg.warmup_steps, cfg.frac_train) == (0.9, 0.98, 1e-8, 10, 0.75)
