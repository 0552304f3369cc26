"""The toy model, the NeST pipeline on it, and the stages' tasks (NeST, arXiv 2602.16835).

Model ("FFN-only transformer", our protocol): residual stream `r = x` (the prompt's token
vectors), `r <- r + relu(r W_up^l) W_down^l` for each layer, logits `= mean_t(r) W_out`; no
biases (8,480 parameters at D 32, f 64, two layers, nine classes).

Stages: `base` (the weakly aligned model) and `repair` (`config.method`: NeST, the
random-neuron control, full fine-tuning, LoRA, circuit breakers), which starts from the base.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import safety
from jaxpapers.core.train import Task, params_checksum
from jaxpapers.data import IndexedBatches
from jaxpapers.safety import toy

from .config import NestConfig


class Block(nnx.Module):
  """`r + relu(r W_up) W_down`."""

  def __init__(self, dim: int, hidden: int, down_scale: float, *, rngs: nnx.Rngs):
    lecun = nnx.initializers.lecun_normal()
    self.up = nnx.Linear(dim, hidden, use_bias=False, rngs=rngs)
    self.down = nnx.Linear(hidden, dim, use_bias=False, rngs=rngs,
                           kernel_init=lambda k, s, d=jnp.float32: down_scale * lecun(k, s, d))

  def __call__(self, r: jax.Array) -> jax.Array:
    return r + self.down(jax.nn.relu(self.up(r)))


class ToyFFN(nnx.Module):
  """FFN-only transformer on `[B, L, D]` prompts -> `[B, classes]` logits."""

  def __init__(self, config: NestConfig, num_classes: int, *, rngs: nnx.Rngs):
    d = config.data.dim
    self.layers = nnx.List([Block(d, config.hidden, config.down_init_scale, rngs=rngs)
                            for _ in range(config.num_layers)])
    self.out = nnx.Linear(d, num_classes, use_bias=False, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    r = x
    for layer in self.layers:
      r = layer(r)
    return self.out(jnp.mean(r, axis=1))


def ffn_layers(config: NestConfig) -> list[safety.FFNLayer]:
  return [safety.plain_ffn(("layers", l, "up"), ("layers", l, "down"), tap=config.tap)
          for l in range(config.num_layers)]


def projection_paths(config: NestConfig) -> list[tuple]:
  return [("layers", l, n) for l in range(config.num_layers) for n in ("up", "down")]


def world(config: NestConfig) -> toy.ToyWorld:
  return toy.make_world(config.base.seed, config.data.dim, config.data.length)


def base_model(config: NestConfig, state: Any | None = None) -> ToyFFN:
  """The toy model: with `state`, the trained base (merged into its graph, nothing initialized;
  fresh arrays, so models built from one state never share a variable); else a fresh init."""
  if state is None:
    return ToyFFN(config, world(config).num_classes, rngs=nnx.Rngs(0))
  return nnx.merge(_graphdef(config), jax.tree.map(jnp.asarray, state))


@functools.lru_cache(maxsize=16)
def _graphdef(config: NestConfig):
  classes = world(config).num_classes
  return nnx.graphdef(nnx.eval_shape(lambda: ToyFFN(config, classes, rngs=nnx.Rngs(0))))


class ShuffledBatches(IndexedBatches):
  """In-memory rows in a fresh permutation per epoch (`default_rng([seed, epoch])`), partial
  batches dropped, `"mask"` of ones; with `steps`, a `"progress"` column `step / steps`."""

  def __init__(self, arrays: dict[str, np.ndarray], batch_size: int, seed: int, steps: int = 0):
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    self.n = len(next(iter(self.arrays.values())))
    self.batch_size, self.seed, self.steps, self.index = batch_size, seed, steps, 0
    self.per_epoch = self.n // batch_size

  @functools.lru_cache(maxsize=4)
  def _order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(self.n)

  def batch(self, index: int) -> dict[str, np.ndarray]:
    epoch, k = divmod(index, self.per_epoch)
    rows = self._order(epoch)[k * self.batch_size:(k + 1) * self.batch_size]
    out = {name: v[rows] for name, v in self.arrays.items()}
    out["mask"] = np.ones(self.batch_size, np.float32)
    if self.steps:
      out["progress"] = np.full(self.batch_size, index / self.steps, np.float32)
    return out


def _sft(model, batch, rng):  # pylint: disable=unused-argument
  return safety.sft_loss(model(batch["x"]), batch["y"], batch["mask"]), {}


def make_base_task(config: NestConfig, mesh, inputs) -> Task:  # pylint: disable=unused-argument
  """The weakly aligned base model: Adam on benign, template-benign and harmful (35% comply)."""
  w = world(config)
  d = config.data
  x, y = toy.base_training_set(w, d.n_benign, d.n_template, d.n_harmful, d.comply)
  return Task(init_model=lambda rngs: ToyFFN(config, w.num_classes, rngs=rngs),
              optimizer=optax.adam(config.base_lr), loss_fn=_sft,
              train_data=ShuffledBatches({"x": x, "y": y}, config.batch_size, config.base.seed))


# ---------------------------------------------------------------- detection (NeST Sec. 3)


def predict(model: nnx.Module, x: np.ndarray, batch: int = 1024) -> np.ndarray:
  """Logits of `x` in jitted batches of one shape (the last one padded): one compile per model."""
  graphdef, state = nnx.split(model)
  fn = _jitted_forward(graphdef)
  out = []
  for i in range(0, len(x), batch):
    chunk = x[i:i + batch]
    padded = np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)])
    out.append(np.asarray(fn(state, jnp.asarray(padded)))[:len(chunk)])
  return np.concatenate(out)


@functools.lru_cache(maxsize=64)
def _jitted_forward(graphdef):
  return jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))


_DETECTIONS: dict[tuple, safety.SafetyNeurons] = {}


def detect(config: NestConfig, base_state: Any) -> safety.SafetyNeurons:
  """Probe, select and cluster the base model's safety neurons (cached per config and base)."""
  key = (config.data, config.hidden, config.num_layers, config.tap, config.probe_steps,
         config.probe_lr, config.probe_weight_decay, config.standardize, config.z_threshold,
         config.positive_only, config.max_k, config.min_split, config.base.seed,
         params_checksum(base_state))
  if key not in _DETECTIONS:
    w, n = world(config), config.data.probe_prompts
    harm, _ = toy.harmful(w, n, "probe/harmful")
    ben, _ = toy.benign(w, n, "probe/benign")
    _DETECTIONS[key] = safety.find_safety_neurons(
        base_model(config, base_state), ffn_layers(config), lambda m, x: m(x), harm, ben,
        probe_steps=config.probe_steps, probe_lr=config.probe_lr,
        probe_weight_decay=config.probe_weight_decay, standardize=config.standardize,
        z_threshold=config.z_threshold, positive_only=config.positive_only, max_k=config.max_k,
        min_split=config.min_split, seed=config.base.seed)
  return _DETECTIONS[key]


