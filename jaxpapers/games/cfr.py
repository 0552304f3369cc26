"""The CFR family with alternating updates, vectorized over information sets (arXiv 2602.16928).

CFR as in Sec. 2.2 of Li et al. (Eqs. (3)-(6)); the baselines are those of their Sec. 4.2.

`solve(game, algorithm, iterations, eval_every=...)` runs `cfr`, `cfr_plus`, `dcfr`
(alpha 1.5, beta 0, gamma 2 by default), `pcfr_plus` or `vad_cfr` (arXiv 2602.16928, Listing 5)
and reports the exploitability of the average policy. Each iteration traverses the tree once per
player in order (players before i already hold their new policy), sums the counterfactual regret
over the histories of each information set, and updates that player's information sets, as
OpenSpiel's CFRSolver/CFRPlusSolver/DCFRSolver do; their exploitability is reproduced exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.core.errors import UsageError
from jaxpapers.games import passes as passes_lib
from jaxpapers.games import policy as policy_lib
from jaxpapers.games import vad_cfr
from jaxpapers.games.tree import Game

ALGORITHMS = ("cfr", "cfr_plus", "dcfr", "pcfr_plus", "vad_cfr")


class State(NamedTuple):
  """Solver state: cumulative regret R, cumulative policy S, current policy, iteration t,
  and VAD-CFR's volatility EWMA (scalar or per information set)."""

  regret: jax.Array
  cum_policy: jax.Array
  policy: jax.Array
  t: jax.Array
  ewma: jax.Array


@dataclasses.dataclass(frozen=True)
class SolveResult:
  """What `solve` returns.

  Attributes:
    average_policy: [I, A] normalized cumulative policy after the last iteration.
    exploitability: NashConv / N of `average_policy`.
    curve: (iteration, exploitability) pairs at every evaluation point.
    current_policy: [I, A] the last iterate.
    algorithm: the algorithm name.
    iterations: iterations run.
  """

  average_policy: np.ndarray
  exploitability: float
  curve: tuple[tuple[int, float], ...]
  current_policy: np.ndarray
  algorithm: str
  iterations: int

  def at(self, iteration: int) -> float:
    """Exploitability at an evaluated iteration."""
    for it, value in self.curve:
      if it == iteration:
        return value
    raise KeyError(f"iteration {iteration} was not evaluated; curve has {[c[0] for c in self.curve]}")


def row_sum(x: jax.Array) -> jax.Array:
  """[I, A] -> [I, 1], summed left to right over actions (OpenSpiel's order, bit for bit)."""
  total = x[:, :1]
  for a in range(1, x.shape[1]):
    total = total + x[:, a:a + 1]
  return total


def row_divide(x: jax.Array, total: jax.Array) -> jax.Array:
  """x / total with a true division (XLA rewrites division by a broadcast into a reciprocal
  multiply, which rounds differently)."""
  return x / jax.lax.optimization_barrier(jnp.broadcast_to(total, x.shape))


def regret_matching(cum: jax.Array, legal: jax.Array) -> jax.Array:
  """x+ / sum x+, uniform over legal actions where the sum is 0."""
  pos = jnp.where(legal, jnp.maximum(cum, 0.0), 0.0)
  total = row_sum(pos)
  uniform = row_divide(legal.astype(cum.dtype), row_sum(legal.astype(cum.dtype)))
  return jnp.where(total > 0, row_divide(pos, jnp.where(total > 0, total, 1.0)), uniform)


ACCUMULATE_INTO_REGRET = ("cfr", "cfr_plus", "dcfr")


def _update(algorithm: str, params: dict[str, float], state: State, r, own, mask, legal,
            infoset_order_ewma: bool):
  """One player's update of its information sets (`mask`); returns (R, S, sigma, ewma).

  For the algorithms in ACCUMULATE_INTO_REGRET, `r` is already R + r summed in OpenSpiel's
  order (see `passes.Passes.regrets`); otherwise it is the instantaneous regret alone.
  """
  t = state.t.astype(r.dtype)
  big_t = t + 1.0
  cum, s, sigma = state.regret, state.cum_policy, state.policy
  contrib = own[:, None] * sigma
  if algorithm == "cfr":
    cum = r
    s = s + contrib
    sigma = regret_matching(cum, legal)
  elif algorithm == "cfr_plus":
    cum = jnp.maximum(r, 0.0)
    s = s + big_t * contrib
    sigma = regret_matching(cum, legal)
  elif algorithm == "dcfr":
    a, b, g = params["alpha"], params["beta"], params["gamma"]
    s = s + big_t**g * contrib
    cum = r
    cum = cum * jnp.where(cum >= 0, big_t**a / (big_t**a + 1.0), big_t**b / (big_t**b + 1.0))
    sigma = regret_matching(cum, legal)
  elif algorithm == "pcfr_plus":
    s = s + big_t**params["gamma"] * contrib
    cum = jnp.maximum(cum + r, 0.0)
    sigma = regret_matching(cum + r, legal)
  elif algorithm == "vad_cfr":
    m = vad_cfr.magnitude(r)
    if infoset_order_ewma:
      e, ewma = vad_cfr.ewma_global(state.t, m, mask, state.ewma)
    else:
      e = ewma = vad_cfr.ewma_per_infoset(state.t, m, state.ewma)
    v, d_plus, d_minus = vad_cfr.discounts(t, e)
    cum = vad_cfr.accumulate_regret(cum, r, d_plus, d_minus)
    s = s + vad_cfr.average_weight(t, r)[:, None] * contrib
    sigma = vad_cfr.next_policy(t, cum, r, v, d_plus, d_minus, legal)
    keep = lambda new, old: jnp.where(mask, new, old)
    ewma = ewma if infoset_order_ewma else keep(ewma, state.ewma)
    return cum, s, sigma, ewma
  else:
    raise UsageError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
  return cum, s, sigma, state.ewma


