"""Generated stereo pairs (StereoAdapter-2's CPU protocol, arXiv 2602.16915): the right view is
the left one warped by the disparity (checked with numpy's own linear interpolation), textureless
rectangles are constant, `valid` leaves out disparity edges and matches outside the image, the
ranges hold, and a pair depends only on (seed, index)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxpapers.data.stereo_pairs import StereoPairsConfig, make_pair, stereo_pairs, stereo_source

CFG = StereoPairsConfig(height=24, width=48, flat_width=(8, 16), flat_height=(6, 10))


@pytest.fixture(scope="module")
def pairs():
  return stereo_pairs(6, seed=3, cfg=CFG)


def test_right_view_is_the_left_warped_by_the_disparity(pairs):
  for i in range(6):
    left, right, disp = pairs["left"][i, ..., 0], pairs["right"][i, ..., 0], pairs["disparity"][i]
    xs = np.arange(CFG.width, dtype=np.float64)
    for y in range(CFG.height):
      pos = np.clip(xs + disp[y].astype(np.float64), 0, CFG.width - 1)  # mode "nearest"
      np.testing.assert_allclose(right[y], np.interp(pos, xs, left[y]), atol=1e-5)


def test_textureless_rectangles_are_flat_and_ranges_hold(pairs):
  flat = pairs["textureless"].astype(bool)
  assert flat.any(axis=(1, 2)).all()  # every pair has one
  for i in range(6):
    values = np.unique(pairs["left"][i, ..., 0][flat[i]])
    assert 1 <= len(values) <= CFG.textureless[1]  # one constant per rectangle
  disp = pairs["disparity"]
  span = CFG.slope * (CFG.width + CFG.height)
  assert disp.min() >= CFG.base[0] - span and disp.max() <= CFG.foreground[1]
  assert (disp >= CFG.foreground[0]).any()  # the foreground shapes are there


def test_valid_excludes_edges_and_matches_outside_the_image(pairs):
  for i in range(6):
    disp, valid = pairs["disparity"][i], pairs["valid"][i].astype(bool)
    assert 0.3 < valid.mean() < 1.0
    xs = np.arange(CFG.width)[None, :]
    assert (xs - disp)[valid].min() >= 0
    # An edge pixel: its 3x3 neighbourhood spans more than 1 px of disparity. No edge pixel
    # lies within edge_margin (city-block distance) of a valid pixel.
    pad = np.pad(disp, 1, mode="edge")
    windows = np.stack([pad[a:a + CFG.height, b:b + CFG.width] for a in range(3) for b in range(3)])
    edge = windows.max(0) - windows.min(0) > 1.0
    assert edge.any()
    m = CFG.edge_margin
    for y, x in zip(*np.nonzero(valid)):
      for dy in range(-m, m + 1):
        for dx in range(-(m - abs(dy)), m - abs(dy) + 1):
          if 0 <= y + dy < CFG.height and 0 <= x + dx < CFG.width:
            assert not edge[y + dy, x + dx], (i, y, x, dy, dx)


def test_pairs_depend_only_on_seed_and_index():
  again = stereo_pairs(2, seed=3, cfg=CFG)
  one = make_pair(np.random.default_rng([3, 1]), CFG)
  for key, value in one.items():
    np.testing.assert_array_equal(again[key][1], value)
  other = stereo_pairs(2, seed=4, cfg=CFG)
  assert np.abs(other["left"] - again["left"]).max() > 0.1
  source = stereo_source(2, seed=3, cfg=CFG)
  assert len(source) == 2 and source[1]["left"].shape == (24, 48, 1)
  for key, value in source[1].items():  # drawn on access, the same bits as the stacked pairs
    np.testing.assert_array_equal(value, again[key][1])
  with pytest.raises(IndexError):
    source[2]


def test_config_rejects_rectangles_larger_than_the_image():
  with pytest.raises(ValueError, match="fit"):
    StereoPairsConfig(height=16, width=32, flat_height=(4, 20))
  with pytest.raises(ValueError, match="n >= 1"):
    stereo_pairs(0, seed=0)
