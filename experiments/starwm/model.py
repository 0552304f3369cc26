"""StarWM's world model on ToyRTS: data, the vmapped MLP ensemble, its Task, and the policies.

The world model of StarWM (arXiv 2602.14857) predicts the structured observation 5 s
ahead from the observation and an action sequence; ours predicts the ToyRTS state `horizon`
ticks ahead from the state and the action taken now, the base policy acting after it (the spec's
toy). It is an MLP 9 -> hidden -> hidden -> 6 on the standardized state and the one-hot action,
predicting the standardized change of the state; `seeds` of them are one `WMEnsemble` whose
parameters carry a leading member axis, each member trained on its own seed's epsilon-greedy
transitions (the loss is the sum of the members' mean squared errors, so under Adam every
member trains exactly as it would alone).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data
from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.envs import toy_rts
from jaxpapers.envs.toy_rts import BUILD_DEPOT, NUM_ACTIONS, RTSState, ToyRTS
from jaxpapers.worldmodel.refine import predict_then_refine

from .config import StarWMConfig

ENV = ToyRTS()
STATE_DIM = len(toy_rts.FIELDS)


# ---------------------------------------------------------------- data


def lookahead(env: ToyRTS, state: RTSState, action: jax.Array, horizon: int) -> RTSState:
  """The true state `horizon` ticks ahead: `action` now, then the base policy."""
  s = env.step(state, action)
  for _ in range(horizon - 1):
    s = env.step(s, env.base_policy(s))
  return s


def _collect(env: ToyRTS, start: RTSState, explore: jax.Array, random_action: jax.Array,
             horizon: int):
  """(states [N, 6], actions [N], targets [N, 6]) of epsilon-greedy episodes.

  `start`: episode starts [B]; `explore`, `random_action`: [B, T] host draws (True: take
  `random_action`, else the base policy's).
  """
  def episode(s0, ex, ra):
    def tick(s, xs):
      a = jnp.where(xs[0], xs[1], env.base_policy(s)).astype(jnp.int32)
      return env.step(s, a), (s, a)
    _, (states, actions) = jax.lax.scan(tick, s0, (ex, ra))
    return states, actions

  states, actions = jax.vmap(episode)(start, explore, random_action)
  states = jax.tree.map(lambda x: x.reshape(-1), states)
  actions = actions.reshape(-1)
  targets = jax.vmap(lambda s, a: lookahead(env, s, a, horizon))(states, actions)
  return toy_rts.to_array(states), actions, toy_rts.to_array(targets)


class Transitions(NamedTuple):
  """Per-seed transitions: states [S, N, 6], actions [S, N], targets [S, N, 6] (int32)."""

  states: np.ndarray
  actions: np.ndarray
  targets: np.ndarray


class Stats(NamedTuple):
  """Per-seed standardization [S, 6] of the state (inputs) and of its change (outputs)."""

  in_mean: jax.Array
  in_std: jax.Array
  out_mean: jax.Array
  out_std: jax.Array


@functools.partial(jax.jit, static_argnames=("horizon",))
def _collect_seeds(start, explore, random_action, *, horizon):
  return jax.vmap(lambda s, e, r: _collect(ENV, s, e, r, horizon))(start, explore, random_action)


def transitions(config: StarWMConfig) -> tuple[Transitions, Transitions]:
  """(train, held-out) transitions of every seed: `config.transitions` and `config.heldout` per
  seed, from separate episodes of one collection (one compiled program; cached, so the runs of
  the quality ladder and the evaluation share one collection)."""
  return _transitions(config.seeds, config.transitions, config.heldout, config.episode_ticks,
                      float(config.epsilon), config.horizon, config.train.seed)


@functools.lru_cache(maxsize=2)
def _transitions(seeds: int, n_train: int, n_held: int, ticks: int, epsilon: float, horizon: int,
                 seed: int) -> tuple[Transitions, Transitions]:
  e_train, e_held = -(-n_train // ticks), -(-n_held // ticks)
  rng = np.random.default_rng([seed, 0])
  shape = (seeds, e_train + e_held)
  start = ENV.random_starts(rng, shape)
  explore = rng.random(shape + (ticks,)) < epsilon
  random_action = rng.integers(0, NUM_ACTIONS, shape + (ticks,)).astype(np.int32)
  s, a, t = _collect_seeds(start, explore, random_action, horizon=horizon)
  s, a, t = (np.asarray(x) for x in (s, a, t))
  cut = e_train * ticks
  return (Transitions(s[:, :n_train], a[:, :n_train], t[:, :n_train]),
          Transitions(s[:, cut:cut + n_held], a[:, cut:cut + n_held], t[:, cut:cut + n_held]))


def stats_of(train: Transitions) -> Stats:
  s = train.states.astype(np.float64)
  d = train.targets.astype(np.float64) - s
  std = lambda x: np.maximum(x.std(1), 1e-3)  # noqa: E731  (constant fields: no division by 0)
  return Stats(*(jnp.asarray(v, jnp.float32) for v in (s.mean(1), std(s), d.mean(1), std(d))))


def features(stats: Stats, states: jax.Array, actions: jax.Array) -> jax.Array:
  """[..., 9] inputs of one member: standardized state and one-hot action."""
  x = (jnp.asarray(states, jnp.float32) - stats.in_mean) / stats.in_std
  return jnp.concatenate([x, jax.nn.one_hot(actions, NUM_ACTIONS)], -1)


# ---------------------------------------------------------------- the ensemble


class WMEnsemble(nnx.Module):
  """`members` MLPs 9 -> hidden -> hidden -> 6 (tanh), parameters stacked on axis 0.

  `__call__(x)` maps `[batch, members, 9]` to `[batch, members, 6]`: member m reads column m.
  """

  def __init__(self, members: int, hidden: int = 128, *, rngs: nnx.Rngs):
    sizes = (STATE_DIM + NUM_ACTIONS, hidden, hidden, STATE_DIM)
    init = nnx.initializers.lecun_normal()
    self.kernels = nnx.List([
        nnx.Param(jax.vmap(lambda k, a=a, b=b: init(k, (a, b)))(jax.random.split(rngs.params(), members)))
        for a, b in zip(sizes[:-1], sizes[1:])])
    self.biases = nnx.List([nnx.Param(jnp.zeros((members, b))) for b in sizes[1:]])

  def __call__(self, x: jax.Array) -> jax.Array:
    n = len(self.kernels)
    for i, (w, b) in enumerate(zip(self.kernels, self.biases)):
      x = jnp.einsum("bmi,mio->bmo", x, w[...]) + b[...]
      if i < n - 1:
        x = jnp.tanh(x)
    return x


def member_wm(params: dict, stats: Stats, state: RTSState, action: jax.Array) -> RTSState:
  """One member's predicted state `horizon` ahead (float fields), from its own parameters
  (`params`: kernels, biases without the member axis) and standardization."""
  x = features(stats, toy_rts.to_array(state), action)
  n = len(params["kernels"])
  for i, (w, b) in enumerate(zip(params["kernels"], params["biases"])):
    x = x @ w + b
    if i < n - 1:
      x = jnp.tanh(x)
  delta = x * stats.out_std + stats.out_mean
  return toy_rts.from_array(toy_rts.to_array(state).astype(jnp.float32) + delta)


def member_params(state) -> dict:
  """The ensemble's parameters as {"kernels": [...], "biases": [...]} of `[members, ...]` arrays."""
  pure = nnx.to_pure_dict(state) if not isinstance(state, dict) else state
  return {k: [jnp.asarray(pure[k][i]) for i in sorted(pure[k], key=int)] for k in ("kernels", "biases")}


def make_task(config: StarWMConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The world models' training: the summed per-member MSE of the standardized change."""
  train, held = transitions(config)
  stats = stats_of(train)

  def arrays(t: Transitions) -> dict[str, np.ndarray]:
    x = jax.vmap(features)(stats, t.states, t.actions)  # [S, N, 9]
    y = (t.targets - t.states - stats.out_mean[:, None]) / stats.out_std[:, None]
    return {"x": np.asarray(x).swapaxes(0, 1), "y": np.asarray(y, np.float32).swapaxes(0, 1)}

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    err = (model(batch["x"]) - batch["y"]) ** 2  # [B, S, 6]
    w = batch["mask"].astype(jnp.float32)[:, None, None]
    per_member = (err * w).sum((0, 2)) / (w.sum() * STATE_DIM)
    return per_member.sum(), {"mse": per_member.mean()}

  def eval_fn(model, batch):
    err = ((model(batch["x"]) - batch["y"]) ** 2).mean((1, 2))
    return {"mse": metrics.mean(err, batch["mask"])}

  train_data = data.batches(data.ArraySource(arrays(train)), config.batch_size, seed=config.train.seed,
                            pad_to_multiple=mesh.size, process_index=jax.process_index(),
                            process_count=jax.process_count())
  eval_data = {"heldout": data.eval_batches(data.ArraySource(arrays(held)), 1024,
                                            pad_to_multiple=mesh.size,
                                            process_index=jax.process_index(),
                                            process_count=jax.process_count())}
  return Task(init_model=functools.partial(WMEnsemble, config.seeds, config.hidden),
              optimizer=optax.adam(config.learning_rate), loss_fn=loss_fn, train_data=train_data,
              eval_data=eval_data, eval_fn=eval_fn)


# ---------------------------------------------------------------- policies and episodes


def refine_rule(env: ToyRTS, margin: float):
  """The spec's refine rule: build a depot now when the predicted used supply reaches the
  predicted cap within the horizon and a depot can be started (100 minerals, none building)."""
  def refine(state: RTSState, proposed: jax.Array, prediction: RTSState) -> jax.Array:
    hit = prediction.supply_used >= prediction.supply_cap - margin
    return jnp.where(hit & env.can_build(state), BUILD_DEPOT, proposed).astype(jnp.int32)
  return refine


class EpisodeStats(NamedTuple):
  """Per-episode figures: block rate (spec count), stall rate (used >= cap), final workers,
  depots started, final supply cap."""

  block_rate: jax.Array
  stall_rate: jax.Array
  workers: jax.Array
  depots: jax.Array
  cap: jax.Array


def episode(env: ToyRTS, policy, start: RTSState, ticks: int) -> EpisodeStats:
  states, actions = env.rollout(policy, start, ticks)
  before = jax.tree.map(lambda x: x[:-1], states)
  return EpisodeStats(env.blocked(before).mean(),
                      (before.supply_used >= before.supply_cap).mean(),
                      states.workers[-1], ((actions == BUILD_DEPOT) & env.legal(before, actions)).sum(),
                      states.supply_cap[-1])


def starts(config: StarWMConfig) -> RTSState:
  """Evaluation starts [S, E]: randomized (`ToyRTS.random_starts`), apart from the data's."""
  return ENV.random_starts(np.random.default_rng([config.train.seed, 1]),
                           (config.seeds, config.eval_episodes))


def action_of(refined):
  return lambda s: refined(s).action


@functools.partial(jax.jit, static_argnames=("ticks", "horizon", "margin"))
def evaluate_simulators(start: RTSState, *, ticks: int, horizon: int, margin: float):
  """(base, refine with the true simulator) EpisodeStats over starts [S, E]."""
  refined = predict_then_refine(ENV.base_policy, ENV.step, refine_rule(ENV, margin), horizon)
  run = lambda policy: jax.vmap(jax.vmap(lambda s: episode(ENV, policy, s, ticks)))(start)  # noqa: E731
  return run(ENV.base_policy), run(action_of(refined))


@functools.partial(jax.jit, static_argnames=("ticks", "margin"))
def evaluate_learned(params: dict, stats: Stats, start: RTSState, *, ticks: int, margin: float):
  """Refine with each learned world model: params of `[L, S, ...]` (quality levels, members),
  stats `[S, 6]`, starts `[S, E]` -> EpisodeStats `[L, S, E]`; one call of the H-step model."""
  def one(p, st, s0):
    wm = functools.partial(member_wm, p, st)
    refined = predict_then_refine(ENV.base_policy, wm, refine_rule(ENV, margin), horizon=1)
    return jax.vmap(lambda s: episode(ENV, action_of(refined), s, ticks))(s0)
  per_member = jax.vmap(one)  # over S: params, stats, starts
  return jax.vmap(lambda p: per_member(p, stats, start))(params)


@jax.jit
def predict_heldout(params: dict, stats: Stats, states: jax.Array, actions: jax.Array) -> jax.Array:
  """Predicted states [L, S, N, 6] of the held-out transitions by every level and member."""
  def one(p, st, s, a):
    return toy_rts.to_array(member_wm(p, st, toy_rts.from_array(s), a))
  per_member = jax.vmap(one)
  return jax.vmap(lambda p: per_member(p, stats, states, actions))(params)
