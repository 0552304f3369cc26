"""Models and tasks of the 2Mamba experiment (arXiv 2602.17363).

Models of our CPU-scale protocol, see experiments/two_mamba/README.md.

The model is the shared `jaxpapers.nn.tiny_lm.TinyLM`: token embedding (std 0.02), then per
layer pre-RMSNorm -> mixer -> residual -> pre-RMSNorm -> GELU MLP -> residual, final RMSNorm,
linear read-out (`build_model`). Only the mixer kind differs between variants. Tasks:
multi-query associative recall (fresh batches every step, loss and accuracy on the query
positions) and character-level LM on standard-library sources.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data as data_lib
from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.nn import partitioning as pt
from jaxpapers.nn.mixers import Mixer, MixerConfig, mamba2_module
from jaxpapers.nn.tiny_lm import TinyLM

from .config import LMConfig, TwoMambaConfig

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


def eval_window_indices(lm: LMConfig, available: int) -> np.ndarray:
  """The held-out windows of the test loss: `lm.eval_windows` evenly spaced over all test
  windows (every held-out file), or the first ones when `lm.eval_spread=False`."""
  n = min(lm.eval_windows, available)
  if not lm.eval_spread:
    return np.arange(n)
  return (np.arange(n) * available) // n


def lm_seeds(config: TwoMambaConfig) -> tuple[int, ...]:
  """The seeds of the LM's ensemble members: `lm.train.seed` and the next `lm.seeds - 1`."""
  return tuple(config.lm.train.seed + m for m in range(config.lm.seeds))


class MemberBatches:
  """One batch per ensemble member, stacked on axis 1: `[batch, members, ...]` (resumable).

  Member m reads the training windows in the order of its own seed, as a single run with that
  seed would.
  """

  def __init__(self, iterators: Sequence[Any]):
    self.iterators = list(iterators)

  def __next__(self) -> dict[str, np.ndarray]:
    batches = [next(it) for it in self.iterators]
    return {k: np.stack([b[k] for b in batches], axis=1) for k in batches[0]}

  def get_state(self) -> dict[str, Any]:
    return {"members": [it.get_state() for it in self.iterators]}

  def set_state(self, state: dict[str, Any]) -> None:
    members = state["members"]
    if len(members) != len(self.iterators):
      raise ValueError(f"the state holds {len(members)} members; this run has "
                       f"{len(self.iterators)}")
    for it, member in zip(self.iterators, members):
      it.set_state(member)


class SeedEnsemble(nnx.Module):
  """Independently seeded copies of one model, trained as one program.

  Member m is `make(nnx.Rngs(seeds[m]))`, built under `nnx.vmap`, so its parameters are those
  of a model built alone from that seed, stacked on a leading axis (logical name `layers`, like
  `jaxpapers.nn.scan.Scanned`); the forward pass is a `jax.vmap` over the members, so the
  members share one compiled program instead of one each.

  Args:
    make: builds one member from its rngs.
    seeds: one seed per member.
  """

  def __init__(self, make: Callable[[nnx.Rngs], nnx.Module], seeds: Sequence[int]):
    if not seeds:
      raise ValueError("SeedEnsemble needs at least one seed")
    defs = []

    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: pt.LAYERS})
    def build(key):
      member = make(nnx.Rngs(key))
      defs.append(nnx.graphdef(member))
      return member

    self.members = build(jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32)))
    self.member_def = defs[-1]
    self.size = len(seeds)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """Logits `[batch, members, seq, vocab]` of tokens `[batch, members, seq]` (one sequence per
    member) or `[batch, seq]` (the same sequences for every member)."""
    member_def = self.member_def
    run = lambda state, t: nnx.merge(member_def, state)(t)
    _, state = nnx.split(self.members)
    axis = 1 if tokens.ndim == 3 else None
    return jax.vmap(run, in_axes=(0, axis), out_axes=1)(nnx.as_pure(state), tokens)


