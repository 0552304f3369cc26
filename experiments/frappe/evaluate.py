"""Observables of the FRAPPE experiment (arXiv 2602.17259; our CPU protocol, README).

* Closed-loop success: batched `push2d` rollouts (`jax.vmap` over episodes), the policy called
  every `replan` steps (DDIM from noise, `ddim_steps` calls), in distribution and under shift
  (held-out textures, distractors, brightness).
* Future probe R^2: ridge regression (scikit-learn) from the mean-pooled prefix state at the
  alignment layer (before any projector) to the box position at t + h, fitted on task frames
  and scored on held-out in-distribution frames.
* Router health: mean gate weight per expert and gate entropy; cost per policy call (XLA's
  FLOP count and wall clock).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from jaxpapers.diffusion import ddpm
from jaxpapers.envs import push2d
from jaxpapers.nn import rdt_policy as rp

from . import data
from .config import FrappeConfig


def _actions(model, images, proprio, noise, config: FrappeConfig, steps: int):
  sched = ddpm.CosineSchedule(config.model.diffusion_steps)
  x = data.normalize(images)
  return ddpm.ddim_sample(lambda z, k: model(x, proprio, z, k)[0], noise, sched, steps)


@functools.partial(jax.jit, static_argnames=("graphdef", "config", "steps"))
def _rollout(graphdef, state, key, textures, config: FrappeConfig, steps: int):
  """Success rate of `len(textures)` batched episodes (texture -1: in distribution)."""
  n = textures.shape[0]
  m = nnx.merge(graphdef, state)
  k_reset, k_loop = jax.random.split(key)
  env = jax.vmap(push2d.reset)(jax.random.split(k_reset, n))

  def chunk(env, k):
    k_obs, k_noise = jax.random.split(k)
    images = jax.vmap(push2d.observe)(env, jax.random.split(k_obs, n), textures)
    noise = jax.random.normal(k_noise, (n, config.model.chunk, config.model.action_dim))
    actions = _actions(m, images, env.agent, noise, config, steps)
    for j in range(config.replan):
      env = jax.vmap(push2d.step)(env, actions[:, j])
    return env, None
  env, _ = jax.lax.scan(chunk, env, jax.random.split(k_loop, push2d.EPISODE_STEPS // config.replan))
  return jnp.mean(env.success.astype(jnp.float32))


def success_rates(model: nnx.Module, config: FrappeConfig, steps: int | None = None,
                  seed: int = 1000) -> dict[str, float]:
  """Closed-loop success in distribution ("id") and under shift ("ood"), fixed seeds.

  One compiled rollout per model structure and step count, shared by the runs and settings.
  """
  steps = steps or config.ddim_steps
  n = config.data.eval_episodes
  graphdef, state = nnx.split(model)
  key = jax.random.key(seed)
  ood = jnp.arange(n) % config.data.textures  # held-out textures 0..N-1
  return {"id": float(_rollout(graphdef, state, key, jnp.full((n,), -1), config, steps)),
          "ood": float(_rollout(graphdef, state, jax.random.fold_in(key, 1), ood, config, steps))}


def readouts(model: nnx.Module, config: FrappeConfig, frames: dict, seed: int = 7) -> np.ndarray:
  """Mean-pooled prefix states at the alignment layer, [N, d] (MiPA: mean over the experts),
  with pure-noise actions at the first DDIM step (the state the policy is in at inference)."""
  graphdef, state = nnx.split(model)
  sched = ddpm.CosineSchedule(config.model.diffusion_steps)

  @jax.jit
  def f(state, images, proprio, noise):
    m = nnx.merge(graphdef, state)
    k = jnp.full((images.shape[0],), sched.steps - 1)
    out = m(data.normalize(images), proprio, noise, k)[1]
    return jnp.mean(out["readouts"], 0) if isinstance(out, dict) else out

  n = len(frames["images"])
  noise = jax.random.normal(jax.random.key(seed), (n, config.model.chunk, config.model.action_dim))
  return np.asarray(f(state, jnp.asarray(frames["images"]), jnp.asarray(frames["proprio"]), noise))


def probe_r2(model: nnx.Module, config: FrappeConfig, train: dict, test: dict) -> float:
  """R^2 on `test` of a ridge probe from the prefix read-out to the future box position."""
  ridge = Ridge(alpha=1.0).fit(readouts(model, config, train), train["future_box"])
  return float(r2_score(test["future_box"], ridge.predict(readouts(model, config, test))))


def router_health(model: rp.MiPAPolicy, config: FrappeConfig, frames: dict, n: int = 1000,
                  seed: int = 8) -> dict[str, object]:
  """Mean gate weight per expert and mean gate entropy (nats) on `n` frames at random steps."""
  graphdef, state = nnx.split(model)
  n = min(n, len(frames["images"]))
  rng = np.random.default_rng(seed)
  pick = rng.permutation(len(frames["images"]))[:n]
  k = jnp.asarray(rng.integers(0, config.model.diffusion_steps, n))
  noise = jax.random.normal(jax.random.key(seed), (n, config.model.chunk, config.model.action_dim))

  @jax.jit
  def f(state):
    m = nnx.merge(graphdef, state)
    return m(data.normalize(jnp.asarray(frames["images"][pick])),
             jnp.asarray(frames["proprio"][pick]), noise, k)[1]["weights"]
  w = np.asarray(f(state))
  entropy = float(np.mean(-np.sum(w * np.log(w), -1)))
  return {"mean_weights": w.mean(0).tolist(), "min_mean_weight": float(w.mean(0).min()),
          "entropy": entropy, "max_entropy": float(np.log(w.shape[1]))}


def call_cost(model: nnx.Module, config: FrappeConfig, steps: int, batch: int = 1,
              repeats: int = 20) -> dict[str, float]:
  """Forward FLOPs (XLA's cost analysis) and wall seconds of one policy call (`steps` DDIM)."""
  graphdef, state = nnx.split(model)
  m = config.model
  images = jnp.zeros((batch, m.image_size, m.image_size, m.channels))
  proprio = jnp.zeros((batch, m.proprio_dim))
  noise = jnp.zeros((batch, m.chunk, m.action_dim))

  def f(state, images, proprio, noise):
    return _actions(nnx.merge(graphdef, state), images, proprio, noise, config, steps)
  compiled = jax.jit(f).lower(state, images, proprio, noise).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  compiled(state, images, proprio, noise).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    compiled(state, images, proprio, noise).block_until_ready()
  return {"flops": float(cost.get("flops", 0.0)), "seconds": (time.perf_counter() - start) / repeats}
