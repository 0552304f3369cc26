"""Model, data, loss and evaluation of modular addition (He et al., arXiv 2602.16849, 1.1-1.3).

Network: h_m(x, y) = theta_m[x] + theta_m[y] (the one-hot sum e_x + e_y through W_in [M, p],
shared by both operands), logits f_j = sum_m xi_m[j] sigma(h_m) with W_out [p, M]; no biases.
Loss: mean cross-entropy over the full training set. Optimizer: AdamW (0.9, 0.98) with the
warm-up factor min(step / 10, 1), so the first step has learning rate 0.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data
from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.ode import fourier

from .config import ModularAdditionConfig

ACTIVATIONS = {"relu": jax.nn.relu, "quad": jnp.square}


class TwoLayerNet(nnx.Module):
  """f(x, y) = W_out sigma(W_in (e_x + e_y)), with W ~ init_scale * N(0, 1) / sqrt(p)."""

  def __init__(self, p: int, width: int, activation: str, init_scale: float, *, rngs: nnx.Rngs):
    scale = init_scale / np.sqrt(p)
    self.w_in = nnx.Param(scale * jax.random.normal(rngs.params(), (width, p)))
    self.w_out = nnx.Param(scale * jax.random.normal(rngs.params(), (p, width)))
    self.activation = activation

  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    """Logits [batch, p] of integer operands x, y [batch]."""
    p = self.w_in.shape[1]
    inputs = jax.nn.one_hot(x, p) + jax.nn.one_hot(y, p)  # [B, p]
    hidden = inputs @ self.w_in[...].T  # [B, M]
    return ACTIVATIONS[self.activation](hidden) @ self.w_out[...].T


def split_pairs(p: int, frac_train: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """All p^2 pairs (x, y), split by a seeded permutation; frac_train = 1 uses train as test."""
  x, y = np.divmod(np.arange(p * p), p)
  pairs = np.stack([x, y], 1).astype(np.int32)
  order = np.random.default_rng(seed).permutation(p * p)
  n_train = int(frac_train * p * p)
  train = pairs[order[:n_train]]
  test = train if n_train == p * p else pairs[order[n_train:]]
  return train, test


def source(pairs: np.ndarray, p: int) -> data.ArraySource:
  return data.ArraySource({"x": pairs[:, 0], "y": pairs[:, 1], "label": (pairs.sum(1) % p).astype(np.int32)})


def make_optimizer(config: ModularAdditionConfig) -> optax.GradientTransformation:
  """AdamW or SGD with the warm-up factor min(step / warmup_steps, 1) (LambdaLR semantics)."""
  def schedule(count):
    if not config.warmup_steps:
      return config.lr
    return config.lr * jnp.minimum(count / config.warmup_steps, 1.0)

  if config.optimizer == "adamw":
    return optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                       weight_decay=config.weight_decay)
  return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.sgd(schedule))


def cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean float32 cross-entropy over the rows with mask 1."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  if mask is None:
    return losses.mean()
  return jnp.sum(losses * mask) / jnp.sum(mask)


def loss_fn(model: TwoLayerNet, batch, rng):  # pylint: disable=unused-argument
  logits = model(batch["x"], batch["y"])
  loss = cross_entropy(logits, batch["label"], batch["mask"])
  accuracy = jnp.sum((logits.argmax(-1) == batch["label"]) * batch["mask"]) / jnp.sum(batch["mask"])
  return loss, {"accuracy": accuracy}


def mean_ipr(model: TwoLayerNet) -> jax.Array:
  """Mean inverse participation ratio of the neurons' Fourier spectra over both layers."""
  a_in, _ = fourier.magnitudes_and_phases(model.w_in[...])
  a_out, _ = fourier.magnitudes_and_phases(model.w_out[...].T)
  return 0.5 * (fourier.inverse_participation_ratio(a_in).mean()
                + fourier.inverse_participation_ratio(a_out).mean())


def evaluate(model: TwoLayerNet, batch) -> dict[str, metrics.Mean]:
  """Loss and accuracy on one batch of a split (padding rows masked out)."""
  logits = model(batch["x"], batch["y"])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["label"])
  return {"loss": metrics.mean(losses, batch["mask"]),
          "accuracy": metrics.mean(logits.argmax(-1) == batch["label"], batch["mask"])}


def weight_metrics(model: TwoLayerNet) -> dict[str, jax.Array]:
  """Mean Fourier IPR and the parameter norm (no data needed)."""
  return {"ipr": mean_ipr(model),
          "param_norm": jnp.sqrt(jnp.sum(model.w_in[...] ** 2) + jnp.sum(model.w_out[...] ** 2))}


def make_task(config: ModularAdditionConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The full-batch training task; the batch is padded to a multiple of the mesh size.

  `inputs` (earlier stages' models) is unused: the experiment has one stage.
  """
  train_pairs, test_pairs = split_pairs(config.p, config.frac_train, config.split_seed)
  train_src, test_src = source(train_pairs, config.p), source(test_pairs, config.p)
  train_data = data.full_batch(train_src, pad_to_multiple=mesh.size,
                               process_index=jax.process_index(), process_count=jax.process_count())
  splits = {name: data.eval_batches(src, len(src), pad_to_multiple=mesh.size,
                                    process_index=jax.process_index(),
                                    process_count=jax.process_count())
            for name, src in (("train", train_src), ("test", test_src))}
  return Task(
      init_model=functools.partial(TwoLayerNet, config.p, config.width, config.activation,
                                   config.init_scale),
      optimizer=make_optimizer(config),
      loss_fn=loss_fn,
      train_data=train_data,
      eval_data=splits,
      eval_fn=evaluate,
      model_metrics=weight_metrics,
  )
