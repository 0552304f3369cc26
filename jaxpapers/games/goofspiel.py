"""Two-player Goofspiel as OpenSpiel's turn_based_simultaneous_game(game=goofspiel(...)).

Point cards are revealed in descending order (points_order=descending, no chance). Each round
player 0 then player 1 (who does not see player 0's card) play a card from their hands (action
a = card a + 1); the higher card wins the point card, ties discard it. With imp_info=True a
player observes only its own cards and who won each round. When one card is left in each hand
it is played automatically. Returns are win_loss: +1 / -1 / 0 by total points.
"""

from __future__ import annotations

from jaxpapers.games import rules


class TurnBasedGoofspiel:
  """goofspiel(num_cards=K, imp_info=True, points_order=descending) behind the turn-based wrapper.

  States are (moves0, moves1): the cards each player has played so far.
  """

  name = "goofspiel"
  num_players = 2

  def __init__(self, num_cards: int = 4, imp_info: bool = True, points_order: str = "descending",
               returns_type: str = "win_loss", players: int = 2):
    if not 2 <= num_cards <= 8:
      raise ValueError(f"goofspiel num_cards={num_cards} is invalid: must be in [2, 8]")
    if (imp_info, points_order, returns_type, players) != (True, "descending", "win_loss", 2):
      raise ValueError("goofspiel supports imp_info=True, points_order='descending', "
                       "returns_type='win_loss', players=2 here")
    self.num_cards = num_cards
    self.num_distinct_actions = num_cards
    self.params = {"num_cards": num_cards, "imp_info": True, "points_order": "descending",
                   "returns_type": "win_loss", "players": 2}

  def initial_state(self):
    return ((), ())

  def _points(self, moves0, moves1) -> tuple[int, int]:
    points = [0, 0]
    for r, (a, b) in enumerate(zip(moves0, moves1)):
      if a != b:
        points[0 if a > b else 1] += self.num_cards - r
    return points[0], points[1]

  def info(self, state) -> rules.NodeInfo:
    moves0, moves1 = state
    k = self.num_cards
    if len(moves1) == k - 1 and len(moves0) == k - 1:
      last0 = next(c for c in range(k) if c not in moves0)
      last1 = next(c for c in range(k) if c not in moves1)
      p0, p1 = self._points(moves0 + (last0,), moves1 + (last1,))
      sign = (p0 > p1) - (p0 < p1)
      return rules.NodeInfo(rules.TERMINAL, returns=(float(sign), float(-sign)))
    player = 0 if len(moves0) == len(moves1) else 1
    own = moves0 if player == 0 else moves1
    return rules.NodeInfo(rules.DECISION, player=player,
                          actions=tuple(c for c in range(k) if c not in own))

  def child(self, state, action: int):
    moves0, moves1 = state
    if len(moves0) == len(moves1):
      return (moves0 + (action,), moves1)
    return (moves0, moves1 + (action,))

  def infoset_key(self, state, player: int):
    moves0, moves1 = state
    done = min(len(moves0), len(moves1))
    wins = tuple((a > b) - (a < b) for a, b in zip(moves0[:done], moves1[:done]))
    own = moves0 if player == 0 else moves1
    return (player, own, wins)
