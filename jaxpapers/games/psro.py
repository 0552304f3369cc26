"""PSRO with exact best responses and exact meta-games (arXiv 2602.16928).

The PSRO loop of Sec. 2.3 of Li et al., with the exact oracle and meta-game of their Sec. 4.3.

Each iteration: the training meta-solver gives a mixture per player over its population; every
player gets an exact best response (uniform tie-breaking) to the opponents' aggregated mixture;
the new policies join the populations; the meta-game is extended with exact expected values; the
evaluation meta-solver's mixture is aggregated into one behaviour policy whose exploitability
(NashConv / N) is reported.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.games import meta_solvers
from jaxpapers.games import passes as passes_lib
from jaxpapers.games import policy as policy_lib
from jaxpapers.games.tree import Game

MetaSolver = Callable[[Sequence[np.ndarray]], list]


@dataclasses.dataclass(frozen=True)
class PsroResult:
  """curve: (iteration, exploitability of the eval mixture); populations: per player, [I, A]
  policies (only the player's own rows matter); payoffs: the final meta-game;
  eval_mixtures: the last evaluation mixtures."""

  curve: tuple[tuple[int, float], ...]
  populations: tuple[tuple[np.ndarray, ...], ...]
  payoffs: tuple[np.ndarray, ...]
  eval_mixtures: tuple[np.ndarray, ...]

  def at(self, iteration: int) -> float:
    return dict(self.curve)[iteration]


class _Oracle:
  """Jitted exact evaluations of one game."""

  def __init__(self, game: Game):
    self.game = game
    self.passes = passes_lib.compiled(game)
    self.owner = game.infoset_player

  def joint(self, members: Sequence[np.ndarray]) -> np.ndarray:
    """[I, A] joint policy taking each information set's row from its owner's member."""
    return np.stack(members)[self.owner, np.arange(len(self.owner))]

  def values(self, policy: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
      return np.asarray(self.passes.values(jnp.asarray(policy)))

  def own_reach(self, policy: np.ndarray) -> np.ndarray:
    with jax.enable_x64(True):
      return np.asarray(self.passes.own_reach(jnp.asarray(policy)))


def aggregate(game: Game, populations, mixtures, own_reaches) -> np.ndarray:
  """Behaviour policy realization-equivalent to each player's mixture over its population:
  pi(I) = sum_k w_k x_k(I) pi_k(I) / sum_k w_k x_k(I), x_k = own reach of member k."""
  out = policy_lib.uniform_policy(game)
  for player, (members, weights, reaches) in enumerate(zip(populations, mixtures, own_reaches)):
    rows = game.infoset_player == player
    w = np.asarray(weights)[:, None] * np.stack(reaches)[:, rows]          # [K, I_p]
    num = np.einsum("ki,kia->ia", w, np.stack(members)[:, rows])
    den = w.sum(axis=0)[:, None]
    out[rows] = np.where(den > 0, num / np.where(den > 0, den, 1.0), out[rows])
  return out


def psro(game: Game, train_solver: MetaSolver | str, eval_solver: MetaSolver | str, iterations: int,
         uniform_ties: bool = True, initial: np.ndarray | None = None) -> PsroResult:
  """Runs PSRO for `iterations` iterations.

  Args:
    game: from `load_game`.
    train_solver: meta-solver (name for `meta_solvers.make`, or a callable) picking the mixtures
      the best responses answer.
    eval_solver: meta-solver whose mixture is evaluated.
    iterations: PSRO iterations (one best response per player each).
    uniform_ties: best responses randomize uniformly among optimal actions (Sec. 4.3 of
      arXiv 2602.16928).
    initial: [I, A] initial policy of every player (uniform if None).

  Returns:
    A `PsroResult`.
  """
  train = meta_solvers.make(train_solver) if isinstance(train_solver, str) else train_solver
  evaluate = meta_solvers.make(eval_solver) if isinstance(eval_solver, str) else eval_solver
  n = game.num_players
  oracle = _Oracle(game)
  start = policy_lib.uniform_policy(game) if initial is None else np.asarray(initial, np.float64)
  pops = [[start] for _ in range(n)]
  reaches = [[oracle.own_reach(start)] for _ in range(n)]
  table = {}

  def fill():
    shape = tuple(len(p) for p in pops)
    for index in itertools.product(*(range(k) for k in shape)):
      if index not in table:
        table[index] = oracle.values(oracle.joint([pops[p][k] for p, k in enumerate(index)]))
    return [np.array([table[i][p] for i in itertools.product(*(range(k) for k in shape))]).reshape(shape)
            for p in range(n)]

  payoffs = fill()
  curve = []
  mixtures = [np.ones(1) for _ in range(n)]
  for it in range(1, iterations + 1):
    sigma = train(payoffs)
    behaviour = aggregate(game, pops, sigma, reaches)
    new = []
    for player in range(n):
      _, br = policy_lib.best_response(game, behaviour, player, uniform_ties)
      member = np.where((game.infoset_player == player)[:, None], br, start)
      new.append(member)
    for player in range(n):
      pops[player].append(new[player])
      reaches[player].append(oracle.own_reach(new[player]))
    payoffs = fill()
    mixtures = evaluate(payoffs)
    curve.append((it, policy_lib.exploitability(game, aggregate(game, pops, mixtures, reaches))))
  return PsroResult(curve=tuple(curve), populations=tuple(tuple(p) for p in pops),
                    payoffs=tuple(payoffs), eval_mixtures=tuple(np.asarray(m) for m in mixtures))
