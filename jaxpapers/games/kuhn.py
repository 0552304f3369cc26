"""N-player Kuhn poker with OpenSpiel's rules (kuhn_poker, players 2..10).

Deck of N + 1 cards, one card per player (dealt to players 0, 1, ... by chance), ante 1, actions
0 = pass, 1 = bet (one chip). With no bet the round ends after N passes and the highest card
wins; after the first bet each other player in turn calls (1) or folds (0), and the highest card
among the bettor and callers wins the pot.
"""

from __future__ import annotations

from jaxpapers.games import rules


class KuhnPoker:
  """kuhn_poker(players=N); states are (cards, history)."""

  name = "kuhn_poker"
  num_distinct_actions = 2

  def __init__(self, players: int = 2):
    if not 2 <= players <= 10:
      raise ValueError(f"kuhn_poker players={players} is invalid: must be in [2, 10]")
    self.num_players = players
    self.params = {"players": players}

  def initial_state(self):
    return ((), ())

  def _terminal(self, history) -> bool:
    n = self.num_players
    if 1 in history:
      return len(history) == history.index(1) + n
    return len(history) == n

  def info(self, state) -> rules.NodeInfo:
    cards, history = state
    n = self.num_players
    if len(cards) < n:
      return rules.chance([c for c in range(n + 1) if c not in cards])
    if not self._terminal(history):
      return rules.NodeInfo(rules.DECISION, player=len(history) % n, actions=(0, 1))
    if 1 in history:
      first = history.index(1)
      stakes = [False] * n
      for k in range(first, len(history)):
        if history[k] == 1:
          stakes[k % n] = True
    else:
      stakes = [True] * n
    contrib = [1 + (1 if (1 in history and stakes[p]) else 0) for p in range(n)]
    winner = max((p for p in range(n) if stakes[p]), key=lambda p: cards[p])
    pot = sum(contrib)
    return rules.NodeInfo(rules.TERMINAL,
                          returns=tuple((pot if p == winner else 0) - contrib[p] for p in range(n)))

  def child(self, state, action: int):
    cards, history = state
    if len(cards) < self.num_players:
      return (cards + (action,), history)
    return (cards, history + (action,))

  def infoset_key(self, state, player: int):
    cards, history = state
    return (player, cards[player], history)
