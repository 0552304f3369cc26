"""Game trees built once on the host and flattened to level-ordered arrays.

Our implementation of the exact tree traversals behind the CFR and PSRO of arXiv 2602.16928.

`load_game(name, **params)` takes OpenSpiel's game and parameter names and returns a `Game`:
every history of the game tree as one row (parent, action slot, acting player, information set,
chance probability, terminal utilities), rows sorted by depth so that each tree level is a
contiguous slice. Information sets are numbered in depth-first first-visit order (the call
order of the CFR framework of arXiv 2602.16928, Sec. 3.2, Listing 1). The jitted passes of `passes.py`
walk these slices level by level.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Hashable

import numpy as np

from jaxpapers.core.errors import UsageError
from jaxpapers.games import rules as rules_lib
from jaxpapers.games.goofspiel import TurnBasedGoofspiel
from jaxpapers.games.kuhn import KuhnPoker
from jaxpapers.games.leduc import LeducPoker
from jaxpapers.games.liars_dice import LiarsDice

DECISION, CHANCE, TERMINAL = 0, 1, 2

GAMES = {
    "kuhn_poker": KuhnPoker,
    "leduc_poker": LeducPoker,
    "liars_dice": LiarsDice,
    "goofspiel": TurnBasedGoofspiel,
}


@dataclasses.dataclass(eq=False)
class Game:
  """A flattened game tree (host numpy arrays; `passes.compiled(game)` holds the device side).

  Attributes:
    name: OpenSpiel game name.
    params: the game's parameters (OpenSpiel names).
    num_players: N.
    max_actions: A, the most legal actions of any information set (policy arrays are [I, A]).
    infoset_player: [I] owner of each information set.
    infoset_legal: [I, A] True on the legal action slots.
    infoset_actions: [I, A] OpenSpiel action id of each slot (-1 where illegal).
    infoset_keys: the host key of each information set (see each rules module).
    infoset_rep: [I] one history of each information set (its first in DFS order).
    infoset_depth: [I] tree depth of the information set's histories.
    node_parent: [M] parent row (-1 for the root).
    node_slot: [M] action slot (decision parent) or outcome index (chance parent) leading here.
    node_kind: [M] DECISION, CHANCE or TERMINAL.
    node_player: [M] acting player (N at chance nodes, -1 at terminals).
    node_infoset: [M] information set of decision nodes (-1 elsewhere).
    node_chance_prob: [M] probability of the chance outcome leading here (0 if the parent is not
      a chance node).
    node_returns: [M, N] utilities at terminals (0 elsewhere).
    level_offsets: rows of depth d are level_offsets[d]:level_offsets[d + 1].
  """

  name: str
  params: dict[str, Any]
  num_players: int
  max_actions: int
  infoset_player: np.ndarray
  infoset_legal: np.ndarray
  infoset_actions: np.ndarray
  infoset_keys: list[Hashable]
  infoset_rep: np.ndarray
  infoset_depth: np.ndarray
  node_parent: np.ndarray
  node_slot: np.ndarray
  node_kind: np.ndarray
  node_player: np.ndarray
  node_infoset: np.ndarray
  node_chance_prob: np.ndarray
  node_returns: np.ndarray
  level_offsets: tuple[int, ...]

  @property
  def num_infosets(self) -> int:
    return len(self.infoset_player)

  @property
  def num_nodes(self) -> int:
    return len(self.node_parent)

  @property
  def openspiel_string(self) -> str:
    """The equivalent `pyspiel.load_game` string."""
    if self.name == "goofspiel":
      return (f"turn_based_simultaneous_game(game=goofspiel(num_cards={self.params['num_cards']},"
              "imp_info=True,points_order=descending))")
    if self.name == "liars_dice":
      return f"liars_dice(numdice=1,dice_sides={self.params['dice_sides']})"
    return f"{self.name}(players={self.num_players})"

  def __repr__(self) -> str:
    params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
    return (f"Game({self.name}({params}): {self.num_infosets} infosets, {self.num_nodes} histories, "
            f"{len(self.level_offsets) - 1} levels)")


def build_tree(rules: rules_lib.Rules) -> Game:
  """Walks every history of `rules` once (depth first) and flattens the tree.

  Raises:
    ValueError: the game violates perfect recall in a way the passes rely on (histories of one
      information set at different depths or with different legal actions).
  """
  n = rules.num_players
  parent, slot, kind, player, infoset, prob, depth = [], [], [], [], [], [], []
  returns = {}
  keys: dict[Hashable, int] = {}
  inf_player, inf_actions, inf_rep, inf_depth = [], [], [], []
  stack = [(rules.initial_state(), -1, 0, 0.0, 0)]
  while stack:
    state, par, sl, pr, d = stack.pop()
    row = len(parent)
    info = rules.info(state)
    parent.append(par), slot.append(sl), prob.append(pr), depth.append(d)
    if info.kind == rules_lib.TERMINAL:
      kind.append(TERMINAL), player.append(-1), infoset.append(-1)
      returns[row] = info.returns
      continue
    if info.kind == rules_lib.CHANCE:
      kind.append(CHANCE), player.append(n), infoset.append(-1)
      children = [(rules.child(state, a), row, k, p, d + 1)
                  for k, (a, p) in enumerate(zip(info.actions, info.probs))]
    else:
      key = rules.infoset_key(state, info.player)
      if key not in keys:
        keys[key] = len(inf_player)
        inf_player.append(info.player), inf_actions.append(tuple(info.actions))
        inf_rep.append(row), inf_depth.append(d)
      i = keys[key]
      if inf_actions[i] != tuple(info.actions) or inf_depth[i] != d:
        raise ValueError(f"{rules.name}: information set {key!r} has histories with different "
                         "legal actions or depths")
      kind.append(DECISION), player.append(info.player), infoset.append(i)
      children = [(rules.child(state, a), row, k, 0.0, d + 1) for k, a in enumerate(info.actions)]
    stack.extend(reversed(children))

  depth = np.asarray(depth)
  order = np.argsort(depth, kind="stable")      # level order; DFS order within a level
  new_index = np.empty_like(order)
  new_index[order] = np.arange(len(order))
  parent = np.asarray(parent)[order]
  parent = np.where(parent >= 0, new_index[np.maximum(parent, 0)], -1)
  node_returns = np.zeros((len(order), n))
  for row, ret in returns.items():
    node_returns[new_index[row]] = ret
  max_actions = max(len(a) for a in inf_actions)
  legal = np.zeros((len(inf_actions), max_actions), bool)
  action_ids = np.full((len(inf_actions), max_actions), -1, np.int64)
  for i, acts in enumerate(inf_actions):
    legal[i, :len(acts)] = True
    action_ids[i, :len(acts)] = acts
  counts = np.bincount(depth)
  return Game(
      name=rules.name, params=dict(rules.params), num_players=n, max_actions=max_actions,
      infoset_player=np.asarray(inf_player, np.int32), infoset_legal=legal,
      infoset_actions=action_ids, infoset_keys=list(keys), infoset_rep=new_index[np.asarray(inf_rep)],
      infoset_depth=np.asarray(inf_depth, np.int32),
      node_parent=parent.astype(np.int64), node_slot=np.asarray(slot, np.int64)[order],
      node_kind=np.asarray(kind, np.int32)[order], node_player=np.asarray(player, np.int32)[order],
      node_infoset=np.asarray(infoset, np.int64)[order],
      node_chance_prob=np.asarray(prob, np.float64)[order], node_returns=node_returns,
      level_offsets=tuple(int(x) for x in np.concatenate([[0], np.cumsum(counts)])))


def make_rules(name: str, **params) -> rules_lib.Rules:
  """The native rules object of an OpenSpiel game name (see `load_game`)."""
  if name == "turn_based_simultaneous_game":
    inner = params.pop("game", None)
    if not isinstance(inner, dict) or inner.get("name") != "goofspiel":
      raise UsageError("turn_based_simultaneous_game supports game=goofspiel(...) only; pass "
                       "load_game('goofspiel', num_cards=K)")
    params = {k: v for k, v in inner.items() if k != "name"}
    name = "goofspiel"
  if name not in GAMES:
    raise UsageError(f"unknown game {name!r}; choose one of {', '.join(GAMES)}")
  try:
    return GAMES[name](**params)
  except TypeError as e:
    raise UsageError(f"bad parameters for {name}: {e}") from None
  except ValueError as e:
    raise UsageError(str(e)) from None


@functools.lru_cache(maxsize=16)
def _load(name: str, frozen: tuple) -> Game:
  return build_tree(make_rules(name, **dict(frozen)))


def load_game(name: str, **params) -> Game:
  """A game by OpenSpiel name and parameters, e.g. `load_game("kuhn_poker", players=3)`.

  Supported: kuhn_poker(players), leduc_poker(players), liars_dice(numdice=1, dice_sides),
  goofspiel(num_cards) (always behind the turn-based wrapper, imp_info=True, descending points).
  Trees are cached per (name, params).

  Raises:
    UsageError: unknown game or parameter.
  """
  frozen = tuple(sorted((k, v) for k, v in params.items() if not isinstance(v, dict)))
  if len(frozen) != len(params):
    return build_tree(make_rules(name, **params))
  return _load(name, frozen)
