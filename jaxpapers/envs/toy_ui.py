"""ToyUI: a screen of widget flags with dependencies, rendered deterministically, pure-functional.

The environment of our CPU-scale check of the Computer-Using World Model's test-time action
search (CUWM, arXiv 2602.17365, Sec. "test-time action search": a frozen agent proposes
candidate actions, the world model imagines each outcome, the agent picks the best imagined
outcome, and only that action is compared with the logged one). The design is ours
(experiments/cuwm/README.md):

* State: `n` binary widget flags (a menu is open, an item is selected, a tab is active, ...).
  Widget `i` has a parent (`parents[i] < i`, or -1): it is visible and clickable only when its
  parent is on (a dropdown item only when its menu is open). Closing a widget closes all its
  descendants, so one click can change several flags. Reachable states are consistent (a child
  on implies its parent on).
* Screen: a `grid x grid` array of `cell x cell`-pixel cells (default 4 x 4 cells of 4 px: a
  16 x 16 binary image). Widget `i` sits in cell `cells[i]`; a visible widget draws its border,
  an "on" one also fills its interior. `parse` reads the flags back from an image (interior
  mostly lit), as an agent reads a screenshot.
* Actions: a click on one of the `grid^2` cells. A click on a blank cell or on a hidden widget
  changes nothing.
* Change vocabulary (stands in for CUWM's textual transition description Delta_t): token `i`
  "widget i turned on", token `n + i` "widget i turned off"; a transition's description is the
  multi-hot set of its changes (`delta`), its length the number of changes.
* Goal and logged expert action: a goal is a consistent state; the distance to it is the Hamming
  distance with a priority tie-break (widget i weighs `1 + 2^-(i+2)`, so two different states
  are never at the same distance from a goal), and the logged expert action is the click whose
  next state is nearest the goal (lowest cell index among equals). When the state differs from
  the goal some click always reduces the distance.

Every method is a pure function of arrays (the layout is static), so `jax.vmap` and `jax.jit`
apply to any of them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

# The default layout: two widget trees, menu 0 -> items 1, 2 and tab 3 -> pane 4 -> checkbox 5.
DEFAULT_PARENTS = (-1, 0, 0, -1, 3, 4)
DEFAULT_CELLS = (0, 4, 8, 2, 6, 11)


@dataclasses.dataclass(frozen=True)
class ToyUI:
  """A widget layout; hashable, so it can be a static argument of `jax.jit`.

  Attributes:
    parents: `parents[i]` the parent widget of widget i (-1: always visible); `parents[i] < i`.
    cells: `cells[i]` the screen cell of widget i (distinct, in `[0, grid^2)`).
    grid: cells per screen side.
    cell: pixels per cell side (>= 3: a border and an interior).
  """

  parents: tuple[int, ...] = DEFAULT_PARENTS
  cells: tuple[int, ...] = DEFAULT_CELLS
  grid: int = 4
  cell: int = 4

  def __post_init__(self):
    n = len(self.parents)
    if n < 1 or len(self.cells) != n:
      raise ValueError(f"ToyUI needs one cell per widget, got parents {self.parents}, cells {self.cells}")
    if any(not -1 <= p < i for i, p in enumerate(self.parents)):
      raise ValueError(f"ToyUI parents {self.parents}: each must be -1 or an earlier widget")
    if len(set(self.cells)) != n or any(not 0 <= c < self.grid**2 for c in self.cells):
      raise ValueError(f"ToyUI cells {self.cells}: distinct cells in [0, {self.grid**2})")
    if self.cell < 3:
      raise ValueError(f"ToyUI cell={self.cell}: >= 3 pixels (a border and an interior)")

  @classmethod
  def default(cls, num_widgets: int = 6) -> ToyUI:
    """The first `num_widgets` (1..6) widgets of the default layout."""
    if not 1 <= num_widgets <= len(DEFAULT_PARENTS):
      raise ValueError(f"num_widgets={num_widgets}: 1..{len(DEFAULT_PARENTS)}")
    return cls(DEFAULT_PARENTS[:num_widgets], DEFAULT_CELLS[:num_widgets])

  # ------------------------------------------------------------------ static layout

  @property
  def num_widgets(self) -> int:
    return len(self.parents)

  @property
  def num_actions(self) -> int:
    return self.grid**2

  @property
  def num_changes(self) -> int:
    """Size of the change vocabulary: "widget i on" (i) and "widget i off" (n + i)."""
    return 2 * self.num_widgets

  @property
  def image_shape(self) -> tuple[int, int]:
    return (self.grid * self.cell, self.grid * self.cell)

  def _widget_at(self) -> np.ndarray:
    """`[num_actions]` the widget in each cell (-1: blank)."""
    out = -np.ones(self.num_actions, np.int32)
    out[list(self.cells)] = np.arange(self.num_widgets)
    return out

  def _descendants(self) -> np.ndarray:
    """`[n, n]` bool: `d[w, j]` when j is a descendant of w (not w itself)."""
    n = self.num_widgets
    d = np.zeros((n, n), bool)
    for j in range(n):
      p = self.parents[j]
      while p >= 0:
        d[p, j] = True
        p = self.parents[p]
    return d

  def _masks(self) -> tuple[np.ndarray, np.ndarray]:
    """(border, interior) `[n, H, W]` float32 pixel masks of each widget's cell."""
    n, c = self.num_widgets, self.cell
    border = np.zeros((n, *self.image_shape), np.float32)
    interior = np.zeros_like(border)
    for i, cell in enumerate(self.cells):
      y, x = (cell // self.grid) * c, (cell % self.grid) * c
      border[i, y:y + c, x:x + c] = 1.0
      border[i, y + 1:y + c - 1, x + 1:x + c - 1] = 0.0
      interior[i, y + 1:y + c - 1, x + 1:x + c - 1] = 1.0
    return border, interior

  def weights(self) -> np.ndarray:
    """`[n]` distance weights `1 + 2^-(i+2)` (the fractional parts sum below 1/2)."""
    return 1.0 + 2.0 ** -(np.arange(self.num_widgets) + 2.0)

  # ------------------------------------------------------------------ dynamics

  def visible(self, flags: jax.Array) -> jax.Array:
    """`[..., n]` bool: the widget's parent is on (roots always)."""
    flags = jnp.asarray(flags, bool)
    parents = np.asarray(self.parents)
    parent_on = jnp.take(flags, np.maximum(parents, 0), axis=-1)
    return jnp.where(parents < 0, True, parent_on)

  def step(self, flags: jax.Array, action: jax.Array) -> jax.Array:
    """The next flags after clicking cell `action` (one state: `[n]` bool, scalar int)."""
    flags = jnp.asarray(flags, bool)
    w = jnp.asarray(self._widget_at())[action]
    n = self.num_widgets
    hit = (jnp.arange(n) == w) & (w >= 0)
    clickable = jnp.any(hit & self.visible(flags))
    was_on = jnp.any(hit & flags)
    closed = hit | jnp.any(hit[:, None] & jnp.asarray(self._descendants()), axis=0)
    turned = jnp.where(was_on, flags & ~closed, flags | hit)
    return jnp.where(clickable, turned, flags)

  def delta(self, flags: jax.Array, next_flags: jax.Array) -> jax.Array:
    """`[..., 2n]` float32 multi-hot change description (on tokens, then off tokens)."""
    flags, next_flags = jnp.asarray(flags, bool), jnp.asarray(next_flags, bool)
    return jnp.concatenate([next_flags & ~flags, flags & ~next_flags], axis=-1).astype(jnp.float32)

  def apply_delta(self, flags: jax.Array, delta: jax.Array) -> jax.Array:
    """Flags after a change description (on tokens set, off tokens clear)."""
    n = self.num_widgets
    d = jnp.asarray(delta) > 0.5
    return (jnp.asarray(flags, bool) | d[..., :n]) & ~d[..., n:]

  # ------------------------------------------------------------------ screen

  def render(self, flags: jax.Array) -> jax.Array:
    """`[..., H, W]` float32 binary screen of the flags."""
    flags = jnp.asarray(flags, bool)
    border, interior = (jnp.asarray(m) for m in self._masks())
    vis = self.visible(flags).astype(jnp.float32)
    on = (flags & self.visible(flags)).astype(jnp.float32)
    img = jnp.einsum("...n,nhw->...hw", vis, border) + jnp.einsum("...n,nhw->...hw", on, interior)
    return jnp.clip(img, 0.0, 1.0)

  def parse(self, image: jax.Array) -> jax.Array:
    """`[..., n]` bool flags read from a screen: a widget's interior more than half lit."""
    _, interior = self._masks()
    lit = jnp.einsum("...hw,nhw->...n", jnp.asarray(image, jnp.float32), jnp.asarray(interior))
    return lit > 0.5 * interior.sum((1, 2))

  # ------------------------------------------------------------------ goals and the expert

  def distance(self, flags: jax.Array, goal: jax.Array) -> jax.Array:
    """`[...]` Hamming distance to the goal with the priority tie-break (`weights`)."""
    diff = (jnp.asarray(flags, bool) != jnp.asarray(goal, bool)).astype(jnp.float32)
    return diff @ jnp.asarray(self.weights(), jnp.float32)

  def all_next(self, flags: jax.Array) -> jax.Array:
    """`[num_actions, n]` the next flags of every click."""
    return jax.vmap(lambda a: self.step(flags, a))(jnp.arange(self.num_actions))

  def expert_scores(self, flags: jax.Array, goal: jax.Array) -> jax.Array:
    """`[num_actions]` minus the distance to the goal after each click (higher is better)."""
    return -self.distance(self.all_next(flags), goal)

  def expert_action(self, flags: jax.Array, goal: jax.Array) -> jax.Array:
    """The logged expert action: the click nearest the goal (lowest cell among equals)."""
    return jnp.argmax(self.expert_scores(flags, goal)).astype(jnp.int32)

  def consistent(self, flags: jax.Array) -> jax.Array:
    """Projects any flags onto a consistent state (a child on only when its parent is)."""
    flags = jnp.asarray(flags, bool)
    out = []
    for i, p in enumerate(self.parents):
      out.append(flags[..., i] if p < 0 else flags[..., i] & out[p])
    return jnp.stack(out, axis=-1)

  def sample_state(self, key: jax.Array, p_on: float = 0.5) -> jax.Array:
    """`[n]` a random consistent state (each flag on with `p_on`, then `consistent`)."""
    return self.consistent(jax.random.bernoulli(key, p_on, (self.num_widgets,)))

  def sample_goal(self, key: jax.Array, flags: jax.Array, tries: int = 16) -> jax.Array:
    """`[n]` a random consistent goal different from `flags` (the first of `tries` draws that
    differs; a state with a single widget always has one)."""
    draws = jax.vmap(self.sample_state)(jax.random.split(key, tries))
    differs = jnp.any(draws != jnp.asarray(flags, bool), axis=-1)
    flipped = self.consistent(~jnp.asarray(flags, bool))  # a fallback that differs from flags
    return jnp.where(jnp.any(differs), draws[jnp.argmax(differs)], flipped)
