"""GRPO's rollout-update loop on SeqBandit: plain, filter only (DAPO-style) and the MRPO buffer.

Each update batch comes from a `jaxpapers.rl.RolloutBuffer` (arXiv 2602.16855, Sec. 4): the
loop samples from the current policy (token ids and behaviour log-probs transported with the
rollout, `jaxpapers.rl.transport`), offers the groups to the buffer until it can emit B groups,
then takes `inner_steps` Adam steps on `jaxpapers.rl.grpo_loss` over that batch (the ratios
are against the stored behaviour log-probs). Every batch has the same shape, so the update
compiles once.

This loop is not the shared `jaxpapers.core` Trainer: the Trainer's data come from an iterator
that cannot see the current parameters, while here every batch is sampled from the policy being
trained, and how many sampling calls an update needs is decided on the host by the buffer.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import rl
from jaxpapers.envs.seq_bandit import SeqBandit, make_seq_bandit

from .config import MRPOConfig


@dataclasses.dataclass
class VariantRun:
  """What one variant's run measured.

  Attributes:
    variant: plain, filter or mrpo.
    curve: one record per update: update, rollouts (consumed so far), success, collapsed
      (share of the batch's groups with zero advantage), clip_fraction, loss.
    buffer: the buffer's counters at the end.
    stopped: why the run ended early ("" when it did all its updates).
    batch_devices: device of each batch (-1: mixed).
    retraces: traces of the update step during this run (0 after the first run of a shape: it
      never retraced; 1 for the first).
  """

  variant: str
  curve: list[dict]
  buffer: dict
  stopped: str
  batch_devices: list[int]
  retraces: int


def make_policy(config: MRPOConfig, num_prompts: int, rngs: nnx.Rngs) -> nnx.Module:
  if config.policy == "lm":
    return rl.LMPolicy(num_prompts, config.length, config.vocab, d_model=config.lm_width,
                       num_layers=config.lm_layers, num_heads=config.lm_heads, rngs=rngs)
  return rl.FactorizedPolicy(num_prompts, config.length, config.vocab, config.hidden, rngs=rngs)


# Pure functions of (graphdef, state) under jax.jit: the graphdef is static and structural, so
# every run of the same shapes reuses one compiled program.


@functools.partial(jax.jit, static_argnums=0, static_argnames=("length", "temperature"))
def _sample(graphdef, state, prompts, key, *, length, temperature):
  return rl.sample(nnx.merge(graphdef, state), prompts, key, length, temperature)


TRACES = {"update": 0}  # times the update step was traced (compiled) in this process


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1,
                   static_argnames=("inner_steps", "clip_eps", "kl_coef", "temperature"))
def _update(graphdef, state, ref_state, batch, *, inner_steps, clip_eps, kl_coef, temperature):
  """`inner_steps` Adam steps of the GRPO loss on one batch; the new state, first step's metrics."""
  TRACES["update"] += 1  # runs only while tracing
  policy, optimizer = nnx.merge(graphdef, state)
  logp_ref = None
  if kl_coef:
    ref = nnx.merge(nnx.graphdef(policy), ref_state)
    logp_ref = rl.recompute_logprobs(ref, batch["prompts"], batch["tokens"], temperature)

  def loss_fn(model):
    logp = rl.recompute_logprobs(model, batch["prompts"], batch["tokens"], temperature)
    return rl.grpo_loss(logp, batch["logp"], batch["advantages"], batch["mask"], clip_eps, kl_coef,
                        logp_ref)

  first = None
  for _ in range(inner_steps):
    (loss, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(policy)
    optimizer.update(policy, grads)
    if first is None:
      first = {"loss": loss, **metrics}
  return nnx.state((policy, optimizer)), first


@functools.partial(jax.jit, static_argnums=0)
def _success(graphdef, state, prompts, targets):
  """Mean exact success probability pi(target | prompt) over the prompts (no sampling noise)."""
  policy = nnx.merge(graphdef, state)
  return jnp.mean(jnp.exp(rl.sequence_logprob(policy(prompts, targets), targets)))


@functools.lru_cache(maxsize=None)
def _adam(lr: float) -> optax.GradientTransformation:
  """One transform object per learning rate: the optimizer's graphdef holds it, so runs that share
  it share the compiled update."""
  return optax.adam(lr)


def env_of(config: MRPOConfig, seed: int, devices: int | None = None) -> SeqBandit:
  return make_seq_bandit(config.tasks, config.length, config.vocab, devices or config.devices, seed=seed)


def buffer_of(config: MRPOConfig, variant: str, devices: int, alternate: bool) -> tuple[rl.RolloutBuffer, int, int]:
  """The variant's buffer, rollouts per task N and tasks per sampling call S."""
  g, b = config.group, config.groups_per_update
  if variant == "plain":
    buf = rl.RolloutBuffer(g, b, config.length, select="all", filter_collapsed=False, num_devices=devices)
    return buf, g, b
  if variant == "filter":
    buf = rl.RolloutBuffer(g, b, config.length, select="all", filter_collapsed=True, num_devices=devices,
                           alternate_devices=alternate)
    return buf, g, config.sample_tasks
  if variant == "mrpo":
    buf = rl.RolloutBuffer(g, b, config.length, select="balanced", filter_collapsed=True,
                           num_devices=devices, alternate_devices=alternate)
    return buf, config.oversample, config.sample_tasks
  raise ValueError(f"unknown variant {variant!r}")


def train_variant(config: MRPOConfig, variant: str, seed: int, updates: int, *, devices: int | None = None,
                  alternate: bool = False, callback=None) -> VariantRun:
  """Runs `updates` GRPO updates of one variant from a fresh policy; one record per update.

  `callback(update, record)` (a progress bar) gets {"kind": "train", "loss", "steps_per_second"}.
  """
  devices = devices or config.devices
  env = env_of(config, seed, devices)
  policy = make_policy(config, env.num_prompts, nnx.Rngs(seed))
  optimizer = nnx.Optimizer(policy, _adam(config.lr), wrt=nnx.Param)
  graphdef, state = nnx.split((policy, optimizer))
  policy_def, ref_state = nnx.split(policy)  # the initial policy: the KL reference
  ref_state = jax.tree.map(jnp.copy, ref_state)
  buf, n, s = buffer_of(config, variant, devices, alternate)
  host = np.random.default_rng(seed + 12345)
  key = jax.random.key(seed + 1)
  all_prompts = jnp.arange(env.num_prompts)
  all_targets = env.target_of(all_prompts)
  curve, stopped = [], ""
  traces = TRACES["update"]
  kw = dict(inner_steps=config.inner_steps, clip_eps=config.clip_eps, kl_coef=config.kl_coef,
            temperature=config.temperature)
  t0 = time.perf_counter()
  for update in range(1, updates + 1):
    start = buf.rollouts_consumed
    while not buf.ready():
      if buf.rollouts_consumed - start > config.max_rollouts_per_update:
        stopped = f"no batch after {config.max_rollouts_per_update} rollouts at update {update}"
        break
      key, sub = jax.random.split(key)
      tasks = host.integers(0, env.num_tasks, s)
      dev = (np.full(s, buf.next_device) if buf.next_device is not None
             else host.integers(0, env.num_devices, s))
      prompts = np.asarray(env.prompt_ids(tasks, dev))
      roll = _sample(policy_def, state[0], jnp.asarray(np.repeat(prompts, n)), sub, length=config.length,
                     temperature=config.temperature)
      rewards = np.asarray(env.reward(roll.prompts, roll.tokens)).reshape(s, n)
      shape = (s, n, config.length)
      buf.add(prompts, dev, np.asarray(roll.tokens).reshape(shape), np.asarray(roll.logp).reshape(shape),
              np.asarray(roll.mask).reshape(shape), rewards)
    if stopped:
      break
    batch = buf.pop()
    collapsed = float(batch["collapsed"].mean())
    device_batch = {k: jnp.asarray(batch[k]) for k in ("prompts", "tokens", "logp", "mask", "advantages")}
    state, metrics = _update(graphdef, state, ref_state, device_batch, **kw)
    curve.append({"update": update, "rollouts": buf.rollouts_consumed,
                  "success": float(_success(policy_def, state[0], all_prompts, all_targets)),
                  "collapsed": collapsed,
                  **{k: float(v) for k, v in metrics.items()}})
    if callback is not None:
      callback(update, {"kind": "train", "loss": curve[-1]["loss"],
                        "steps_per_second": update / max(time.perf_counter() - t0, 1e-9)})
  counters = {k: getattr(buf, k) for k in ("rollouts_consumed", "groups_seen", "groups_dropped",
                                           "groups_evicted", "updates")}
  return VariantRun(variant, curve, counters, stopped, list(buf.batch_devices),
                    TRACES["update"] - traces)




def success_at(curve: list[dict], *, update: int | None = None, rollouts: int | None = None) -> tuple[float, int, int]:
  """(success, update, rollouts) of the last record at or before `update` / within `rollouts`."""
  rows = [r for r in curve if (update is None or r["update"] <= update)
          and (rollouts is None or r["rollouts"] <= rollouts)]
  if not rows:
    return 0.0, 0, 0
  return rows[-1]["success"], rows[-1]["update"], rows[-1]["rollouts"]
