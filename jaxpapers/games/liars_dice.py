"""Two-player Liar's Dice with OpenSpiel's rules (liars_dice, numdice 1, reset-face bidding).

Chance rolls one die of `dice_sides` faces for player 0 then player 1 (action f = face f + 1).
Bid action b < 2 * dice_sides means "quantity b // sides + 1 of face b % sides + 1"; each bid
must exceed the last one; action 2 * dice_sides calls "liar". The highest face is wild. The
caller wins (+1) when fewer dice than bid show the face, otherwise the bidder wins.
"""

from __future__ import annotations

from jaxpapers.games import rules


class LiarsDice:
  """liars_dice(numdice=1, dice_sides=S); states are (dice, bids)."""

  name = "liars_dice"
  num_players = 2

  def __init__(self, dice_sides: int = 6, numdice: int = 1, players: int = 2):
    if numdice != 1 or players != 2:
      raise ValueError(f"liars_dice supports numdice=1 and players=2 here (got numdice={numdice}, "
                       f"players={players})")
    if not 2 <= dice_sides <= 10:
      raise ValueError(f"liars_dice dice_sides={dice_sides} is invalid: must be in [2, 10]")
    self.sides = dice_sides
    self.num_bids = 2 * dice_sides
    self.num_distinct_actions = self.num_bids + 1
    self.params = {"numdice": 1, "dice_sides": dice_sides, "players": 2}

  def initial_state(self):
    return ((), ())

  def info(self, state) -> rules.NodeInfo:
    dice, bids = state
    if len(dice) < 2:
      return rules.chance(range(self.sides))
    liar = self.num_bids
    if bids and bids[-1] == liar:
      last = bids[-2]
      quantity, face = last // self.sides + 1, last % self.sides + 1
      count = sum(1 for d in dice if d + 1 == face or d + 1 == self.sides)
      bidder = (len(bids) - 2) % 2
      caller = 1 - bidder
      winner = caller if count < quantity else bidder
      return rules.NodeInfo(rules.TERMINAL, returns=tuple(1.0 if p == winner else -1.0 for p in range(2)))
    start = bids[-1] + 1 if bids else 0
    actions = tuple(range(start, self.num_bids)) + ((liar,) if bids else ())
    return rules.NodeInfo(rules.DECISION, player=len(bids) % 2, actions=actions)

  def child(self, state, action: int):
    dice, bids = state
    if len(dice) < 2:
      return (dice + (action,), bids)
    return (dice, bids + (action,))

  def infoset_key(self, state, player: int):
    dice, bids = state
    return (player, dice[player], bids)
