"""Jitted level-by-level tree passes: reach down, values up, regrets and best responses.

Policies are [I, A] arrays (rows = information sets of `tree.Game`, zero on illegal slots).
Each pass walks the level slices of the flattened tree with a Python loop unrolled at trace
time; per-level sums over children use `jax.ops.segment_sum` keyed by the parent row, and
per-information-set sums (counterfactual regrets, eq. 3-4 of arXiv 2602.16928, and best-response
action values) use one `segment_sum` keyed by (information set, action slot). All arithmetic is
float64 (call inside `jax.enable_x64(True)`; the public functions of this package do).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.games.tree import CHANCE, DECISION, Game

TIE_TOLERANCE = 1e-9


class Arrays(NamedTuple):
  """Device copies of the tree arrays the passes read."""

  parent: jax.Array          # [M] parent row (0 for the root)
  edge_flat: jax.Array       # [M] infoset(parent) * A + slot, 0 when the parent is not a decision
  parent_player: jax.Array   # [M] acting player at the parent (N: chance, -1: root)
  chance_prob: jax.Array     # [M]
  returns: jax.Array         # [M, N]
  legal: jax.Array           # [I, A] bool
  infoset_player: jax.Array  # [I]
  infoset_rep: jax.Array     # [I]
  infoset_depth: jax.Array   # [I]


class Passes:
  """The jitted passes of one game (build with `compiled(game)`)."""

  def __init__(self, game: Game):
    self.game = game
    self.n = game.num_players
    self.a = game.max_actions
    self.i = game.num_infosets
    self.off = game.level_offsets
    parent = np.maximum(game.node_parent, 0)
    parent_kind = np.where(game.node_parent >= 0, game.node_kind[parent], -1)
    parent_player = np.where(parent_kind == DECISION, game.node_player[parent],
                             np.where(parent_kind == CHANCE, self.n, -1))
    edge_flat = np.where(parent_kind == DECISION, game.node_infoset[parent] * self.a + game.node_slot, 0)
    with jax.enable_x64(True):
      self.arrays = Arrays(
          parent=jnp.asarray(parent), edge_flat=jnp.asarray(edge_flat),
          parent_player=jnp.asarray(parent_player, jnp.int32),
          chance_prob=jnp.asarray(game.node_chance_prob, jnp.float64),
          returns=jnp.asarray(game.node_returns, jnp.float64), legal=jnp.asarray(game.infoset_legal),
          infoset_player=jnp.asarray(game.infoset_player), infoset_rep=jnp.asarray(game.infoset_rep),
          infoset_depth=jnp.asarray(game.infoset_depth))
    self.values = jax.jit(self._values)
    self.best_response = jax.jit(self._best_response, static_argnums=(1, 2))
    self.nash_conv = jax.jit(self._nash_conv)
    self.own_reach = jax.jit(self._own_reach)

  # -- building blocks (traced inside the callers' jit) ---------------------------------------

  def level(self, d: int) -> slice:
    return slice(self.off[d], self.off[d + 1])

  @property
  def num_levels(self) -> int:
    return len(self.off) - 1

  def edge_probs(self, policy: jax.Array) -> jax.Array:
    """[M] probability of the edge into each row (chance or policy; 1 at the root)."""
    x = self.arrays
    from_policy = policy.reshape(-1)[x.edge_flat]
    probs = jnp.where(x.parent_player == self.n, x.chance_prob, from_policy)
    return jnp.where(x.parent_player < 0, 1.0, probs)

  def reach(self, probs: jax.Array) -> jax.Array:
    """[M, N + 1] reach probability of each row split by contributor (players, then chance)."""
    x = self.arrays
    cols = jnp.arange(self.n + 1)
    factor = jnp.where(x.parent_player[:, None] == cols, probs[:, None], 1.0)
    levels = [jnp.ones((1, self.n + 1), probs.dtype)]
    for d in range(1, self.num_levels):
      sl = self.level(d)
      levels.append(levels[-1][x.parent[sl] - self.off[d - 1]] * factor[sl])
    return jnp.concatenate(levels)

  def node_values(self, probs: jax.Array) -> jax.Array:
    """[M, N] expected utility of each row's subtree under the edge probabilities."""
    x = self.arrays
    levels = [None] * self.num_levels
    below = None
    for d in reversed(range(self.num_levels)):
      sl = self.level(d)
      v = x.returns[sl]
      if below is not None:
        kids = self.level(d + 1)
        v = v + jax.ops.segment_sum(probs[kids, None] * below, x.parent[kids] - self.off[d],
                                    num_segments=sl.stop - sl.start)
      levels[d] = below = v
    return jnp.concatenate(levels)

  def others_reach(self, reach: jax.Array, player: int) -> jax.Array:
    """[M] reach of everyone but `player` (chance included): the counterfactual weight.

    Multiplied in OpenSpiel's order, prod(reach[:player]) * prod(reach[player + 1:]), so that
    CFR runs reproduce OpenSpiel bit for bit.
    """
    def product(columns):
      out = 1.0
      for column in columns:
        out = column if isinstance(out, float) else out * column
      return out

    cols = [reach[:, j] for j in range(self.n + 1)]
    return product(cols[:player]) * product(cols[player + 1:])

  def regrets(self, policy: jax.Array, player: int, base: jax.Array | None = None):
    """Instantaneous counterfactual regrets of `player` (Eq. (4)) and own reach per infoset.

    Args:
      policy: [I, A] current joint policy.
      player: the updating player (static).
      base: optional [I, A] array the per-history regrets are added into one history at a time
        in depth-first order (OpenSpiel's accumulation order); zeros if None.

    Returns:
      (base + r [I, A], r zero outside `player`'s information sets; own reach [I] of each
      information set for its owner; root values [N]).
    """
    x = self.arrays
    probs = self.edge_probs(policy)
    reach = self.reach(probs)
    values = self.node_values(probs)
    cf = self.others_reach(reach, player)
    mine = x.parent_player == player
    gain = values[:, player] - values[x.parent, player]
    base = jnp.zeros((self.i, self.a), policy.dtype) if base is None else base
    r = base.reshape(-1).at[x.edge_flat].add(jnp.where(mine, cf[x.parent] * gain, 0.0))
    own = reach[x.infoset_rep, x.infoset_player]
    return r.reshape(self.i, self.a), own, values[0]

  # -- public passes -------------------------------------------------------------------------

  def _own_reach(self, policy: jax.Array) -> jax.Array:
    """[I] each information set's owner's own reach probability under `policy`."""
    reach = self.reach(self.edge_probs(policy))
    return reach[self.arrays.infoset_rep, self.arrays.infoset_player]

  def _values(self, policy: jax.Array) -> jax.Array:
    """[N] expected utilities at the root."""
    return self.node_values(self.edge_probs(policy))[0]

  def _best_response(self, policy: jax.Array, player: int, uniform_ties: bool):
    """Exact best response of `player` to `policy` (bottom-up over levels).

    At each information set the action values Q(I, a) = sum_{h in I} pi_{-i}(h) v(h.a) are
    compared; ties within TIE_TOLERANCE are broken uniformly (PSRO, Sec. 4.3 of arXiv 2602.16928)
    or by the first action.

    Returns:
      (best-response value at the root, best-response policy [I, A] on `player`'s information
      sets and zero elsewhere).
    """
    x = self.arrays
    probs = self.edge_probs(policy)
    cf = self.others_reach(self.reach(probs), player)
    mine = x.parent_player == player
    br_policy = jnp.zeros((self.i, self.a), policy.dtype)
    below = None
    for d in reversed(range(self.num_levels)):
      sl = self.level(d)
      v = x.returns[sl, player]
      if below is not None:
        kids = self.level(d + 1)
        q = jax.ops.segment_sum(jnp.where(mine[kids], cf[x.parent[kids]] * below, 0.0),
                                x.edge_flat[kids], num_segments=self.i * self.a)
        q = jnp.where(x.legal, q.reshape(self.i, self.a), -jnp.inf)
        best = q.max(axis=1, keepdims=True)
        if uniform_ties:
          ties = x.legal & (q >= best - TIE_TOLERANCE)
          choice = ties / ties.sum(axis=1, keepdims=True)
        else:
          choice = jax.nn.one_hot(jnp.argmax(q, axis=1), self.a, dtype=policy.dtype)
        here = (x.infoset_player == player) & (x.infoset_depth == d)
        br_policy = jnp.where(here[:, None], choice, br_policy)
        w = jnp.where(mine[kids], choice.reshape(-1)[x.edge_flat[kids]], probs[kids])
        v = v + jax.ops.segment_sum(w * below, x.parent[kids] - self.off[d],
                                    num_segments=sl.stop - sl.start)
      below = v
    return below[0], br_policy

  def _nash_conv(self, policy: jax.Array) -> jax.Array:
    """sum_i [max_{sigma_i'} u_i(sigma_i', sigma_-i) - u_i(sigma)] (eq. 2 times N)."""
    on_policy = self._values(policy)
    best = jnp.stack([self._best_response(policy, p, False)[0] for p in range(self.n)])
    return jnp.sum(best - on_policy)


@functools.lru_cache(maxsize=16)
def compiled(game: Game) -> Passes:
  """The (cached) jitted passes of `game`."""
  return Passes(game)
