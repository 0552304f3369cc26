"""Models and tasks of the 2Mamba experiment (arXiv 2602.17363).

Models of our CPU-scale protocol, see experiments/two_mamba/README.md.

The model is the shared `jaxpapers.nn.tiny_lm.TinyLM`: token embedding (std 0.02), then per
layer pre-RMSNorm -> mixer -> residual -> pre-RMSNorm -> GELU MLP -> residual, final RMSNorm,
linear read-out (`build_model`). Only the mixer kind differs between variants. Tasks:
multi-query associative recall (fresh batches every step, loss and accuracy on the query
positions) and character-level LM on standard-library sources.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data as data_lib
from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.nn.mixers import Mixer, MixerConfig
from jaxpapers.nn.tiny_lm import TinyLM

from .config import TwoMambaConfig

VOCAB = 128  # recall: 0 pad, 2-65 keys, 66-127 values
KEY_LOW, KEY_HIGH, VALUE_LOW = 2, 66, 66
TEST_SEED = 10_007


# ---------------------------------------------------------------------------
# Multi-query associative recall.
# ---------------------------------------------------------------------------


def recall_batch(rng: np.random.Generator, batch: int, pairs: int, queries: int) -> dict:
  """`pairs` (key, value) tokens then `queries` keys; targets only at the query positions."""
  keys = np.argsort(rng.random((batch, KEY_HIGH - KEY_LOW)), axis=1)[:, :pairs] + KEY_LOW
  values = rng.integers(VALUE_LOW, VOCAB, (batch, pairs))
  picks = rng.integers(0, pairs, (batch, queries))
  rows = np.arange(batch)[:, None]
  context = np.stack([keys, values], axis=2).reshape(batch, 2 * pairs)
  inputs = np.concatenate([context, keys[rows, picks]], axis=1).astype(np.int32)
  targets = np.zeros_like(inputs)
  targets[:, 2 * pairs:] = values[rows, picks]
  weights = np.zeros(inputs.shape, np.float32)
  weights[:, 2 * pairs:] = 1.0
  return {"inputs": inputs, "targets": targets, "weights": weights}


class RecallBatches:
  """Fresh recall batches, step s drawn from `default_rng([seed, s])` (resumable)."""

  def __init__(self, config: TwoMambaConfig, seed: int):
    self.config, self.seed, self.step = config, seed, 0

  def __next__(self) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, self.step])
    self.step += 1
    r = self.config.recall
    return recall_batch(rng, self.config.batch_size, r.pairs, r.queries)

  def get_state(self) -> dict[str, Any]:
    return {"step": self.step}

  def set_state(self, state: dict[str, Any]) -> None:
    self.step = int(state["step"])


# ---------------------------------------------------------------------------
# Character-level LM.
# ---------------------------------------------------------------------------


def lm_sources(config: TwoMambaConfig) -> tuple[data_lib.TextSource, data_lib.TextSource]:
  """Train and test `TextSource`s (byte level: the sources are ASCII, so one byte = one char)."""
  paths = data_lib.stdlib_paths()
  test_paths, train_paths = paths[::10], [p for i, p in enumerate(paths) if i % 10]
  lm = config.lm
  train = data_lib.TextSource(train_paths, seq_len=lm.seq_len, max_bytes=lm.train_bytes)
  test = data_lib.TextSource(test_paths, seq_len=lm.seq_len, max_bytes=lm.test_bytes)
  return train, test


# ---------------------------------------------------------------------------
# Task.
# ---------------------------------------------------------------------------


def mixer_config(config: TwoMambaConfig, kind: str | None = None) -> MixerConfig:
  heads, head_dim = ((config.lm.num_heads, config.lm.head_dim) if config.task == "lm"
                     else (config.num_heads, config.head_dim))
  return MixerConfig(kind=kind or config.mixer, num_heads=heads, head_dim=head_dim, conv_size=2,
                     decay_bias=True, implementation=config.implementation)


def mixer_lm(vocab: int, d_model: int, num_layers: int, mixer: MixerConfig, mlp_ratio: int = 4, *,
             scan_layers: bool = False, remat: str = "none", rngs: nnx.Rngs) -> TinyLM:
  """A causal LM whose sequence mixer is chosen by `MixerConfig.kind` (GELU MLP of width
  `mlp_ratio * d_model` with biases, biased head); `scan_layers` and `remat` as in `TinyLM`."""
  return TinyLM(vocab, d_model, num_layers, mixer=lambda r: Mixer(d_model, mixer, rngs=r),
                mlp_hidden=mlp_ratio * d_model, embed_std=0.02, scan_layers=scan_layers,
                remat=remat, rngs=rngs)


def build_model(config: TwoMambaConfig, rngs: nnx.Rngs) -> TinyLM:
  if config.task == "lm":
    lm = config.lm
    return mixer_lm(256, lm.d_model, lm.num_layers, mixer_config(config), config.mlp_ratio,
                    scan_layers=lm.scan_layers, remat=lm.remat, rngs=rngs)
  return mixer_lm(VOCAB, config.d_model, config.num_layers, mixer_config(config), config.mlp_ratio,
                  rngs=rngs)


def _loss(model: TinyLM, batch):
  logits = model(batch["inputs"]).astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  weights = batch["weights"]
  total = jnp.maximum(jnp.sum(weights), 1.0)
  accuracy = jnp.sum((jnp.argmax(logits, -1) == batch["targets"]) * weights) / total
  return jnp.sum(losses * weights) / total, accuracy


def make_task(config: TwoMambaConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The recall or LM task of `config` for the shared training loop.

  Recall trains with the top-level optimizer fields and `train`, the LM with `lm`'s and
  `lm.train`. `inputs` is unused: the experiment has one stage.
  """
  lm_task = config.task == "lm"
  train_config = config.lm.train if lm_task else config.train
  warmup = config.lm.warmup_steps if lm_task else config.warmup_steps
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.lm.lr if lm_task else config.lr, max(warmup, 1),
      max(train_config.steps, warmup + 1), end_value=0.0)
  optimizer = optax.chain(optax.clip_by_global_norm(config.clip),
                          optax.adamw(schedule, weight_decay=config.weight_decay))
  if lm_task:
    train, test = lm_sources(config)
    test = test.gather(np.arange(min(config.lm.eval_windows, len(test))))
    data = data_lib.iterator(data_lib.batch_dataset(train, config.lm.batch_size,
                                                   seed=train_config.seed).map(_token_weights))
    eval_size = config.lm.batch_size
  else:
    r = config.recall
    test = recall_batch(np.random.default_rng(TEST_SEED), r.test_size, r.pairs, r.queries)
    data = RecallBatches(config, train_config.seed)
    eval_size = r.test_size
  held_out = [_token_weights(b) for b in data_lib.eval_batches(
      data_lib.ArraySource(test), eval_size, pad_to_multiple=mesh.size)]

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    loss, accuracy = _loss(model, batch)
    return loss, {"accuracy": accuracy}

  def eval_fn(model, batch):
    logits = model(batch["inputs"]).astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    correct = jnp.argmax(logits, -1) == batch["targets"]
    return {"loss": metrics.mean(losses, batch["weights"]),
            "accuracy": metrics.mean(correct, batch["weights"])}

  return Task(init_model=lambda rngs: build_model(config, rngs), optimizer=optimizer,
              loss_fn=loss_fn, train_data=data, eval_data={"test": held_out}, eval_fn=eval_fn)


def _token_weights(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Per-token weights (the batch's own, else 1) times the row mask of the padding."""
  weights = batch.get("weights", np.ones(batch["inputs"].shape, np.float32))
  return {"inputs": batch["inputs"], "targets": batch["targets"],
          "weights": (weights * batch["mask"][:, None]).astype(np.float32)}