def make_iteration(game: Game, algorithm: str, params: dict[str, float], ewma: str = "global"):
  """`state -> state` running one alternating-update iteration (traced; call under jit)."""
  passes = passes_lib.compiled(game)
  legal = passes.arrays.legal
  owner = passes.arrays.infoset_player

  def iteration(state: State) -> State:
    for player in range(game.num_players):
      base = state.regret if algorithm in ACCUMULATE_INTO_REGRET else None
      r, own, _ = passes.regrets(state.policy, player, base)
      mask = owner == player
      cum, s, sigma, e = _update(algorithm, params, state, r, own, mask, legal, ewma == "global")
      rows = mask[:, None]
      state = state._replace(regret=jnp.where(rows, cum, state.regret),
                             cum_policy=jnp.where(rows, s, state.cum_policy),
                             policy=jnp.where(rows, sigma, state.policy), ewma=e)
    return state._replace(t=state.t + 1)

  return iteration


def init_state(game: Game, ewma: str = "global") -> State:
  uniform = jnp.asarray(policy_lib.uniform_policy(game))
  zeros = jnp.zeros_like(uniform)
  e = jnp.zeros(()) if ewma == "global" else jnp.zeros((game.num_infosets,))
  return State(zeros, zeros, uniform, jnp.zeros((), jnp.int32), e)


DEFAULT_PARAMS = {
    "dcfr": {"alpha": 1.5, "beta": 0.0, "gamma": 2.0},
    "pcfr_plus": {"gamma": 2.0},
}


@functools.lru_cache(maxsize=64)
def _compiled_run(game: Game, algorithm: str, ewma: str, params: tuple):
  """jit(state, k -> state after k iterations), shared by every Solver of the same settings."""
  step = make_iteration(game, algorithm, dict(params), ewma)

  def run(state: State, k: jax.Array) -> State:
    return jax.lax.fori_loop(0, k, lambda _, s: step(s), state)

  return jax.jit(run)


class Solver:
  """A jitted CFR-family solver: `run(state, k)` advances k iterations, `evaluate(state)` gives
  (average policy, exploitability)."""

  def __init__(self, game: Game, algorithm: str, ewma: str = "global", **params):
    if algorithm not in ALGORITHMS:
      raise UsageError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    if ewma not in ("global", "per_infoset"):
      raise UsageError(f"ewma={ewma!r} is invalid: must be 'global' or 'per_infoset'")
    unknown = set(params) - set(DEFAULT_PARAMS.get(algorithm, {}))
    if unknown:
      raise UsageError(f"{algorithm} has no parameter(s) {sorted(unknown)}")
    self.game, self.algorithm, self.ewma = game, algorithm, ewma
    self.params = {**DEFAULT_PARAMS.get(algorithm, {}), **params}
    self._run = _compiled_run(game, algorithm, ewma, tuple(sorted(self.params.items())))
    self._passes = passes_lib.compiled(game)

  def init(self) -> State:
    with jax.enable_x64(True):
      return init_state(self.game, self.ewma)

  def run(self, state: State, k: int) -> State:
    with jax.enable_x64(True):
      return self._run(state, jnp.asarray(k, jnp.int32))

  def evaluate(self, state: State) -> tuple[np.ndarray, float]:
    """(average policy, its exploitability); the NashConv pass is compiled once per game."""
    avg = policy_lib.normalize(self.game, np.asarray(state.cum_policy))
    with jax.enable_x64(True):
      nash_conv = float(self._passes.nash_conv(jnp.asarray(avg)))
    return avg, nash_conv / self.game.num_players


def solve(game: Game, algorithm: str, iterations: int, eval_every: int | None = None,
          ewma: str = "global", **params: Any) -> SolveResult:
  """Runs a CFR-family algorithm and evaluates its average policy exactly.

  Args:
    game: from `load_game`.
    algorithm: cfr, cfr_plus, dcfr, pcfr_plus or vad_cfr.
    iterations: number of iterations (one traversal per player each).
    eval_every: evaluate the exploitability every this many iterations (and at the end);
      None evaluates only at the end.
    ewma: VAD-CFR's volatility bookkeeping, "global" (Listing 5) or "per_infoset".
    **params: dcfr's alpha, beta, gamma; pcfr_plus's gamma.

  Returns:
    A `SolveResult` (average policy, exploitability, curve).
  """
  if iterations < 1:
    raise UsageError(f"iterations={iterations} is invalid: must be >= 1")
  if eval_every is not None and eval_every < 1:
    raise UsageError(f"eval_every={eval_every} is invalid: must be >= 1 or None")
  solver = Solver(game, algorithm, ewma, **params)
  state = solver.init()
  points = list(range(eval_every, iterations, eval_every)) if eval_every else []
  points.append(iterations)
  curve, done = [], 0
  for point in points:
    state = solver.run(state, point - done)
    done = point
    avg, expl = solver.evaluate(state)
    curve.append((point, expl))
  return SolveResult(average_policy=avg, exploitability=expl, curve=tuple(curve),
                     current_policy=np.asarray(state.policy), algorithm=algorithm,
                     iterations=iterations)
