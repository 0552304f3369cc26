"""Clustering selected safety neurons by their activation profiles (NeST, arXiv 2602.16835).

NeST groups functionally similar safety neurons with k-means and picks the number of clusters by
the silhouette score (Sec. 3, clustering); neurons of one cluster then share one update. Our
reading of the details: clusters are formed within each layer (the shared update acts on one
layer's matrices); a neuron's profile is its column of pooled activations over all probing
prompts, z-normalized per neuron (clusters follow the shape of the response pattern, not its
scale); `k` ranges over `2 .. min(max_k, n - 1)`; fewer than `min_split` neurons form a single
cluster; scikit-learn's `KMeans` (k-means++ with a fixed seed) and `silhouette_score`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score


def neuron_profiles(features: np.ndarray, neurons: np.ndarray) -> np.ndarray:
  """`[n, P]`: each selected neuron's pooled activations over the prompts, z-normalized."""
  cols = np.asarray(features, np.float64)[:, np.asarray(neurons, int)].T
  std = cols.std(1, keepdims=True)
  return (cols - cols.mean(1, keepdims=True)) / np.where(std > 0, std, 1.0)


@dataclasses.dataclass(frozen=True)
class Clustering:
  """k-means labels of `n` neurons and the silhouette of each `k` tried (empty if none)."""

  labels: np.ndarray
  k: int
  silhouettes: dict[int, float]


def cluster_neurons(profiles: np.ndarray, *, max_k: int = 10, min_split: int = 3, seed: int = 0,
                    n_init: int = 10) -> Clustering:
  """k-means over `profiles [n, P]`, `k` chosen by the best mean silhouette.

  Args:
    profiles: one row per neuron.
    max_k: largest `k` searched.
    min_split: fewer neurons than this form one cluster; with at least `min_split` neurons but
      no `k` in `2 .. n - 1` (n = 2), each neuron is its own cluster.
    seed: k-means++ initialization seed.
    n_init: k-means restarts per `k`.
  """
  n = len(profiles)
  if n == 0:
    return Clustering(np.zeros(0, int), 0, {})
  if n < min_split:
    return Clustering(np.zeros(n, int), 1, {})
  distinct = len(np.unique(profiles, axis=0))
  if distinct < 2:  # identical profiles: nothing to separate
    return Clustering(np.zeros(n, int), 1, {})
  ks = range(2, min(max_k, n - 1, distinct) + 1)  # k-means cannot fill more clusters than points
  if not ks:
    return Clustering(np.arange(n), n, {})
  best, scores = None, {}
  for k in ks:
    labels = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed).fit_predict(profiles)
    scores[k] = float(silhouette_score(profiles, labels))
    if best is None or scores[k] > scores[best[0]]:
      best = (k, labels)
  return Clustering(_relabel(best[1]), best[0], scores)


def _relabel(labels: np.ndarray) -> np.ndarray:
  """Cluster ids renumbered in order of first appearance (a canonical labelling)."""
  order = {}
  return np.array([order.setdefault(int(c), len(order)) for c in labels], int)
