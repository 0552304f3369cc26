"""NeST's detection pipeline on every FFN layer: pool, probe, select, cluster (arXiv 2602.16835).

Sec. 3 of NeST: forward harmful and benign prompts, max-pool each layer's FFN activations over
tokens, fit a logistic probe per layer, keep the neurons with a large positive z-scored weight,
and cluster them within the layer by k-means with the silhouette-best k. The result is the plan
that `jaxpapers.safety.NeuronDeltas` trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxpapers.safety.clustering import Clustering, cluster_neurons, neuron_profiles
from jaxpapers.safety.deltas import LayerClusters
from jaxpapers.safety.probe import Probe, fit_probe, select_neurons
from jaxpapers.safety.taps import FFNLayer, pooled_activations


@dataclasses.dataclass(frozen=True)
class SafetyNeurons:
  """What detection found, per FFN layer.

  Attributes:
    plan: the selected neurons and their clusters.
    probes: the fitted probes.
    clusterings: k-means results (k and the silhouettes tried).
    probe_accuracy: each probe's accuracy on its own probing prompts.
    widths: each layer's neuron count f.
  """

  plan: tuple[LayerClusters, ...]
  probes: tuple[Probe, ...]
  clusterings: tuple[Clustering, ...]
  probe_accuracy: tuple[float, ...]
  widths: tuple[int, ...]

  @property
  def num_neurons(self) -> int:
    return sum(len(p.neurons) for p in self.plan)

  @property
  def num_clusters(self) -> int:
    return sum(p.n_clusters for p in self.plan)


def _concat(a: Any, b: Any) -> Any:
  return jax.tree.map(lambda x, y: np.concatenate([np.asarray(x), np.asarray(y)]), a, b)


def find_safety_neurons(model: nnx.Module, layers: Sequence[FFNLayer],
                        forward: Callable[[nnx.Module, Any], Any], harmful: Any, benign: Any, *,
                        harmful_mask: np.ndarray | None = None, benign_mask: np.ndarray | None = None,
                        probe_steps: int = 5000, probe_lr: float = 1e-3, probe_weight_decay: float = 1e-3,
                        standardize: bool = False, z_threshold: float = 3.0, positive_only: bool = True,
                        max_k: int = 10, min_split: int = 3, seed: int = 0) -> SafetyNeurons:
  """Probe, select and cluster the safety neurons of every FFN layer of `model`.

  Args:
    model: the model to probe (not changed).
    layers: its FFN layers (`jaxpapers.safety.gated_ffn` / `plain_ffn`).
    forward: `forward(model, inputs)` runs it on a batch of prompts.
    harmful: harmful prompts (label 1), leading axis = prompts.
    benign: benign prompts (label 0).
    harmful_mask: `[P, T]` real-token mask of `harmful` (None: all real).
    benign_mask: the same for `benign`.
    probe_steps: full-batch Adam steps of each probe.
    probe_lr: their step size.
    probe_weight_decay: coupled L2 coefficient.
    standardize: z-score the pooled features before the probe.
    z_threshold: keep `|z| > z_threshold`.
    positive_only: and `w > 0`.
    max_k: largest k searched by the silhouette.
    min_split: layers with fewer selected neurons keep them in one cluster.
    seed: k-means seed.
  """
  inputs = _concat(harmful, benign)
  n_h, n_b = len(_first(harmful)), len(_first(benign))
  mask = None
  if harmful_mask is not None or benign_mask is not None:
    t = np.asarray(_first(harmful)).shape[1]
    hm = np.ones((n_h, t), np.float32) if harmful_mask is None else harmful_mask
    bm = np.ones((n_b, t), np.float32) if benign_mask is None else benign_mask
    mask = np.concatenate([hm, bm]).astype(np.float32)
  labels = np.concatenate([np.ones(n_h), np.zeros(n_b)]).astype(np.float32)
  features = pooled_activations(model, layers, forward, inputs, mask)
  plan, probes, clusterings, accs = [], [], [], []
  for f in features:
    probe = fit_probe(f, labels, steps=probe_steps, learning_rate=probe_lr,
                      weight_decay=probe_weight_decay, standardize=standardize)
    neurons = select_neurons(probe.weights, z_threshold, positive_only)
    clustering = cluster_neurons(neuron_profiles(f, neurons), max_k=max_k, min_split=min_split, seed=seed)
    plan.append(LayerClusters(neurons, clustering.labels))
    probes.append(probe)
    clusterings.append(clustering)
    accs.append(probe.accuracy(f, labels))
  return SafetyNeurons(tuple(plan), tuple(probes), tuple(clusterings), tuple(accs),
                       tuple(f.shape[1] for f in features))


def _first(tree: Any) -> np.ndarray:
  return np.asarray(jax.tree.leaves(tree)[0])