def plan_of(config: NestConfig, base_state: Any) -> list[safety.LayerClusters]:
  """The neurons and clusters the repair trains: detected, random (control), or per neuron."""
  found = detect(config, base_state)
  plan = list(found.plan)
  if config.method == "random":
    plan = safety.random_plan(plan, found.widths, seed=config.repair.seed + 1000)
  if config.per_neuron:
    plan = safety.per_neuron(plan)
  return plan


# ---------------------------------------------------------------- the repair stage


def repair_set(config: NestConfig, base_state: Any) -> dict[str, np.ndarray]:
  """Vanilla harmful -> REFUSE and benign -> the base model's own answers (no jailbreaks)."""
  w, n = world(config), config.data.repair_prompts
  harm, _ = toy.harmful(w, n, "repair/harmful")
  ben, _ = toy.benign(w, n, "repair/benign")
  targets = np.asarray(safety.greedy_targets(jnp.asarray(predict(base_model(config, base_state), ben))))
  return {"x": np.concatenate([harm, ben]),
          "y": np.concatenate([np.full(n, toy.REFUSE, np.int32), targets]),
          "harmful": np.concatenate([np.ones(n), np.zeros(n)]).astype(np.float32)}


def representations(model: nnx.Module, x: jax.Array, config: NestConfig) -> list[jax.Array]:
  """Circuit breakers' representations at every layer (`[B, L, D]` each): the residual stream
  after the layer, or with `cb_representation="update"` what the layer added to it."""
  n = config.num_layers
  sites = {("out", l): safety.TapSite(("layers", l)) for l in range(n)}
  if config.cb_representation == "update":
    sites.update({("in", l): safety.TapSite(("layers", l), "input") for l in range(n)})
  records = safety.record(model, lambda m: m(x), sites)
  if config.cb_representation == "update":
    return [records[("out", l)] - records[("in", l)] for l in range(n)]
  return [records[("out", l)] for l in range(n)]


