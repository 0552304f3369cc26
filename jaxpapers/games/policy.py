"""Policies as [I, A] arrays, exploitability and best responses (arXiv 2602.16928, eq. 2).

`exploitability(game, policy)` follows OpenSpiel: NashConv / N, where NashConv sums every
player's gain from an exact best response against the others' policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.core.errors import UsageError
from jaxpapers.games import passes
from jaxpapers.games.tree import Game


def uniform_policy(game: Game) -> np.ndarray:
  """[I, A] uniform over each information set's legal actions."""
  legal = game.infoset_legal.astype(np.float64)
  return legal / legal.sum(axis=1, keepdims=True)


def normalize(game: Game, weights) -> np.ndarray:
  """Cumulative weights [I, A] -> policy; uniform where an information set has zero weight."""
  weights = np.where(game.infoset_legal, np.asarray(weights, np.float64), 0.0)
  total = weights.sum(axis=1, keepdims=True)
  safe = np.where(total > 0, total, 1.0)
  return np.where(total > 0, weights / safe, uniform_policy(game))


def check_policy(game: Game, policy) -> np.ndarray:
  """`policy` as float64 [I, A]; raises UsageError on a wrong shape."""
  policy = np.asarray(policy, np.float64)
  want = (game.num_infosets, game.max_actions)
  if policy.shape != want:
    raise UsageError(f"policy has shape {policy.shape}; {game.name} needs [num_infosets, "
                     f"max_actions] = {list(want)}")
  return policy


def expected_values(game: Game, policy) -> np.ndarray:
  """[N] expected utility of every player when all follow `policy`."""
  policy = check_policy(game, policy)
  with jax.enable_x64(True):
    return np.asarray(passes.compiled(game).values(jnp.asarray(policy)))


def own_reach(game: Game, policy) -> np.ndarray:
  """[I] probability that each information set's owner plays to reach it under `policy`."""
  policy = check_policy(game, policy)
  with jax.enable_x64(True):
    return np.asarray(passes.compiled(game).own_reach(jnp.asarray(policy)))


def best_response(game: Game, policy, player: int, uniform_ties: bool = False):
  """Exact best response of `player` against the others' part of `policy`.

  Args:
    game: the game.
    policy: [I, A] joint behaviour policy (the player's own rows are ignored).
    player: the responding player.
    uniform_ties: break ties among optimal actions uniformly (PSRO, Sec. 4.3 of arXiv 2602.16928)
      instead of by
      the first action (OpenSpiel's BestResponsePolicy).

  Returns:
    (value of the best response, [I, A] best-response policy, zero on other players' rows).
  """
  policy = check_policy(game, policy)
  if not 0 <= player < game.num_players:
    raise UsageError(f"player={player} is invalid: must be in [0, {game.num_players})")
  with jax.enable_x64(True):
    value, br = passes.compiled(game).best_response(jnp.asarray(policy), int(player), bool(uniform_ties))
    return float(value), np.asarray(br)


def nash_conv(game: Game, policy) -> float:
  """Sum over players of the best-response gain against `policy`."""
  policy = check_policy(game, policy)
  with jax.enable_x64(True):
    return float(passes.compiled(game).nash_conv(jnp.asarray(policy)))


def exploitability(game: Game, policy) -> float:
  """OpenSpiel's exploitability: NashConv / number of players (paper eq. 2)."""
  return nash_conv(game, policy) / game.num_players
