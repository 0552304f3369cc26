"""pandora: the one-prize, discounted box task of Calibrate-Then-Act, pure-functional and vmap-able.

Ding, Tomlin and Durrett, "Calibrate-Then-Act: Cost-Aware Exploration in LLM Agents", arXiv
2602.16699, Sec. 3 (the "Pandora's Box" proof of concept; the authors' `generate_pandora.py`).
This is not Weitzman's problem: there are no box values. `n` boxes, exactly one holds a prize of
value 1; the prior `p ~ Dirichlet(alpha)` is shown rounded to 2 decimals (forced to sum to 1, the
drift added to the largest entry) while the prize box is drawn from the unrounded `p`; the
discount `gamma` is uniform on {0.0, 0.1, ..., 1.0}. Each turn the agent either VERIFIES a box
(is the prize in X? YES/NO; one timestep) or GUESSES a box (ends the episode). A guess after `t`
verifications earns `gamma ** t` if right, else 0. Verifying a box already answered is a wasted
turn. An episode that has not guessed after `max_turns` turns (default `n`) earns 0.

Actions are integers: `VERIFY i` is `i`, `GUESS i` is `n + i`.

The oracle (the paper's Sec. 3.1 dynamic programme; the authors' `solve_three_boxes`, any `n`):
sort the remaining boxes by prior, descending (ties in label order); for a remaining list `S` of
mass `W` whose top box has conditional probability `q = p* / W`,

  V(S) = 1                                              if |S| = 1,
  V(S) = max(q, gamma * (q + (1 - q) * V(S without top)))  otherwise,

and the policy guesses the top box when `q >= gamma * (...)` (ties guess), else verifies it; after
a YES it guesses that box. Checking in descending order is optimal: a deterministic policy is a
verify order `x_1..x_k` and a final guess `g`, worth `sum_j p_{x_j} gamma^j + p_g gamma^k`, which
the rearrangement inequality maximizes with the top `k + 1` boxes in descending order (the test
suite checks this against enumeration of every order for n <= 5).

Every function works on any leading batch shape unless it says "one episode" (then `jax.vmap`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.envs import sampling

GAMMAS = tuple(i / 10 for i in range(11))  # the authors' discount choices
TIE_TOLERANCE = 1e-6  # verify only when it beats guessing by more (ties guess, robust to float noise)


class Tasks(NamedTuple):
  """Pandora tasks (any leading batch shape).

  Attributes:
    shown: the prior the agent sees (rounded) [..., n].
    raw: the prior the prize was drawn from [..., n].
    truth: the prize box [...] (int32).
    gamma: the discount [...].
  """

  shown: jax.Array
  raw: jax.Array
  truth: jax.Array
  gamma: jax.Array


class State(NamedTuple):
  """One episode's state (a batch of them under `vmap`).

  Attributes:
    shown: the prior the agent acts on [n].
    gamma: the discount.
    truth: the prize box (hidden from the agent's observation).
    t: verifications and wasted turns so far (the exponent of the discount).
    turns: turns taken.
    verified: boxes answered NO [n].
    found: the box answered YES, or -1.
    done: whether the agent has guessed.
    correct: whether the guess was right.
    reward: `gamma ** t` for a right guess, else 0.
  """

  shown: jax.Array
  gamma: jax.Array
  truth: jax.Array
  t: jax.Array
  turns: jax.Array
  verified: jax.Array
  found: jax.Array
  done: jax.Array
  correct: jax.Array
  reward: jax.Array


def round_priors(raw: jax.Array, decimals: int = 2) -> jax.Array:
  """The shown prior: `raw` rounded to `decimals`, forced to sum to 1 [..., n].

  The authors' `_rounded_priors_sum_to_one`: round, add the drift to the (first) largest entry,
  clip to [0, 1] and renormalize, round again and add the last drift to the largest entry.
  """
  def fix(x):
    top = jax.nn.one_hot(jnp.argmax(x, -1), x.shape[-1], dtype=x.dtype)
    return x + top * (1.0 - x.sum(-1, keepdims=True))

  rounded = jnp.clip(fix(jnp.round(raw, decimals)), 0.0, 1.0)
  rounded = rounded / rounded.sum(-1, keepdims=True)
  return fix(jnp.round(rounded, decimals))


def sample(key: jax.Array, shape: tuple[int, ...] = (), n_boxes: int = 3, alpha: float = 1.2,
           gammas: tuple[float, ...] = GAMMAS, round_decimals: int | None = 2) -> Tasks:
  """Tasks of the paper's generator: Dirichlet(alpha) prior, prize from the raw prior.

  The Dirichlet draw is `jaxpapers.envs.sampling.dirichlet` (Marsaglia-Tsang Gamma draws: the
  distribution of `jax.random.dirichlet`, which took seconds to compile on CPU), and the prize
  box and the discount come from one uniform draw (inverse CDF), for the same reason.

  Args:
    key: PRNG key.
    shape: batch shape of the tasks.
    n_boxes: boxes per task.
    alpha: symmetric Dirichlet concentration (the authors' 1.2).
    gammas: the discounts, drawn uniformly.
    round_decimals: decimals of the shown prior (None: shown = raw).
  """
  k_prior, k_rest = jax.random.split(key)
  raw = sampling.dirichlet(k_prior, np.full((n_boxes,), alpha), shape)
  shown = raw if round_decimals is None else round_priors(raw, round_decimals)
  u = jax.random.uniform(k_rest, tuple(shape) + (2,))  # one draw for the truth and the discount
  # inverse CDF: P(truth = i) = raw_i
  truth = jnp.sum(u[..., :1] >= jnp.cumsum(raw, -1)[..., :-1], -1).astype(jnp.int32)
  index = jnp.minimum(jnp.floor(u[..., 1] * len(gammas)), len(gammas) - 1).astype(jnp.int32)
  pick = jax.nn.one_hot(index, len(gammas))
  gamma = (pick * jnp.asarray(gammas, jnp.float32)).sum(-1)  # no gather: batch-sharding friendly
  return Tasks(shown, raw, truth, gamma)


def temper(priors: jax.Array, temperature: float) -> jax.Array:
  """A miscalibrated prior `p ** (1 / T) / sum` (T > 1 flattens, T < 1 sharpens) [..., n]."""
  logits = jnp.log(jnp.maximum(priors, 1e-30)) / temperature
  return jnp.where(priors > 0, jax.nn.softmax(jnp.where(priors > 0, logits, -jnp.inf), -1), 0.0)


def _remaining_sorted(priors: jax.Array, excluded: jax.Array):
  """Boxes sorted by prior, descending, ties in label order, excluded boxes last.

  Returns (order [..., n], sorted priors with excluded boxes as 0 [..., n], count of remaining [...]).
  """
  key = jnp.where(excluded, -1.0, priors)
  order = jnp.argsort(-key, axis=-1, stable=True)
  p_sorted = jnp.where(jnp.take_along_axis(excluded, order, -1), 0.0,
                       jnp.take_along_axis(priors, order, -1))
  return order, p_sorted, (~excluded).sum(-1)


def _suffix_values(p_sorted: jax.Array, gamma: jax.Array, m: jax.Array):
  """The DP over a sorted remaining list: V and q of each suffix [..., n].

  `p_sorted[..., :m]` are the remaining boxes in descending order. `V[i]` is the value of the
  list `i..m-1` (1 for `i >= m - 1`), `q[i]` its top box's conditional probability (uniform over
  the list when its mass is 0, a state the shown prior reaches with probability 0).
  """
  n = p_sorted.shape[-1]
  mass = jnp.flip(jnp.cumsum(jnp.flip(p_sorted, -1), -1), -1)
  idx = jnp.arange(n)
  left = jnp.maximum(m[..., None] - idx, 1).astype(p_sorted.dtype)
  q = jnp.where(mass > 0, p_sorted / jnp.where(mass > 0, mass, 1.0), 1.0 / left)
  gamma = jnp.asarray(gamma, p_sorted.dtype)

  def body(v_next, xs):
    q_i, i = xs
    v = jnp.maximum(q_i, gamma * (q_i + (1 - q_i) * v_next))
    v = jnp.where(i >= m - 1, 1.0, v)
    return v, v

  q_t = jnp.moveaxis(q, -1, 0)
  _, values = jax.lax.scan(body, jnp.ones(q.shape[:-1], q.dtype), (q_t, idx), reverse=True)
  return jnp.moveaxis(values, 0, -1), q


def oracle_value(priors: jax.Array, gamma: jax.Array) -> jax.Array:
  """The optimal expected discounted reward under `priors` [..., n] at discount `gamma` [...]."""
  priors = jnp.asarray(priors)
  _, p_sorted, m = _remaining_sorted(priors, jnp.zeros(priors.shape, bool))
  values, _ = _suffix_values(p_sorted, jnp.broadcast_to(gamma, priors.shape[:-1]), m)
  return values[..., 0]


def oracle_action(state: State) -> jax.Array:
  """The oracle's action in `state` (acting on `state.shown`): GUESS the found box, else the DP."""
  n = state.shown.shape[-1]
  order, p_sorted, m = _remaining_sorted(state.shown, state.verified)
  values, q = _suffix_values(p_sorted, state.gamma, m)
  top = order[..., 0]
  gamma = jnp.asarray(state.gamma, q.dtype)
  v_rest = values[..., 1] if n > 1 else jnp.ones_like(q[..., 0])
  verify = (m > 1) & (gamma * (q[..., 0] + (1 - q[..., 0]) * v_rest) > q[..., 0] + TIE_TOLERANCE)
  action = jnp.where(verify, top, n + top)
  return jnp.where(state.found >= 0, n + state.found, action).astype(jnp.int32)


def reset(task: Tasks) -> State:
  """The start state of one episode (or a batch: fields keep the task's batch shape)."""
  batch = task.truth.shape
  zeros = jnp.zeros(batch, jnp.int32)
  false = jnp.zeros(batch, bool)
  return State(task.shown, task.gamma, task.truth, zeros, zeros,
               jnp.zeros(task.shown.shape, bool), zeros - 1, false, false,
               jnp.zeros(batch, jnp.float32))


def step(state: State, action: jax.Array) -> State:
  """One turn of one episode; a done episode is left unchanged.

  VERIFY i (action i) answers whether the prize is in box i and costs a timestep (a box already
  answered: a wasted timestep); GUESS i (action n + i) ends the episode with `gamma ** t` if right.
  """
  n = state.shown.shape[-1]
  box = action % n
  is_guess = action >= n
  live = ~state.done
  repeat = state.verified[box] | (state.found == box)
  verify = live & ~is_guess
  yes = verify & ~repeat & (box == state.truth)
  no = verify & ~repeat & (box != state.truth)
  guess = live & is_guess
  correct = guess & (box == state.truth)
  reward = jnp.where(correct, jnp.power(state.gamma, state.t.astype(state.gamma.dtype)), 0.0)
  return State(
      shown=state.shown, gamma=state.gamma, truth=state.truth,
      t=state.t + verify.astype(jnp.int32),
      turns=state.turns + live.astype(jnp.int32),
      verified=state.verified | (jax.nn.one_hot(box, n, dtype=bool) & no),
      found=jnp.where(yes, box, state.found),
      done=state.done | guess,
      correct=state.correct | correct,
      reward=jnp.where(guess, reward.astype(jnp.float32), state.reward),
  )


def observe(state: State, with_prior: bool = True) -> jax.Array:
  """Policy features of one episode: [prior (n, with_prior only), gamma, NO mask (n), YES one-hot
  (n), t / n] (the prompt's prior line, discount and feedback; the paper's no-prior agent lacks
  the prior)."""
  n = state.shown.shape[-1]
  parts = [state.shown] if with_prior else []
  parts += [state.gamma[None], state.verified.astype(jnp.float32),
            jax.nn.one_hot(state.found, n), state.t[None].astype(jnp.float32) / n]
  return jnp.concatenate([jnp.asarray(p, jnp.float32).reshape(-1) for p in parts])


def observation_size(n_boxes: int, with_prior: bool) -> int:
  """Length of `observe`'s features."""
  return 2 * n_boxes + 2 + (n_boxes if with_prior else 0)


class Rollout(NamedTuple):
  """A batch of finished episodes.

  Attributes:
    final: the states after the last turn.
    actions: the action of each turn, -1 once done [batch, max_turns].
  """

  final: State
  actions: jax.Array


def rollout(policy: Callable[[State, jax.Array], jax.Array], tasks: Tasks, key: jax.Array,
            max_turns: int | None = None) -> Rollout:
  """Episodes of `policy(state, key) -> action` (one episode; vmapped here) on a batch of tasks.

  Args:
    policy: maps one episode's state and a key to an action.
    tasks: tasks with one batch axis.
    key: PRNG key (split per turn and episode).
    max_turns: the turn limit (default: the number of boxes).
  """
  n = tasks.shown.shape[-1]
  max_turns = n if max_turns is None else max_turns
  batch = tasks.truth.shape[0]
  state = jax.vmap(reset)(tasks)

  def turn(state, k):
    keys = jax.random.split(k, batch)
    action = jax.vmap(policy)(state, keys)
    taken = jnp.where(state.done, -1, action)
    return jax.vmap(step)(state, action), taken

  final, actions = jax.lax.scan(turn, state, jax.random.split(key, max_turns))
  return Rollout(final, actions.T)


def oracle_policy(state: State, key: jax.Array) -> jax.Array:  # pylint: disable=unused-argument
  """`oracle_action` as a `rollout` policy."""
  return oracle_action(state)


def always_guess_policy(state: State, key: jax.Array) -> jax.Array:  # pylint: disable=unused-argument
  """GUESS the box of highest shown prior (first in label order on ties)."""
  return (state.shown.shape[-1] + jnp.argmax(state.shown)).astype(jnp.int32)


def uniform_tasks(tasks: Tasks) -> Tasks:
  """The tasks as a prior-blind agent sees them: the shown prior replaced by the uniform one."""
  return tasks._replace(shown=jnp.full_like(tasks.shown, 1.0 / tasks.shown.shape[-1]))


def match_rate(actions: jax.Array, oracle_actions: jax.Array) -> jax.Array:
  """Fraction of episodes whose action sequence equals the oracle's, action by action [batch, T]."""
  return jnp.mean(jnp.all(actions == oracle_actions, axis=-1))


def first_action_agreement(actions: jax.Array, oracle_actions: jax.Array, n_boxes: int) -> jax.Array:
  """Fraction of episodes whose first action is of the oracle's kind (verify vs guess)."""
  return jnp.mean((actions[:, 0] >= n_boxes) == (oracle_actions[:, 0] >= n_boxes))


# ---- knowledge QA with optional retrieval (the paper's PopQA task, Sec. 4) ----

def qa_oracle_retrieve(confidence: jax.Array, p_retrieval: jax.Array, discount: jax.Array) -> jax.Array:
  """Whether the oracle retrieves once before answering: `confidence <= p_retrieval * discount`.

  The authors' PopQA rule (`conversation_manager_popqa.py`): answering directly is right with
  the calibrated no-context confidence; one retrieval (one timestep, discount `r`) then answering
  is right with the dataset's retrieval accuracy `p_ret` (0.57 in the paper).
  """
  return jnp.asarray(confidence) <= jnp.asarray(p_retrieval) * jnp.asarray(discount)


def qa_expected_reward(confidence: jax.Array, p_retrieval: jax.Array, discount: jax.Array,
                       retrieve: jax.Array) -> jax.Array:
  """Expected discounted reward of answering directly (`retrieve` False) or after one retrieval."""
  return jnp.where(retrieve, jnp.asarray(p_retrieval) * jnp.asarray(discount), confidence)


def qa_discounted_reward(correct: jax.Array, discount: jax.Array, retrievals: jax.Array) -> jax.Array:
  """The PopQA metric: `correct * r ** retrievals` (the authors' accuracy * r^(turns - 1))."""
  return jnp.asarray(correct, jnp.float32) * jnp.power(discount, retrievals)
