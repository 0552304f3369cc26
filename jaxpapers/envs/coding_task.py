"""coding_task: the library version of Calibrate-Then-Act's coding task with selective testing.

Ding, Tomlin and Durrett, arXiv 2602.16699, Sec. 5 (reading a CSV file whose format is unknown;
the authors' `csv_explore_task_generator.py` and reward `explore_code_test_score.py`). A latent
format has `k` independent categorical attributes (CSV: delimiter of 3 values, quotechar of 2,
skiprows of 2). The agent is given a prior over each attribute (the paper's calibrated estimator;
here the authors' log-linear filename model, `csv_priors`, or Dirichlet draws) and acts:

* TEST j (action j): a unit test reveals attribute j; it multiplies the reward by `d_unit`.
* RUN (action k): runs the code with the current best guess of every attribute (the value found
  by a test or a run, else the most probable value not yet ruled out); it multiplies the reward by
  `d_code = d_unit ** rho`. If every attribute is right the episode ends with reward
  `d_unit ** tests * d_code ** runs` (the authors' formula); otherwise the failure names the
  attributes that were wrong (each wrong guess is ruled out, each right one becomes known) and
  the episode goes on. An episode not solved within `max_turns` (the paper's 8) earns 0.

Because the attributes are independent and every observation is about one attribute, the belief
stays factorized: attribute j is described by `r_j`, how many of its most probable values have
been ruled out (`r_j = arity_j - 1`: known). The oracle is the exact dynamic programme over the
`prod_j arity_j` such states and the turns left (exact for any k; the state space is small for
k <= 4), with ties going to RUN, then to the lowest attribute.

Tasks have a batch shape `[...]`; `shown [..., k, m]` pads attributes of arity < m with zeros.
The arities are a static tuple. Step functions work on one episode (use `jax.vmap`).
"""

from __future__ import annotations

import itertools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

CSV_ATTRIBUTES = ("delimiter", "quotechar", "skiprows")
CSV_ARITIES = (3, 2, 2)
CSV_FEATURES = ("has_eu", "has_tsv", "has_sas", "has_cn")
RHOS = (0.5, 1.0, 2.0, 4.0)  # the authors' cost ratios (`add_du_dc.py --rho 0.5 1 2 4`)
D_UNIT_RANGE = (0.35, 0.95)  # the authors' `add_discount_factor_to_tasks(discount_range=(0.35, 0.95))`
MAX_TURNS = 8
TIE_TOLERANCE = 1e-6

# The authors' `build_model_independent_hard` log-linear filename model: logit of each value =
# bias + sum of feature weights (features: has_eu, has_tsv, has_sas, has_cn), values padded to 3.
_CSV_BIAS = np.array([[1.7, 0.0, 0.5], [0.7, 0.2, 0.0], [1.5, 0.0, 0.0]], np.float32)
_CSV_WEIGHTS = np.zeros((4, 3, 3), np.float32)  # [feature, attribute, value]
_CSV_WEIGHTS[0, 0] = (-1.5, 2.0, -1.0)   # has_eu -> delimiter ",", ";", "\t"
_CSV_WEIGHTS[1, 0] = (0.0, 0.0, 2.0)     # has_tsv -> "\t"
_CSV_WEIGHTS[2, 1] = (-1.0, 1.0, 0.0)    # has_sas -> quotechar '"', "'"
_CSV_WEIGHTS[0, 2] = (-0.7, 0.0, 0.0)    # has_eu -> skiprows 0
_CSV_WEIGHTS[3, 2] = (0.0, 1.0, 0.0)     # has_cn -> skiprows 1


class Tasks(NamedTuple):
  """Coding tasks (any leading batch shape).

  Attributes:
    shown: the prior the agent acts on [..., k, m] (zeros on padded values).
    truth: the true value of each attribute [..., k] (int32).
    d_unit: discount per unit test [...].
    d_code: discount per code run [...] (`d_unit ** rho`).
    rho: the cost ratio [...].
  """

  shown: jax.Array
  truth: jax.Array
  d_unit: jax.Array
  d_code: jax.Array
  rho: jax.Array


class State(NamedTuple):
  """One episode's state.

  Attributes:
    excluded: `r_j`, how many of attribute j's most probable values are ruled out [k].
    known: whether attribute j is known (tested, or confirmed by a run) [k].
    tested: whether attribute j was unit-tested [k].
    tests: unit tests so far.
    runs: code runs so far.
    turns: turns taken.
    done: solved.
    reward: `d_unit ** tests * d_code ** runs` once solved, else 0.
  """

  excluded: jax.Array
  known: jax.Array
  tested: jax.Array
  tests: jax.Array
  runs: jax.Array
  turns: jax.Array
  done: jax.Array
  reward: jax.Array


