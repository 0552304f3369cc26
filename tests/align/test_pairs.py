"""Pseudo-pair builder on hand-made arrays (TactAlign spec 4.5 item 1) and contact states."""

import numpy as np
import pytest

from jaxpapers.align import contact_state, pseudo_pairs, random_pairs, standardize_poses


def _pairs_set(p):
  return set(zip(p.human.tolist(), p.robot.tolist(), p.forward.tolist()))


def test_nearest_neighbour_same_finger_and_contact_filter():
  # robot samples: finger 0 at x = 0, 1, 2; finger 1 at x = 0.1 (closest to everything)
  pose_r = np.array([[0.0], [1.0], [2.0], [0.1]])
  finger_r = np.array([0, 0, 0, 1])
  contact_r = np.array([False, True, True, True])
  # human samples: finger 0 at 0.9 (-> robot 1), at 1.8 (-> robot 2, but contact differs), finger 1 at 5
  pose_h = np.array([[0.9], [1.8], [5.0]])
  finger_h = np.array([0, 0, 1])
  contact_h = np.array([True, False, True])
  one_way = pseudo_pairs(pose_h, pose_r, finger_h, finger_r, contact_h, contact_r, both_directions=False)
  assert _pairs_set(one_way) == {(0, 1, True), (2, 3, True)}  # (1, 2) dropped: contact differs
  assert one_way.dropped == 1
  both = pseudo_pairs(pose_h, pose_r, finger_h, finger_r, contact_h, contact_r)
  # reverse: robot 0 (x 0, no contact) -> human 0 (contact): dropped; robot 1 -> human 0; robot 2 ->
  # human 1 (1.8, no contact vs contact): dropped; robot 3 (finger 1) -> human 2
  assert _pairs_set(both) == {(0, 1, True), (2, 3, True), (0, 1, False), (2, 3, False)}
  assert both.dropped == 3


def test_groups_restrict_the_search_and_k_keeps_all_neighbours():
  pose_r = np.array([[0.0], [0.2], [10.0]])
  group_r = np.array([0, 0, 1])
  pose_h = np.array([[9.0], [0.15]])
  group_h = np.array([0, 1])
  ones, zeros = np.ones(3, bool), np.zeros(3, int)
  p = pseudo_pairs(pose_h, pose_r, zeros[:2], zeros, ones[:2], ones, group_h=group_h, group_r=group_r,
                   both_directions=False)
  assert _pairs_set(p) == {(0, 1, True), (1, 2, True)}  # 9.0 may not pick 10.0 (other group)
  p2 = pseudo_pairs(pose_h, pose_r, zeros[:2], zeros, ones[:2], ones, group_h=group_h, group_r=group_r,
                    k=2, both_directions=False)
  assert _pairs_set(p2) == {(0, 1, True), (0, 0, True), (1, 2, True)}  # group 1 has one sample


def test_against_brute_force_on_random_points():
  rng = np.random.default_rng(0)
  ph, pr = rng.normal(size=(200, 3)), rng.normal(size=(150, 3))
  fh, fr = rng.integers(0, 2, 200), rng.integers(0, 2, 150)
  ch, cr = np.ones(200, bool), np.ones(150, bool)
  p = pseudo_pairs(ph, pr, fh, fr, ch, cr, both_directions=False)
  for i, j in zip(p.human, p.robot):
    d = np.linalg.norm(pr - ph[i], axis=1)
    d[fr != fh[i]] = np.inf
    assert j == np.argmin(d)
  assert len(p) == 200


def test_contact_state_normalises_per_domain():
  magnitude = np.concatenate([np.zeros(50), np.linspace(0.0, 10.0, 50)])
  scale = np.percentile(magnitude, 99)
  np.testing.assert_array_equal(contact_state(magnitude), magnitude / scale > 0.1)
  # a domain 100x stronger gives the same flags
  np.testing.assert_array_equal(contact_state(100 * magnitude), contact_state(magnitude))
  with pytest.raises(ValueError, match="percentile"):
    contact_state(np.zeros(10))


def test_standardized_poses_remove_scale_and_offset():
  rng = np.random.default_rng(1)
  q, finger = rng.normal(size=(300, 3)), rng.integers(0, 2, 300)
  scaled = 1.1 * q + np.array([[0.3, -0.2, 0.1], [0.0, 0.5, -0.4]])[finger]
  a, b = standardize_poses(q, finger), standardize_poses(scaled, finger)
  np.testing.assert_allclose(a, b, atol=1e-9)
  r = random_pairs(10, 7, 1000, seed=2)
  assert r.human.max() == 9 and r.robot.max() == 6 and len(r) == 1000
