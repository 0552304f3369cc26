"""ToyUI: the click dynamics against a plain-Python reference on every (state, click) pair,
rendering and parsing, change sets, the expert, goals, vmap."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.envs.toy_ui import ToyUI

UI = ToyUI.default(6)


def _states(ui):
  """Every consistent state (child on only with its parent), by brute force."""
  out = []
  for bits in itertools.product([False, True], repeat=ui.num_widgets):
    if all(p < 0 or not bits[i] or bits[p] for i, p in enumerate(ui.parents)):
      out.append(bits)
  return np.array(out)


def _ref_step(ui, flags, action):
  """The rules in plain Python: a click on a visible widget toggles it; closing closes the subtree."""
  flags = list(flags)
  if action not in ui.cells:
    return flags
  w = ui.cells.index(action)
  if ui.parents[w] >= 0 and not flags[ui.parents[w]]:
    return flags  # hidden
  if not flags[w]:
    flags[w] = True
    return flags
  closing = {w}
  changed = True
  while changed:
    changed = False
    for j, p in enumerate(ui.parents):
      if p in closing and j not in closing:
        closing.add(j)
        changed = True
  return [f and j not in closing for j, f in enumerate(flags)]


@pytest.fixture(scope="module")
def table():
  states = _states(UI)
  flags = np.repeat(states, UI.num_actions, axis=0)
  actions = np.tile(np.arange(UI.num_actions), len(states))
  step = jax.jit(jax.vmap(UI.step))
  return states, flags, actions, np.asarray(step(jnp.asarray(flags), jnp.asarray(actions)))


def test_default_layout_has_twenty_consistent_states_and_sixteen_clicks(table):
  states = table[0]
  assert len(states) == 20  # menu tree: 1 + 4; chain of three: 4 -> 5 x 4
  assert UI.num_actions == 16 and UI.num_changes == 12 and UI.image_shape == (16, 16)
  np.testing.assert_array_equal(np.asarray(UI.consistent(jnp.asarray(states))), states)


def test_step_matches_the_reference_on_every_state_and_click(table):
  _, flags, actions, nxt = table
  want = np.array([_ref_step(UI, f, int(a)) for f, a in zip(flags, actions)])
  np.testing.assert_array_equal(nxt, want)
  # closing the tab (cell 2) closes pane and checkbox; a hidden checkbox (cell 11) does nothing
  s = jnp.array([1, 1, 0, 1, 1, 1], bool)
  np.testing.assert_array_equal(UI.step(s, 2), [1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(UI.step(jnp.array([0, 0, 0, 1, 0, 0], bool), 11), [0, 0, 0, 1, 0, 0])


def test_delta_lists_the_changes_and_applies_back(table):
  _, flags, _, nxt = table
  d = np.asarray(UI.delta(jnp.asarray(flags), jnp.asarray(nxt)))
  np.testing.assert_array_equal(d[:, :6], nxt & ~flags)
  np.testing.assert_array_equal(d[:, 6:], flags & ~nxt)
  np.testing.assert_array_equal(np.asarray(UI.apply_delta(jnp.asarray(flags), jnp.asarray(d))), nxt)
  assert d.sum(-1).max() == 3  # closing the tab with pane and checkbox on


def test_render_draws_visible_borders_and_on_interiors_and_parse_reads_them_back(table):
  states = table[0]
  img = np.asarray(UI.render(jnp.asarray(states)))
  assert set(np.unique(img)) <= {0.0, 1.0}
  for s, im in zip(states, img):
    visible = [p < 0 or s[p] for p in UI.parents]
    on = [v and f for v, f in zip(visible, s)]
    assert im.sum() == 12 * sum(visible) + 4 * sum(on)  # 4 x 4 cells: 12 border, 4 interior pixels
  np.testing.assert_array_equal(np.asarray(UI.parse(jnp.asarray(img))), states)
  assert len({im.tobytes() for im in img}) == len(states)  # distinct screens


def test_distance_separates_states_and_the_expert_is_the_unique_best_click(table):
  states = table[0]
  rng = np.random.default_rng(0)
  for goal in states[rng.choice(len(states), 5, replace=False)]:
    d = np.asarray(UI.distance(jnp.asarray(states), jnp.asarray(goal)))
    assert len(set(d.round(9))) == len(states)  # never two states at the same distance
    np.testing.assert_array_equal(np.floor(d), (states != goal).sum(-1))  # Hamming + tie-break < 1
  pairs = rng.integers(0, len(states), (30, 2))
  s, g = jnp.asarray(states[pairs[:, 0]]), jnp.asarray(states[pairs[:, 1]])
  expert = np.asarray(jax.jit(jax.vmap(UI.expert_action))(s, g))
  d = np.asarray(jax.jit(jax.vmap(lambda f, goal: UI.distance(UI.all_next(f), goal)))(s, g))  # [30, 16]
  np.testing.assert_array_equal(expert, d.argmin(-1))
  assert np.all(d[np.arange(30), expert] == d.min(-1))
  now = np.asarray(UI.distance(s, g))
  differs = np.any(states[pairs[:, 0]] != states[pairs[:, 1]], -1)
  assert np.all(d.min(-1)[differs] < now[differs])  # some click always helps


def test_goals_are_consistent_and_differ_and_everything_vmaps():
  @jax.jit
  def draw(key):
    k1, k2 = jax.random.split(key)
    flags = jax.vmap(UI.sample_state)(jax.random.split(k1, 64))
    goals = jax.vmap(UI.sample_goal)(jax.random.split(k2, 64), flags)
    return flags, goals, jax.vmap(UI.expert_action)(flags, goals), UI.consistent(goals)

  flags, goals, expert, projected = (np.asarray(x) for x in draw(jax.random.key(0)))
  assert np.all(np.any(goals != flags, -1))
  np.testing.assert_array_equal(projected, goals)
  w = UI.weights()
  for f, g, a in zip(flags[:8], goals[:8], expert[:8]):  # the expert against the Python rules
    d = [float(((np.array(_ref_step(UI, f, b)) != g) * w).sum()) for b in range(UI.num_actions)]
    assert a == int(np.argmin(d))
  one = ToyUI.default(1)  # a single widget: the only other state is its opposite
  np.testing.assert_array_equal(one.sample_goal(jax.random.key(3), jnp.array([True])), [False])


def test_bad_layouts_are_refused():
  with pytest.raises(ValueError, match="earlier widget"):
    ToyUI((-1, 2, 0), (0, 1, 2))
  with pytest.raises(ValueError, match="distinct cells"):
    ToyUI((-1, 0), (3, 3))
  with pytest.raises(ValueError, match="num_widgets"):
    ToyUI.default(7)
