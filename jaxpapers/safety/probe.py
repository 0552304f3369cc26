"""Linear probe on pooled FFN activations and z-score selection of safety neurons.

NeST (arXiv 2602.16835, Sec. 3, detection) finds safety-relevant neurons with a per-layer linear
probe on the max-pooled activations of harmful (label 1) vs benign (label 0) prompts, then keeps
the neurons whose standardized probe weight passes a z threshold. The probe follows the
authors' predecessor detector (NeuroStrike, same group): logistic regression trained full batch
with BCE-with-logits and Adam (lr 1e-3, weight decay 1e-3 as a coupled L2 term, 5,000 epochs),
features not standardized; `z_j = (w_j - mean w) / std w`, kept when `|z_j| > 3` and `w_j > 0`
(activation pushes towards "harmful").
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclasses.dataclass(frozen=True)
class Probe:
  """A fitted logistic probe `sigmoid(((F - mean) / scale) w + b)`.

  Attributes:
    weights: `[f]` probe weights (in the standardized space when `standardize` was on).
    bias: scalar bias.
    mean: `[f]` feature means subtracted before the probe (zeros without standardization).
    scale: `[f]` feature scales divided out (ones without standardization).
  """

  weights: np.ndarray
  bias: float
  mean: np.ndarray
  scale: np.ndarray

  def logits(self, features: np.ndarray) -> np.ndarray:
    return ((np.asarray(features) - self.mean) / self.scale) @ self.weights + self.bias

  def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean((self.logits(features) > 0) == (np.asarray(labels) > 0)))


@functools.partial(jax.jit, static_argnames=("steps", "learning_rate", "weight_decay"))
def _fit(x, y, *, steps: int, learning_rate: float, weight_decay: float):
  tx = optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))
  params = (jnp.zeros(x.shape[1], x.dtype), jnp.zeros((), x.dtype))

  def loss(p):
    return jnp.mean(optax.sigmoid_binary_cross_entropy(x @ p[0] + p[1], y))

  def step(carry, _):
    p, s = carry
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, updates), s), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), length=steps)
  return params


def fit_probe(features: np.ndarray, labels: np.ndarray, *, steps: int = 5000,
              learning_rate: float = 1e-3, weight_decay: float = 1e-3,
              standardize: bool = False) -> Probe:
  """Fits the logistic probe full batch (Adam from zero weights: deterministic).

  Args:
    features: `[P, f]` pooled activations of the probing prompts.
    labels: `[P]` 1 for harmful, 0 for benign.
    steps: full-batch Adam steps (NeuroStrike: 5,000 epochs).
    learning_rate: Adam step size (NeuroStrike: 1e-3).
    weight_decay: coupled L2 coefficient added to the gradient, as torch's Adam does (1e-3).
    standardize: z-score each feature first, so the weights measure relevance rather than the
      neuron's scale (our option; NeuroStrike does not).
  """
  x = np.asarray(features, np.float32)
  y = np.asarray(labels, np.float32)
  if x.ndim != 2 or len(x) != len(y):
    raise ValueError(f"features must be [P, f] with one label per row; got {x.shape} and {y.shape}")
  mean = x.mean(0) if standardize else np.zeros(x.shape[1], np.float32)
  scale = np.maximum(x.std(0), 1e-6) if standardize else np.ones(x.shape[1], np.float32)
  w, b = _fit(jnp.asarray((x - mean) / scale), jnp.asarray(y), steps=steps,
              learning_rate=learning_rate, weight_decay=weight_decay)
  return Probe(np.asarray(w), float(b), mean, scale)


def zscores(weights: np.ndarray) -> np.ndarray:
  """`z_j = (w_j - mean(w)) / std(w)` over the layer's neurons (all zeros when std is 0)."""
  w = np.asarray(weights, np.float64)
  std = w.std()
  return np.zeros_like(w) if std == 0 else (w - w.mean()) / std


def select_neurons(weights: np.ndarray, z_threshold: float = 3.0, positive_only: bool = True) -> np.ndarray:
  """Indices `j` with `|z_j| > z_threshold` (and `w_j > 0` when `positive_only`), ascending."""
  w = np.asarray(weights)
  keep = np.abs(zscores(w)) > z_threshold
  if positive_only:
    keep &= w > 0
  return np.flatnonzero(keep)