def clip_by_member_norm(max_norm: float) -> optax.GradientTransformation:
  """`optax.clip_by_global_norm` applied to each ensemble member on its own.

  Every leaf carries the members on its leading axis; member m's updates are rescaled by
  `max_norm / ||g_m||` when its global norm `||g_m||` (over all its leaves) exceeds `max_norm`,
  so each member is clipped exactly as a single run would be.
  """

  def update(updates, state, params=None):  # pylint: disable=unused-argument
    leaves = jax.tree.leaves(updates)
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(u.astype(jnp.float32)), axis=tuple(range(1, u.ndim)))
                        for u in leaves))

    def clip(u):
      n = norm.reshape((-1,) + (1,) * (u.ndim - 1)).astype(u.dtype)
      return jnp.where(n < max_norm, u, (u / n) * max_norm)

    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


# ---------------------------------------------------------------------------
# Task.
# ---------------------------------------------------------------------------


def mixer_config(config: TwoMambaConfig, kind: str | None = None) -> MixerConfig:
  """The mixer of `kind` (default `config.mixer`) at the task's shape.

  Every kind takes the paper's switches (`jaxpapers.nn.mixers.KIND_DEFAULTS`). The softplus
  decay gets our bias `b_A` in the recall task (always; without it 2Mamba stays at chance, see
  the README) and in the LM when `lm.decay_bias` (default off, as in the authors' layers). The
  LM's Mamba-2 takes the authors' module layout (`mixers.mamba2_module`) unless
  `lm.mamba2_layout="heads"`. `config.implementation` is used by the kinds that have it; a kind
  without it falls back to "chunked" when it has that form, else "xla".
  """
  kind = kind or config.mixer
  lm_task = config.task == "lm"
  if lm_task and kind == "mamba2" and config.lm.mamba2_layout == "module":
    make = lambda impl: mamba2_module(config.lm.d_model, config.lm.head_dim,
                                      config.lm.mamba2_state, implementation=impl)
  else:
    heads, head_dim = ((config.lm.num_heads, config.lm.head_dim) if lm_task
                       else (config.num_heads, config.head_dim))
    decay_bias = True if kind == "mamba2" or not lm_task else config.lm.decay_bias
    make = lambda impl: MixerConfig(kind=kind, num_heads=heads, head_dim=head_dim,
                                    decay_bias=decay_bias, implementation=impl)
  for impl in dict.fromkeys((config.implementation, "chunked", "xla")):
    try:
      return make(impl)
    except ValueError:
      if impl == "xla":
        raise
  raise AssertionError("unreachable")


def mixer_lm(vocab: int, d_model: int, num_layers: int, mixer: MixerConfig, mlp_ratio: int = 4, *,
             scan_layers: bool = False, remat: str = "none", rngs: nnx.Rngs) -> TinyLM:
  """A causal LM whose sequence mixer is chosen by `MixerConfig.kind` (GELU MLP of width
  `mlp_ratio * d_model` with biases, biased head); `scan_layers` and `remat` as in `TinyLM`."""
  return TinyLM(vocab, d_model, num_layers, mixer=lambda r: Mixer(d_model, mixer, rngs=r),
                mlp_hidden=mlp_ratio * d_model, embed_std=0.02, scan_layers=scan_layers,
                remat=remat, rngs=rngs)


def build_model(config: TwoMambaConfig, rngs: nnx.Rngs) -> nnx.Module:
  """The recall model (a `TinyLM`), or for the LM a `SeedEnsemble` of `lm.seeds` of them (its
  seeds from `lm_seeds`; `rngs` is then unused)."""
  if config.task == "lm":
    lm = config.lm
    mixer = mixer_config(config)
    make = lambda r: mixer_lm(256, lm.d_model, lm.num_layers, mixer, lm.mlp_ratio,
                              scan_layers=lm.scan_layers, remat=lm.remat, rngs=r)
    return SeedEnsemble(make, lm_seeds(config))
  return mixer_lm(VOCAB, config.d_model, config.num_layers, mixer_config(config), config.mlp_ratio,
                  rngs=rngs)