def _cb_loss(config: NestConfig):
  def loss(model, batch, rng):  # pylint: disable=unused-argument
    reps = representations(model, batch["x"], config)
    pairs = [(r, batch[f"rep{l}"]) for l, r in enumerate(reps)]
    harm = (batch["harmful"] * batch["mask"])[:, None]
    ben = ((1 - batch["harmful"]) * batch["mask"])[:, None]
    total, parts = safety.rr_loss(pairs, pairs, batch["progress"][0], config.cb_alpha, harm, ben)
    return total, parts
  return loss


def make_repair_task(config: NestConfig, mesh, inputs) -> Task:  # pylint: disable=unused-argument
  """The repair of the trained base by `config.method`."""
  base_state = inputs["base"]
  data = repair_set(config, base_state)
  steps = config.repair.steps
  restored = lambda: base_model(config, base_state)  # noqa: E731
  method = config.method
  if method in ("nest", "random"):
    plan = plan_of(config, base_state)
    init = lambda rngs: safety.NeuronDeltas(restored(), ffn_layers(config), plan, config.variant)  # noqa: E731
    return Task(init_model=init, optimizer=optax.adam(config.nest_lr), loss_fn=_sft,
                train_data=ShuffledBatches(data, config.batch_size, config.repair.seed),
                wrt=safety.DeltaParam)
  if method == "full":
    return Task(init_model=lambda rngs: restored(), optimizer=optax.adam(config.full_lr), loss_fn=_sft,
                train_data=ShuffledBatches(data, config.batch_size, config.repair.seed))
  rank = config.lora_rank if method == "lora" else config.cb_rank
  init = lambda rngs: safety.add_lora(restored(), projection_paths(config), rank, rngs=rngs)  # noqa: E731
  if method == "lora":
    return Task(init_model=init, optimizer=optax.adam(config.lora_lr), loss_fn=_sft,
                train_data=ShuffledBatches(data, config.batch_size, config.repair.seed),
                wrt=nnx.LoRAParam)
  reps = representations(restored(), jnp.asarray(data["x"]), config)  # the frozen model's
  data = {**data, **{f"rep{l}": np.asarray(r) for l, r in enumerate(reps)}}
  return Task(init_model=init, optimizer=optax.adam(config.lora_lr), loss_fn=_cb_loss(config),
              train_data=ShuffledBatches(data, config.batch_size, config.repair.seed, steps=steps),
              wrt=nnx.LoRAParam)


def with_seed(config: NestConfig, seed: int) -> NestConfig:
  """`config` for one seed of the reproduction (world, base model and repairs)."""
  return dataclasses.replace(config, base=dataclasses.replace(config.base, seed=seed),
                             repair=dataclasses.replace(config.repair, seed=seed))
