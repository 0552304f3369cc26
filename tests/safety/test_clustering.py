"""k-means + silhouette selection: a hand-computed 6-point silhouette, the small-n rules."""

import numpy as np

from jaxpapers import safety


def _silhouette_by_hand(points, labels):
  """Mean over points of (b - a) / max(a, b) (Rousseeuw 1987), written out."""
  s = []
  for i, p in enumerate(points):
    d = np.linalg.norm(points - p, axis=1)
    same = labels == labels[i]
    a = d[same & (np.arange(len(points)) != i)].mean()
    b = min(d[labels == c].mean() for c in set(labels.tolist()) if c != labels[i])
    s.append((b - a) / max(a, b))
  return float(np.mean(s))


def test_six_points_in_three_pairs_give_k3_and_its_silhouette():
  points = np.array([[0, 0], [0, 1], [10, 0], [10, 1], [0, 10], [1, 10]], float)
  c = safety.cluster_neurons(points, max_k=4, seed=0)
  assert c.k == 3 and sorted(c.silhouettes) == [2, 3, 4]
  np.testing.assert_array_equal(c.labels, [0, 0, 1, 1, 2, 2])  # renumbered by first appearance
  assert c.silhouettes[3] == max(c.silhouettes.values())
  np.testing.assert_allclose(c.silhouettes[3], _silhouette_by_hand(points, c.labels), rtol=1e-12)
  # by hand: a = 1 inside every pair; b = the mean distance to the nearest other pair
  r101, r82 = np.sqrt(101), np.sqrt(82)
  b = np.array([(10 + r101) / 2, (9 + r82) / 2, (10 + r101) / 2, (r101 + 10) / 2, 9.5, (r101 + r82) / 2])
  np.testing.assert_allclose(c.silhouettes[3], np.mean((b - 1) / b), rtol=1e-12)


def test_small_layers_follow_the_rules():
  empty = safety.cluster_neurons(np.zeros((0, 5)))
  assert empty.k == 0 and empty.labels.size == 0
  two = np.array([[0.0, 1.0], [1.0, 0.0]])
  assert safety.cluster_neurons(two, min_split=3).k == 1            # below min_split: one cluster
  np.testing.assert_array_equal(safety.cluster_neurons(two, min_split=2).labels, [0, 1])  # no k in 2..n-1
  same = np.ones((4, 3))
  assert safety.cluster_neurons(same).k == 1                         # silhouette undefined


def test_profiles_are_per_neuron_z_scores():
  f = np.random.default_rng(0).normal(size=(20, 8)) * np.arange(1, 9)
  prof = safety.neuron_profiles(f, np.array([1, 5]))
  ref = f[:, [1, 5]].T
  ref = (ref - ref.mean(1, keepdims=True)) / ref.std(1, keepdims=True)
  np.testing.assert_allclose(prof, ref)