def _token_losses(model: nnx.Module, batch) -> tuple[jax.Array, jax.Array]:
  logits = model(batch["inputs"]).astype(jnp.float32)
  targets = batch["targets"]
  if logits.ndim == targets.ndim + 2:  # an ensemble on shared inputs: [batch, members, ...]
    targets = jnp.broadcast_to(targets[:, None], logits.shape[:-1])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return losses, (jnp.argmax(logits, -1) == targets).astype(jnp.float32)


def make_task(config: TwoMambaConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The recall or LM task of `config` for the shared training loop.

  Recall trains with the top-level optimizer fields and `train`, the LM with `lm`'s and
  `lm.train`. The LM trains its `lm.seeds` ensemble members at once: the loss is the members'
  summed losses (each member's gradient is that of its own loss; the logged loss is their
  mean), clipping is per member, and the test metrics are logged per seed
  (`test_loss_seed{s}`) and averaged over the members (`test_loss`). `inputs` is unused: the
  experiment has one stage.
  """
  lm_task = config.task == "lm"
  train_config = config.lm.train if lm_task else config.train
  warmup = config.lm.warmup_steps if lm_task else config.warmup_steps
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.lm.lr if lm_task else config.lr, max(warmup, 1),
      max(train_config.steps, warmup + 1), end_value=0.0)
  clip = clip_by_member_norm if lm_task else optax.clip_by_global_norm
  optimizer = optax.chain(clip(config.clip), optax.adamw(schedule, weight_decay=config.weight_decay))
  if lm_task:
    train, test = lm_sources(config)
    test = test.gather(eval_window_indices(config.lm, len(test)))
    data = MemberBatches([data_lib.iterator(data_lib.batch_dataset(
        train, config.lm.batch_size, seed=seed).map(_token_weights)) for seed in lm_seeds(config)])
    eval_size = config.lm.batch_size
  else:
    r = config.recall
    test = recall_batch(np.random.default_rng(TEST_SEED), r.test_size, r.pairs, r.queries)
    data = RecallBatches(config, train_config.seed)
    eval_size = r.test_size
  held_out = [_token_weights(b) for b in data_lib.eval_batches(
      data_lib.ArraySource(test), eval_size, pad_to_multiple=mesh.size)]
  seeds = lm_seeds(config) if lm_task else ()

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    losses, correct = _token_losses(model, batch)
    weights = batch["weights"]
    if not lm_task:
      total = jnp.maximum(jnp.sum(weights), 1.0)
      return jnp.sum(losses * weights) / total, {"accuracy": jnp.sum(correct * weights) / total}
    axes = (0, 2)  # [batch, members, seq]
    count = jnp.maximum(jnp.sum(weights, axes), 1.0)
    member_losses = jnp.sum(losses * weights, axes) / count
    summed, mean = jnp.sum(member_losses), jnp.mean(member_losses)
    # Value: the members' mean; gradient: that of their sum (each member's own loss).
    loss = mean + (summed - jax.lax.stop_gradient(summed))
    return loss, {"accuracy": jnp.mean(jnp.sum(correct * weights, axes) / count)}

  def eval_fn(model, batch):
    losses, correct = _token_losses(model, batch)
    weights = batch["weights"]
    if lm_task:  # the members share the held-out windows: [batch, members, seq]
      weights = jnp.broadcast_to(weights[:, None], losses.shape)
    out = {"loss": metrics.mean(losses, weights), "accuracy": metrics.mean(correct, weights)}
    for m, seed in enumerate(seeds):
      out[f"loss_seed{seed}"] = metrics.mean(losses[:, m], weights[:, m])
    return out

  return Task(init_model=lambda rngs: build_model(config, rngs), optimizer=optimizer,
              loss_fn=loss_fn, train_data=data, eval_data={"test": held_out}, eval_fn=eval_fn)


def _token_weights(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Per-token weights (the batch's own, else 1) times the row mask of the padding."""
  weights = batch.get("weights", np.ones(batch["inputs"].shape, np.float32))
  return {"inputs": batch["inputs"], "targets": batch["targets"],
          "weights": (weights * batch["mask"][:, None]).astype(np.float32)}
