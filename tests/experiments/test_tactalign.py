"""TactAlign experiment: smoke results (spec 4.5), config checks, data assembly, pair quality."""

import json

import numpy as np
import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.tactalign import data as data_lib
from jaxpapers.experiments.tactalign import model
from jaxpapers.experiments.tactalign.config import SMALL, SMOKE, DataConfig
from jaxpapers.experiments.tactalign.run import EXPERIMENT, METHODS


def test_smoke_report_covers_the_ci_checks(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed."""
  run = smoke_report("tactalign")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"pseudo_pairs_hand_made", "euler_analytic_fields", "emd_helper",
          "smoke_flow_loss_decreases", "smoke_emd_below_identity", "T1_emd_reduction",
          "T2_force_vs_identity", "T3_force_vs_robot",
          "T4_contact_agreement"} <= set(claims)
  assert claims["pseudo_pairs_hand_made"]["measured"] == 0
  m = json.loads((run.folder / "measurements.json").read_text())
  assert {"B0_identity", "tactalign", "robot_to_robot"} <= set(m)  # smoke: no baselines B1-B3
  assert not set(METHODS[2:]) & set(m)
  # T1's reported figure is 1 - EMD ratio of the same measurements
  ratio = m["tactalign"]["emd"] / m["B0_identity"]["emd"]
  assert claims["T1_emd_reduction"]["measured"] == pytest.approx(1 - ratio, rel=1e-6)
  assert claims["smoke_emd_below_identity"]["measured"] == pytest.approx(ratio, rel=1e-6)
  assert (run.folder / "alignment.png").read_bytes()[:4] == b"\x89PNG"


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="coupling"):
    EXPERIMENT.config("smoke", ["coupling=ot"])
  with pytest.raises(ConfigError, match="pairs.pose_norm"):
    EXPERIMENT.config("smoke", ["pairs.pose_norm=whiten"])
  with pytest.raises(ConfigError, match="width"):
    EXPERIMENT.config("smoke", ["width=15"])
  with pytest.raises(ConfigError, match="mask_ratio"):
    EXPERIMENT.config("smoke", ["mask_ratio=1.0"])
  assert EXPERIMENT.config("smoke", ["pairs.k=3"]).pairs.k == 3


def test_small_preset_follows_the_spec_sizes():
  assert (SMALL.data.human_demos, SMALL.data.robot_demos, SMALL.data.play) == (200, 100, 5000)
  assert (SMALL.encoder_human.steps, SMALL.encoder_batch, SMALL.flow.steps, SMALL.flow_batch) == (1000, 256, 4000, 512)
  assert (SMALL.latent_dim, SMALL.width, SMALL.mask_ratio, SMALL.ode_steps) == (8, 32, 0.25, 20)


@pytest.fixture(scope="module")
def sets():
  return data_lib.datasets(DataConfig(human_demos=6, robot_demos=5, play=10, eval_demos=2))


def test_per_finger_samples_keep_the_frames(sets):
  h = sets.human
  assert h.tactile.shape[1:] == (1, 3) and sets.robot.tactile.shape[1:] == (16, 3)
  np.testing.assert_array_equal(h.finger[:4], [0, 1, 0, 1])
  np.testing.assert_array_equal(h.force[:, 0] > 1e-6, h.contact)
  # the oracle set reads the human demos' hidden states with the robot sensor
  np.testing.assert_array_equal(sets.robot_of_human.force, h.force)


def test_contact_states_from_tared_magnitudes_match_the_truth(sets):
  config = SMOKE
  for samples in (sets.human, sets.robot):
    c = model.contacts(config, samples)
    assert np.mean(c == samples.contact) > 0.9


def test_pseudo_pairs_carry_correspondence(sets):
  """Pose-matched partners share contact far above chance and their forces are closer than random."""
  config = SMOKE.__class__(data=DataConfig(human_demos=6, robot_demos=5, play=10, eval_demos=2))
  p = model.pseudo_pairs(config)
  h, r = sets.human, sets.robot
  assert np.mean(h.contact[p.human] == r.contact[p.robot]) > 0.95
  paired = np.mean(np.abs(h.force[p.human] - r.force[p.robot]))
  rng = np.random.default_rng(0)
  shuffled = np.mean(np.abs(h.force[p.human] - r.force[rng.permutation(p.robot)]))
  assert paired < 0.6 * shuffled
