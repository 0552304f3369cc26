"""The learned policies of the Calibrate-Then-Act reproduction: MLPs trained by policy gradient.

They stand in for the paper's LLM agents (arXiv 2602.16699, Sec. 3 and 5: the agent with the
calibrated prior in its prompt vs without; RL vs CTA-RL). Each update samples a fresh batch of
episodes inside the loss from the step's key (the loop's full batch is a one-row placeholder per
device: the episodes are generated, not read, and are replicated on every device), rolls the current policy out with stop-gradient
logits, and applies `jaxpapers.rl.reinforce_loss` with the batch-mean baseline (or PPO's clipped
loss) to the recomputed logits. The shared loop runs it like any task.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data, rl
from jaxpapers.core.train import Task
from jaxpapers.envs import coding_task, pandora

from .config import CTAConfig

ARITIES = coding_task.CSV_ARITIES


class MLPPolicy(nnx.Module):
  """Observation -> `depth` tanh layers -> logits; the output layer starts at zero (uniform)."""

  def __init__(self, inputs: int, actions: int, hidden: int = 64, depth: int = 2, *,
               rngs: nnx.Rngs):
    sizes = (inputs,) + (hidden,) * depth
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.out = nnx.Linear(sizes[-1], actions, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for layer in self.layers:
      x = jnp.tanh(layer(x))
    return self.out(x)


def population_marginal() -> jax.Array:
  """The CSV prior averaged over the 16 filename-feature combinations [3, 3]: what an agent
  without the per-task prior knows (the base rates)."""
  combos = np.array(np.meshgrid(*[[0, 1]] * 4, indexing="ij")).reshape(4, -1).T
  return coding_task.csv_priors(jnp.asarray(combos)).mean(0)


def blind_coding(tasks: coding_task.Tasks) -> coding_task.Tasks:
  """The coding tasks as an agent without the prior sees them: the population marginal."""
  return tasks._replace(shown=jnp.broadcast_to(population_marginal(), tasks.shown.shape))


def pandora_tasks(config: CTAConfig, key: jax.Array, shape: tuple[int, ...]) -> pandora.Tasks:
  return pandora.sample(key, shape, config.n_boxes, config.alpha, round_decimals=config.round_decimals)


# ---- rollouts of a policy: actions, observations, masks ----

def _gumbel(key: jax.Array, turns: int, batch: int, actions: int, greedy: bool) -> jax.Array:
  """Gumbel noise of every turn in one draw [turns, batch, actions] (zeros when greedy):
  argmax(logits + noise) samples the policy as `jax.random.categorical` does, with one
  threefry program for the whole rollout instead of one per turn (CPU compile time)."""
  if greedy:
    return jnp.zeros((turns, batch, actions))
  return jax.random.gumbel(key, (turns, batch, actions))


def pandora_rollout(model, config: CTAConfig, tasks: pandora.Tasks, key: jax.Array,
                    with_prior: bool, greedy: bool = False):
  """(final states, observations [B, T, d], actions [B, T] (-1 once done), live mask [B, T],
  behaviour log-probs [B, T]) of `model` on a batch of tasks."""
  state = jax.vmap(pandora.reset)(tasks)
  observations, actions, masks, logps = [], [], [], []
  noise = _gumbel(key, config.n_boxes, tasks.truth.shape[0], 2 * config.n_boxes, greedy)
  for turn in range(config.n_boxes):
    obs = jax.vmap(functools.partial(pandora.observe, with_prior=with_prior))(state)
    logits = jax.lax.stop_gradient(model(obs))
    action = jnp.argmax(logits + noise[turn], -1)
    live = ~state.done
    observations.append(obs)
    actions.append(jnp.where(live, action, -1))
    masks.append(live)
    logps.append(rl.token_logprobs(logits, action))
    state = jax.vmap(pandora.step)(state, action)
  stack = lambda xs: jnp.stack(xs, 1)  # noqa: E731
  return state, stack(observations), stack(actions), stack(masks), stack(logps)


def coding_rollout(model, tasks: coding_task.Tasks, key: jax.Array, with_prior: bool,
                   greedy: bool = False, max_turns: int = coding_task.MAX_TURNS):
  """As `pandora_rollout`, on coding tasks (the tasks' `shown` is the prior the RUN guesses from)."""
  state = jax.vmap(coding_task.reset)(tasks)
  observations, actions, masks, logps = [], [], [], []
  observe = functools.partial(coding_task.observe, with_prior=with_prior, max_turns=max_turns)
  step = functools.partial(coding_task.step, arities=ARITIES, max_turns=max_turns)
  noise = _gumbel(key, max_turns, tasks.rho.shape[0], len(ARITIES) + 1, greedy)
  for turn in range(max_turns):
    obs = jax.vmap(observe)(tasks, state)
    logits = jax.lax.stop_gradient(model(obs))
    action = jnp.argmax(logits + noise[turn], -1)
    live = ~state.done & (state.turns < max_turns)
    observations.append(obs)
    actions.append(jnp.where(live, action, -1))
    masks.append(live)
    logps.append(rl.token_logprobs(logits, action))
    state = jax.vmap(step)(tasks, state, action)
  stack = lambda xs: jnp.stack(xs, 1)  # noqa: E731
  return state, stack(observations), stack(actions), stack(masks), stack(logps)


def _pg_loss(model, config: CTAConfig, observations, actions, masks, logps, returns):
  adv = rl.mean_baseline(returns)
  if config.algorithm == "reinforce":
    loss, metrics = rl.reinforce_loss(model(observations), actions, adv, masks,
                                      entropy_coef=config.entropy_coef)
    return loss, metrics
  total, metrics = 0.0, {}
  for _ in range(config.ppo_epochs):  # PPO epochs on the one batch share the behaviour log-probs
    loss, metrics = rl.ppo_loss(model(observations), actions, logps, adv, masks,
                                entropy_coef=config.entropy_coef)
    total = total + loss
  return total / config.ppo_epochs, metrics


def pandora_loss(config: CTAConfig, with_prior: bool, model, batch, rng):  # pylint: disable=unused-argument
  """Policy-gradient loss on a fresh batch of `batch_episodes` Pandora episodes."""
  task_key, act_key = jax.random.split(rng)
  tasks = pandora_tasks(config, task_key, (config.batch_episodes,))
  final, obs, actions, masks, logps = pandora_rollout(model, config, tasks, act_key, with_prior)
  loss, metrics = _pg_loss(model, config, obs, actions, masks, logps, final.reward)
  return loss, {"reward": final.reward.mean(), **metrics}


def coding_loss(config: CTAConfig, with_prior: bool, model, batch, rng):  # pylint: disable=unused-argument
  """Policy-gradient loss on a fresh batch of coding episodes."""
  task_key, act_key = jax.random.split(rng)
  tasks = coding_task.sample_csv(task_key, (config.batch_episodes,))
  if not with_prior:
    tasks = blind_coding(tasks)
  final, obs, actions, masks, logps = coding_rollout(model, tasks, act_key, with_prior)
  loss, metrics = _pg_loss(model, config, obs, actions, masks, logps, final.reward)
  return loss, {"reward": final.reward.mean(), "tests": final.tests.mean(), **metrics}


def _task(config: CTAConfig, mesh, inputs: int, actions: int, loss_fn) -> Task:
  episodes = data.ArraySource({"placeholder": np.zeros(mesh.size, np.int32)})
  train_data = data.full_batch(episodes, pad_to_multiple=mesh.size,
                               process_index=jax.process_index(), process_count=jax.process_count())
  return Task(
      init_model=functools.partial(MLPPolicy, inputs, actions, config.hidden, config.depth),
      optimizer=optax.adam(config.learning_rate),
      loss_fn=loss_fn,
      train_data=train_data,
  )


def make_pandora_task(config: CTAConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The Pandora policy of `config.with_prior`'s observation."""
  n = config.n_boxes
  return _task(config, mesh, pandora.observation_size(n, config.with_prior), 2 * n,
               functools.partial(pandora_loss, config, config.with_prior))


def make_coding_task(config: CTAConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The coding-task policy of `config.with_prior`'s observation and belief."""
  return _task(config, mesh, coding_task.observation_size(ARITIES, config.with_prior),
               len(ARITIES) + 1, functools.partial(coding_loss, config, config.with_prior))
