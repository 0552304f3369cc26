"""The rules interface every native game implements (host side, pure Python).

A game is walked once on the host by `tree.build_tree`; states are immutable tuples, actions
use OpenSpiel's action ids so trees can be compared node by node with `pyspiel`
(arXiv 2602.16928 evaluates on OpenSpiel's games; its Sec. 4.1 names them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Hashable, Protocol, Sequence

CHANCE = "chance"
DECISION = "decision"
TERMINAL = "terminal"


@dataclasses.dataclass(frozen=True)
class NodeInfo:
  """What the tree builder needs to know about one state.

  Attributes:
    kind: CHANCE, DECISION or TERMINAL.
    player: the acting player (DECISION only).
    actions: legal action ids (DECISION) or chance outcome ids (CHANCE), in OpenSpiel's order.
    probs: chance probabilities aligned with `actions` (CHANCE only).
    returns: one utility per player (TERMINAL only).
  """

  kind: str
  player: int = -1
  actions: Sequence[int] = ()
  probs: Sequence[float] = ()
  returns: Sequence[float] = ()


class Rules(Protocol):
  """A finite extensive-form game with perfect recall."""

  name: str
  num_players: int
  num_distinct_actions: int
  params: dict[str, Any]

  def initial_state(self) -> Hashable: ...

  def info(self, state: Hashable) -> NodeInfo: ...

  def child(self, state: Hashable, action: int) -> Hashable: ...

  def infoset_key(self, state: Hashable, player: int) -> Hashable:
    """Equal for two states exactly when `player` cannot tell them apart."""
    ...


def chance(outcomes: Sequence[int]) -> NodeInfo:
  """A uniform chance node over `outcomes`."""
  p = 1.0 / len(outcomes)
  return NodeInfo(CHANCE, actions=tuple(outcomes), probs=(p,) * len(outcomes))