def _valid(arities: tuple[int, ...], m: int) -> np.ndarray:
  return np.arange(m)[None, :] < np.asarray(arities)[:, None]


def csv_priors(features: jax.Array) -> jax.Array:
  """The authors' filename-model prior over (delimiter, quotechar, skiprows) [..., 3, 3].

  Args:
    features: [..., 4] binary filename features (has_eu, has_tsv, has_sas, has_cn).
  """
  logits = jnp.asarray(_CSV_BIAS) + jnp.einsum("...f,fkv->...kv", jnp.asarray(features, jnp.float32),
                                               jnp.asarray(_CSV_WEIGHTS))
  valid = _valid(CSV_ARITIES, 3)
  return jnp.where(valid, jax.nn.softmax(jnp.where(valid, logits, -jnp.inf), -1), 0.0)


def _costs(key: jax.Array, shape: tuple[int, ...], d_unit_range, rhos):
  k_unit, k_rho = jax.random.split(key)
  d_unit = jnp.round(jax.random.uniform(k_unit, shape, minval=d_unit_range[0],
                                        maxval=d_unit_range[1]), 2)
  pick = jax.nn.one_hot(jax.random.randint(k_rho, shape, 0, len(rhos)), len(rhos))
  rho = (pick * jnp.asarray(rhos, jnp.float32)).sum(-1)  # no gather: batch-sharding friendly
  return d_unit, jnp.power(d_unit, rho), rho


def _draw_truth(key: jax.Array, priors: jax.Array) -> jax.Array:
  return jax.random.categorical(key, jnp.log(jnp.maximum(priors, 0.0))).astype(jnp.int32)


def sample_csv(key: jax.Array, shape: tuple[int, ...] = (), d_unit_range=D_UNIT_RANGE,
               rhos=RHOS) -> Tasks:
  """CSV tasks as the authors generate them: filename features uniform over the 16 combinations,
  the prior of `csv_priors`, the format drawn from it, `d_unit ~ U(0.35, 0.95)` to 2 decimals,
  `rho` uniform on `rhos`."""
  k_feat, k_truth, k_cost = jax.random.split(key, 3)
  features = jax.random.bernoulli(k_feat, 0.5, shape + (len(CSV_FEATURES),))
  priors = csv_priors(features)
  return Tasks(priors, _draw_truth(k_truth, priors), *_costs(k_cost, shape, d_unit_range, rhos))


def sample(key: jax.Array, shape: tuple[int, ...] = (), arities: tuple[int, ...] = CSV_ARITIES,
           alpha: float = 1.0, d_unit_range=D_UNIT_RANGE, rhos=RHOS) -> Tasks:
  """Tasks with a Dirichlet(alpha) prior per attribute and the format drawn from it."""
  k_prior, k_truth, k_cost = jax.random.split(key, 3)
  m = max(arities)
  keys = jax.random.split(k_prior, len(arities))
  rows = [jnp.pad(jax.random.dirichlet(kk, jnp.full((a,), alpha), shape),
                  [(0, 0)] * len(shape) + [(0, m - a)]) for kk, a in zip(keys, arities)]
  priors = jnp.stack(rows, -2)
  return Tasks(priors, _draw_truth(k_truth, priors), *_costs(k_cost, shape, d_unit_range, rhos))


def temper(priors: jax.Array, temperature: float, arities: tuple[int, ...]) -> jax.Array:
  """A miscalibrated prior per attribute, `p ** (1 / T)` renormalized [..., k, m]."""
  valid = _valid(arities, priors.shape[-1]) & (priors > 0)
  logits = jnp.log(jnp.where(valid, priors, 1.0)) / temperature
  return jnp.where(valid, jax.nn.softmax(jnp.where(valid, logits, -jnp.inf), -1), 0.0)


def value_order(priors: jax.Array, arities: tuple[int, ...]) -> jax.Array:
  """Each attribute's values by prior, descending, ties in index order, padding last [..., k, m]."""
  key = jnp.where(_valid(arities, priors.shape[-1]), priors, -1.0)
  return jnp.argsort(-key, axis=-1, stable=True)


def guess_probabilities(priors: jax.Array, arities: tuple[int, ...]) -> jax.Array:
  """`c[..., j, r]`: probability that attribute j's r-th most probable value is right once the r
  above it are ruled out (1 from `r = arity_j - 1` on: known) [..., k, m]."""
  m = priors.shape[-1]
  p_sorted = jnp.take_along_axis(priors, value_order(priors, arities), -1)
  p_sorted = jnp.where(_valid(arities, m), p_sorted, 0.0)
  mass = jnp.flip(jnp.cumsum(jnp.flip(p_sorted, -1), -1), -1)
  left = np.maximum(np.asarray(arities)[:, None] - np.arange(m)[None, :], 1)
  c = jnp.where(mass > 0, p_sorted / jnp.where(mass > 0, mass, 1.0), 1.0 / left)
  return jnp.where(np.arange(m)[None, :] >= np.asarray(arities)[:, None] - 1, 1.0, c)


