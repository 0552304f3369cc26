"""DDiT experiment: smoke results, config checks, data sources, study helpers."""

import dataclasses
import json

import numpy as np
import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.ddit import data as data_lib
from jaxpapers.experiments.ddit import study
from jaxpapers.experiments.ddit.config import DataConfig, DDiTConfig
from jaxpapers.experiments.ddit.run import EXPERIMENT
from jaxpapers.nn.dit import DiTConfig
from jaxpapers.nn.multipatch_dit import MultiPatchConfig


def test_smoke_report_covers_the_ci_checks_and_the_study(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed."""
  run = smoke_report("ddit")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"third_diff", "scheduler_synthetic", "patchify_round_trip", "pi_resize",
          "flop_all_coarse", "distillation_loss_decreases", "base_path_at_init",
          "base_path_after_distillation", "ddit_flop_ratio", "ddit_psnr_vs_static_late",
          "flop_ratio_decreases_with_tau", "ddit_fd_gap_closed"} <= set(claims)
  assert claims["base_path_at_init"]["measured"] == 0.0
  assert claims["base_path_after_distillation"]["measured"] == 0.0
  for png in ("study.png", "samples.png"):
    assert (run.folder / png).read_bytes()[:4] == b"\x89PNG"
  m = json.loads((run.folder / "measurements.json").read_text())
  assert m["tau"] > 0 and m["methods"]["base"]["flop_ratio"] == 1.0
  assert m["methods"]["base"]["psnr_vs_base"] == 100.0  # identical samples (capped)
  # Same coarse step count per sample in DDiT and both static schedules, so the same FLOPs.
  for name in ("static_early", "static_late"):
    assert m["methods"][name]["coarse_steps"] == m["methods"]["ddit"]["coarse_steps"]
    assert m["methods"][name]["flop_ratio"] == pytest.approx(m["methods"]["ddit"]["flop_ratio"])
  coarse = m["forward_flops"]["4"] / m["forward_flops"]["2"]
  steps, warmup = 8, 3
  assert m["methods"]["all_coarse"]["flop_ratio"] == pytest.approx(
      (warmup + (steps - warmup) * coarse) / steps)


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="data.source"):
    EXPERIMENT.config("smoke", ["data.source=mnist"])
  with pytest.raises(ConfigError, match="distill_optimizer"):
    EXPERIMENT.config("smoke", ["distill_optimizer=sgd"])
  with pytest.raises(ConfigError, match="sampling.warmup"):
    EXPERIMENT.config("smoke", ["sampling.warmup=2"])
  with pytest.raises(ConfigError, match="sampling.calibration"):
    EXPERIMENT.config("smoke", ["sampling.calibration=median"])
  with pytest.raises(ConfigError, match="model.dit.input_shape"):
    EXPERIMENT.config("smoke", ["data.size=32"])
  assert EXPERIMENT.config("smoke", ["distill_optimizer=adam", "distill_lr=1e-3"]).distill_lr == 1e-3


def _digits_config():
  return DDiTConfig(model=MultiPatchConfig(dit=DiTConfig(input_shape=(16, 16), patch=(2, 2),
                                                         width=16, depth=1, num_heads=2,
                                                         num_classes=10)),
                    data=DataConfig(source="digits"))


def test_digits_are_upsampled_by_repetition_into_minus_one_one():
  config = _digits_config()
  images, labels, textured = data_lib.real_images(config, 50)
  assert images.shape == (50, 16, 16, 1) and textured is None
  assert images.min() >= -1 and images.max() <= 1 and images.min() == -1
  np.testing.assert_array_equal(images[:, ::2, ::2], images[:, 1::2, 1::2])  # 2 x 2 blocks
  assert set(labels) <= set(range(10)) and len(set(labels)) == 10
  batch = next(data_lib.train_data(config, 0))
  assert batch["x0"].shape == (config.batch_size, 16, 16, 1) and batch["label"].dtype == np.int32


def test_shapes_stream_is_indexed_by_batch():
  stream = data_lib.ShapesStream(4, seed=3)
  first, second = next(stream), next(stream)
  from jaxpapers.data.shapes import shapes16  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(second["x0"], shapes16(4, seed=3, start=4))
  assert stream.get_state() == {"index": 2}
  stream.set_state({"index": 0})
  np.testing.assert_array_equal(next(stream)["x0"], first["x0"])


def test_tfds_images_with_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  config = DDiTConfig(model=MultiPatchConfig(dit=DiTConfig(input_shape=(28, 28), patch=(2, 2),
                                                           width=16, depth=1, num_heads=2,
                                                           num_classes=10)),
                      data=DataConfig(source="tfds", size=28, tfds_name="mnist"))
  with tfds.testing.mock_data(num_examples=6):
    images, labels = data_lib.tfds_images(config)
    assert images.shape == (6, 28, 28, 1) and labels.shape == (6,)
    assert images.min() >= -1 and images.max() <= 1
    wrong = dataclasses.replace(config, data=dataclasses.replace(config.data, size=28),
                                model=dataclasses.replace(config.model, dit=dataclasses.replace(
                                    config.model.dit, channels=3)))
    with pytest.raises(ConfigError, match="model.dit.channels"):
      data_lib.tfds_images(wrong)


def test_texture_detector_and_static_schedules():
  flat = np.zeros((1, 8, 8, 1))
  checker = (2 * ((np.add.outer(np.arange(8), np.arange(8))) % 2) - 1.0)[None, :, :, None]
  np.testing.assert_allclose(study.high_pass_energy(np.concatenate([flat, checker])), [0, 64])
  threshold, accuracy = study.texture_threshold(np.array([0.1, 0.2, 5.0, 6.0]),
                                                np.array([False, False, True, True]))
  assert accuracy == 1.0 and 0.2 <= threshold < 5.0
  k = np.array([0, 2, 5])
  early = study.static_schedule(k, 8, 3, 2, 4, late=False)
  late = study.static_schedule(k, 8, 3, 2, 4, late=True)
  np.testing.assert_array_equal((early == 4).sum(0), k)
  np.testing.assert_array_equal((late == 4).sum(0), k)
  np.testing.assert_array_equal(early[:, 1], [2, 2, 2, 4, 4, 2, 2, 2])
  np.testing.assert_array_equal(late[:, 1], [2, 2, 2, 2, 2, 2, 4, 4])
