"""synth-touch generator: hidden-state constraints, sensor formulas element by element, seeds."""

import numpy as np
import pytest

from jaxpapers.data import synth_touch as st


@pytest.fixture(scope="module")
def demos():
  return st.pivot_demos(12, seed=3)


def test_hidden_states_obey_the_spec(demos):
  n = np.linalg.norm(demos.shear, axis=-1)
  assert np.all(n <= 0.8 * demos.normal + 1e-12)
  assert demos.normal.min() >= 0 and demos.normal.max() <= 0.9
  assert np.all(np.abs(demos.location) <= 1)
  np.testing.assert_array_equal(demos.contact, demos.normal > 1e-6)
  assert not demos.contact[demos.stage == 0].any() and demos.contact[demos.stage == 2].all()
  lengths = np.bincount(demos.demo)
  assert lengths.min() >= 50 and lengths.max() <= 70 and len(lengths) == 12
  for d in range(12):
    one = demos.take(demos.demo == d)
    assert np.all(np.diff(one.stage[:, 0]) >= 0)  # approach -> press -> pivot -> release
    assert set(one.stage[:, 0]) == {0, 1, 2, 3}
    peak = one.normal[one.stage[:, 0] == 2]
    assert 0.4 <= peak.min() and np.ptp(peak, axis=0).max() == 0  # held at the target
    np.testing.assert_allclose(one.action[:-1, :, 0], np.diff(one.position, axis=0), atol=1e-12)


def test_glove_formula_element_by_element(demos):
  m = st.glove_reading(demos, seed=5, noise=0.0)
  i, k = 300, 1
  fs, fn, u = demos.shear[i, k], demos.normal[i, k], demos.location[i, k]
  expected = np.tanh(1.5 * np.array([fs[0], fs[1], fn])) + 0.2 * fn * np.array([u[0], u[1], 0])
  np.testing.assert_allclose(m[i, k, 0], expected + st.GLOVE_BIAS[k], atol=1e-6)
  noisy = st.glove_reading(demos, seed=5)
  assert np.std(noisy - m) == pytest.approx(0.02, rel=0.05)


def test_xela_formula_element_by_element(demos):
  x = st.xela_reading(demos, seed=6, noise=0.0)
  assert x.shape == (len(demos), 2, 16, 3)
  i, k, taxel = 400, 0, 9
  pos = st.taxel_positions()[taxel]
  np.testing.assert_allclose(pos, [np.linspace(-1, 1, 4)[1], np.linspace(-1, 1, 4)[2]])
  kappa = np.exp(-np.sum((pos - demos.location[i, k]) ** 2) / (2 * 0.4 ** 2))
  expected = 0.8 * kappa * np.array([*demos.shear[i, k], demos.normal[i, k]])
  np.testing.assert_allclose(x[i, k, taxel], expected, atol=1e-6)


def test_poses_carry_scale_offset_and_noise(demos):
  h = st.human_pose(demos, seed=7, noise=0.0)
  np.testing.assert_allclose(h, 1.1 * demos.position + st.HUMAN_OFFSET, atol=1e-6)
  r = st.robot_pose(demos, seed=7)
  assert np.std(r - demos.position) == pytest.approx(0.005, rel=0.05)


def test_seed_fixes_the_data_and_changes_it():
  a, b, c = st.pivot_demos(3, 1), st.pivot_demos(3, 1), st.pivot_demos(3, 2)
  np.testing.assert_array_equal(a.normal, b.normal)
  assert len(a) != len(c) or not np.array_equal(a.normal, c.normal)
  p = st.play_states(500, 4)
  assert 0.6 < p.contact.mean() < 0.8 and np.all(np.linalg.norm(p.shear, axis=-1) <= 0.8 * p.normal + 1e-12)
  with pytest.raises(ValueError, match="min_steps"):
    st.pivot_demos(2, 0, min_steps=60, max_steps=50)