class _Tables(NamedTuple):
  states: np.ndarray      # [S, k] r vectors
  test_next: np.ndarray   # [k, S]
  outcomes: np.ndarray    # [O, k] 1 = right
  run_next: np.ndarray    # [O, S]


def _tables(arities: tuple[int, ...]) -> _Tables:
  states = np.array(list(itertools.product(*[range(a) for a in arities])), np.int32).reshape(-1, len(arities))
  top = np.asarray(arities) - 1
  strides = np.cumprod((list(arities[1:]) + [1])[::-1])[::-1]
  index = lambda r: (r * strides).sum(-1)  # noqa: E731
  test_next = np.stack([index(np.where(np.arange(len(arities)) == j, top, states))
                        for j in range(len(arities))])
  outcomes = np.array(list(itertools.product((0, 1), repeat=len(arities))), np.int32)
  run_next = np.stack([index(np.where(o.astype(bool), top, np.minimum(states + 1, top)))
                       for o in outcomes])
  return _Tables(states, test_next, outcomes, run_next)


def state_index(excluded: jax.Array, known: jax.Array, arities: tuple[int, ...]) -> jax.Array:
  """The DP state of `(excluded, known)` [...] (known attributes count as `arity - 1` ruled out)."""
  top = jnp.asarray(arities) - 1
  r = jnp.where(known, top, jnp.minimum(excluded, top))
  strides = np.cumprod((list(arities[1:]) + [1])[::-1])[::-1]
  return (r * jnp.asarray(strides)).sum(-1)


def q_tables(tasks: Tasks, arities: tuple[int, ...], max_turns: int = MAX_TURNS) -> jax.Array:
  """Optimal action values `Q[h, ..., S, k + 1]` with `h + 1` turns left (h = 0..max_turns-1).

  Action j < k tests attribute j, action k runs the code; V with no turn left is 0.
  """
  t = _tables(arities)
  k = len(arities)
  c = guess_probabilities(tasks.shown, arities)                      # [..., k, m]
  c_state = c[..., np.arange(k)[None, :], t.states]                 # [..., S, k]
  right = jnp.asarray(t.outcomes, bool)[:, None, :]
  p_out = jnp.prod(jnp.where(right, c_state[..., None, :, :], 1.0 - c_state[..., None, :, :]), -1)
  solved = jnp.all(right[:, 0], -1)                                  # [O]
  d_unit, d_code = tasks.d_unit[..., None], tasks.d_code[..., None]

  def backup(v, _):
    q_test = [d_unit * jnp.take(v, jnp.asarray(t.test_next[j]), axis=-1) for j in range(k)]
    v_next = jnp.take(v, jnp.asarray(t.run_next), axis=-1)           # [..., O, S]
    cont = jnp.where(solved[:, None], 1.0, v_next)
    q_run = d_code * (p_out * cont).sum(-2)
    q = jnp.stack(q_test + [q_run], -1)
    return q.max(-1), q

  v0 = jnp.zeros(tasks.d_unit.shape + (len(t.states),), jnp.float32)
  _, qs = jax.lax.scan(backup, v0, None, length=max_turns)
  return qs


def oracle_value(tasks: Tasks, arities: tuple[int, ...], max_turns: int = MAX_TURNS) -> jax.Array:
  """The optimal expected reward of each task from the start [...]."""
  return q_tables(tasks, arities, max_turns)[-1][..., 0, :].max(-1)


def greedy_action(q: jax.Array) -> jax.Array:
  """RUN (the last action) unless a test beats it by more than the tie tolerance; else the
  first best test."""
  k = q.shape[-1] - 1
  best_test = jnp.argmax(q[..., :k], -1)
  run = q[..., k] >= q[..., :k].max(-1) - TIE_TOLERANCE
  return jnp.where(run, k, best_test).astype(jnp.int32)


def oracle_action(q: jax.Array, state: State, arities: tuple[int, ...], max_turns: int = MAX_TURNS):
  """The oracle's action in one episode's `state`, from its task's `q_tables` ([H, S, k + 1])."""
  h = jnp.clip(max_turns - 1 - state.turns, 0, max_turns - 1)
  return greedy_action(q[h, state_index(state.excluded, state.known, arities)])


def reset(task: Tasks) -> State:
  """The start state of one episode."""
  k = task.truth.shape[-1]
  zeros = jnp.zeros((), jnp.int32)
  return State(jnp.zeros(k, jnp.int32), jnp.zeros(k, bool), jnp.zeros(k, bool), zeros, zeros,
               zeros, jnp.zeros((), bool), jnp.zeros((), jnp.float32))


