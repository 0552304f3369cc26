"""N-player Leduc poker with OpenSpiel's rules (leduc_poker, players 2..10).

Deck of 2 (N + 1) cards (rank = card // 2, two suits). Ante 1; chance deals one private card to
players 0, 1, ... Round 1 (raise 2) and round 2 (raise 4, after the public card) allow at most two
raises each; actions 0 = fold (only when facing a bet), 1 = call/check, 2 = raise. A round ends
when every remaining player has checked, or all but the last raiser have called. At showdown a
private card pairing the public card wins, else the higher rank; ties split the pot.
"""

from __future__ import annotations

from typing import NamedTuple

from jaxpapers.games import rules

FOLD, CALL, RAISE = 0, 1, 2


class _State(NamedTuple):
  cards: tuple            # private cards dealt so far, by player
  public: int             # -1 until dealt
  round: int              # 1 or 2
  history: tuple          # (round-1 actions, round-2 actions)
  folded: tuple
  ante: tuple
  stakes: int
  raises: int
  calls: int
  cur: int                # acting player; -1 at chance; -2 when terminal


class LeducPoker:
  """leduc_poker(players=N)."""

  name = "leduc_poker"
  num_distinct_actions = 3

  def __init__(self, players: int = 2):
    if not 2 <= players <= 10:
      raise ValueError(f"leduc_poker players={players} is invalid: must be in [2, 10]")
    self.num_players = players
    self.num_cards = 2 * (players + 1)
    self.params = {"players": players}

  def initial_state(self):
    n = self.num_players
    return _State((), -1, 1, ((), ()), (False,) * n, (1,) * n, 1, 0, 0, -1)

  def _remaining(self, s: _State) -> int:
    return sum(1 for f in s.folded if not f)

  def _ready(self, s: _State) -> bool:
    remaining = self._remaining(s)
    return (s.raises == 0 and s.calls == remaining) or (s.raises > 0 and s.calls == remaining - 1)

  def _next(self, s: _State, after: int) -> int:
    n = self.num_players
    for k in range(1, n + 1):
      p = (after + k) % n
      if not s.folded[p]:
        return p
    raise AssertionError("no player left")

  def info(self, s: _State) -> rules.NodeInfo:
    if s.cur == -1:
      used = set(s.cards)
      return rules.chance([c for c in range(self.num_cards) if c not in used])
    if s.cur >= 0:
      actions = ((FOLD,) if s.stakes > s.ante[s.cur] else ()) + (CALL,)
      actions += (RAISE,) if s.raises < 2 else ()
      return rules.NodeInfo(rules.DECISION, player=s.cur, actions=actions)
    n = self.num_players
    alive = [p for p in range(n) if not s.folded[p]]
    if len(alive) == 1:
      winners = alive
    else:
      def strength(p):
        rank = s.cards[p] // 2
        return (1 if rank == s.public // 2 else 0, rank)
      best = max(strength(p) for p in alive)
      winners = [p for p in alive if strength(p) == best]
    pot = sum(s.ante)
    share = pot / len(winners)
    return rules.NodeInfo(rules.TERMINAL, returns=tuple(
        (share if p in winners else 0.0) - s.ante[p] for p in range(n)))

  def child(self, s: _State, action: int) -> _State:
    n = self.num_players
    if s.cur == -1:
      if len(s.cards) < n:
        cards = s.cards + (action,)
        return s._replace(cards=cards, cur=0 if len(cards) == n else -1)
      s = s._replace(public=action, round=2, raises=0, calls=0)
      return s._replace(cur=self._next(s, -1))
    history = list(s.history)
    history[s.round - 1] = history[s.round - 1] + (action,)
    s = s._replace(history=tuple(history))
    if action == RAISE:
      stakes = s.stakes + (2 if s.round == 1 else 4)
      ante = s.ante[:s.cur] + (stakes,) + s.ante[s.cur + 1:]
      s = s._replace(stakes=stakes, ante=ante, raises=s.raises + 1, calls=0)
      return s._replace(cur=self._next(s, s.cur))
    if action == FOLD:
      s = s._replace(folded=s.folded[:s.cur] + (True,) + s.folded[s.cur + 1:])
      if self._remaining(s) == 1:
        return s._replace(cur=-2)
    else:
      ante = s.ante[:s.cur] + (s.stakes,) + s.ante[s.cur + 1:]
      s = s._replace(ante=ante, calls=s.calls + 1)
    if self._ready(s):
      return s._replace(cur=-1 if s.round == 1 else -2)
    return s._replace(cur=self._next(s, s.cur))

  def infoset_key(self, s: _State, player: int):
    return (player, s.cards[player], s.public, s.history)
