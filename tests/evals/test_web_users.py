"""Synthetic web users: generator bookkeeping, style features by hand, k-means/ARI (scikit-learn)."""

import numpy as np
import pytest

from jaxpapers.evals import web_users as wu


@pytest.fixture(scope="module")
def corpus():
  return wu.synthetic_users(num_users=8, trajectories_per_user=6, seed=1)


def test_generator_follows_the_styles(corpus):
  style = corpus.user_style[corpus.user]
  assert corpus.label[style == wu.STYLES.index("hands_off")].sum() == 0
  takeover = style == wu.STYLES.index("takeover")
  assert corpus.handback[takeover].sum() == 0
  # a takeover (intervention without handback) is the last decision step of its trajectory
  last = np.r_[corpus.trajectory[1:] != corpus.trajectory[:-1], True]
  assert np.all(last[(corpus.label == 1) & (corpus.handback == 0)])
  # the 'previous human' feature is the previous step's label within a trajectory
  prev = corpus.features[:, wu.FEATURES.index("previous_human")]
  same = corpus.trajectory[1:] == corpus.trajectory[:-1]
  np.testing.assert_array_equal(prev[1:][same], corpus.label[:-1][same])
  assert np.all(prev[np.r_[True, ~same]] == 0)
  again = wu.synthetic_users(num_users=8, trajectories_per_user=6, seed=1)
  np.testing.assert_array_equal(again.features, corpus.features)


def test_style_features_by_hand(corpus):
  feats = wu.style_features(corpus)
  position = corpus.features[:, wu.FEATURES.index("position")]
  for u in range(corpus.num_users):
    rows = corpus.user == u
    hits = rows & (corpus.label == 1)
    if not hits.any():
      assert np.all(feats[u] == 0)
      continue
    want = [hits.sum() / rows.sum(), np.mean(corpus.intensity[hits]), np.mean(position[hits]),
            np.mean(corpus.handback[hits])]
    np.testing.assert_allclose(feats[u], want, rtol=1e-12)


def test_kmeans_recovers_separated_blobs():
  rng = np.random.default_rng(0)
  centers = np.array([[0, 0, 0, 0], [10, 0, 0, 0], [0, 10, 0, 0], [0, 0, 10, 10]], float)
  truth = np.repeat(np.arange(4), 25)
  x = centers[truth] + rng.normal(scale=0.5, size=(100, 4))
  assert wu.adjusted_rand_index(truth, wu.discover_styles(x, 4, seed=0)) == 1.0
  assert wu.adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0  # label permutations do not matter