def step(task: Tasks, state: State, action: jax.Array, arities: tuple[int, ...],
         max_turns: int = MAX_TURNS) -> State:
  """One turn of one episode (a solved episode, or one past `max_turns`, is left unchanged)."""
  k = task.truth.shape[-1]
  live = ~state.done & (state.turns < max_turns)
  is_run = action == k
  test = live & ~is_run
  run = live & is_run
  hot = jax.nn.one_hot(action, k, dtype=bool) & test
  rank = jnp.argmax(value_order(task.shown, arities) == task.truth[:, None], -1)
  right = state.known | (rank == state.excluded)
  solved = run & jnp.all(right)
  tests = state.tests + test.astype(jnp.int32)
  runs = state.runs + run.astype(jnp.int32)
  top = jnp.asarray(arities) - 1
  excluded = jnp.where(run & ~right, jnp.minimum(state.excluded + 1, top), state.excluded)
  known = state.known | hot | (run & (right | (excluded >= top)))
  reward = jnp.power(task.d_unit, tests.astype(jnp.float32)) * jnp.power(task.d_code, runs.astype(jnp.float32))
  return State(excluded, known, state.tested | hot, tests, runs, state.turns + live.astype(jnp.int32),
               state.done | solved, jnp.where(solved, reward, state.reward).astype(jnp.float32))


def observe(task: Tasks, state: State, with_prior: bool = True, max_turns: int = MAX_TURNS) -> jax.Array:
  """Policy features of one episode: [prior (k * m, with_prior only), d_unit, d_code, known (k),
  ruled-out counts (k), turns / max_turns]."""
  parts = [task.shown.reshape(-1)] if with_prior else []
  parts += [task.d_unit[None], task.d_code[None], state.known, state.excluded,
            state.turns[None] / max_turns]
  return jnp.concatenate([jnp.asarray(p, jnp.float32).reshape(-1) for p in parts])


def observation_size(arities: tuple[int, ...], with_prior: bool) -> int:
  """Length of `observe`'s features."""
  k = len(arities)
  return 2 * k + 3 + (k * max(arities) if with_prior else 0)


class Rollout(NamedTuple):
  """Finished episodes: final states and each turn's action (-1 once over) [batch, max_turns]."""

  final: State
  actions: jax.Array


def rollout(policy: Callable[[int, Tasks, State, jax.Array], jax.Array], tasks: Tasks,
            key: jax.Array, arities: tuple[int, ...], max_turns: int = MAX_TURNS) -> Rollout:
  """Episodes of `policy(index, task, state, key) -> action` (one episode) on a batch of tasks.

  `index` is the episode's row in the batch (for policies with per-task tables, e.g. the oracle).
  """
  batch = tasks.truth.shape[0]
  state = jax.vmap(reset)(tasks)
  index = jnp.arange(batch)

  def turn(state, kk):
    keys = jax.random.split(kk, batch)
    action = jax.vmap(policy)(index, tasks, state, keys)
    over = state.done | (state.turns >= max_turns)
    new = jax.vmap(lambda t, s, a: step(t, s, a, arities, max_turns))(tasks, state, action)
    return new, jnp.where(over, -1, action)

  final, actions = jax.lax.scan(turn, state, jax.random.split(key, max_turns))
  return Rollout(final, actions.T)


def oracle_rollout(tasks: Tasks, key: jax.Array, arities: tuple[int, ...],
                   max_turns: int = MAX_TURNS, acting_on: Tasks | None = None) -> Rollout:
  """The oracle's episodes; `acting_on` (default `tasks`) is the prior it believes (e.g. a
  miscalibrated or population prior), while the truth and costs are `tasks`'."""
  belief = tasks if acting_on is None else acting_on
  q = jnp.moveaxis(q_tables(belief, arities, max_turns), 0, 1)       # [batch, H, S, k + 1]

  def policy(i, task, state, k):  # pylint: disable=unused-argument
    return oracle_action(q[i], state, arities, max_turns)

  return rollout(policy, belief._replace(truth=tasks.truth), key, arities, max_turns)


def attribute_match(tested: jax.Array, oracle_tested: jax.Array) -> jax.Array:
  """The authors' per-attribute match score: mean over attributes of (tested == oracle tested),
  averaged over episodes (each episode scores 0, 1/k, ..., 1)."""
  return jnp.mean(tested == oracle_tested)


def sequence_match(actions: jax.Array, oracle_actions: jax.Array) -> jax.Array:
  """Fraction of episodes whose action sequence equals the oracle's."""
  return jnp.mean(jnp.all(actions == oracle_actions, -1))
