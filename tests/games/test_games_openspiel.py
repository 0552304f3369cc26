"""Cross-checks against OpenSpiel (`pyspiel`, the `open-spiel` package of the test extra).

Trees are walked in lockstep with pyspiel (players, legal actions, chance outcomes, returns and
the information-set partition), information-set counts are compared for every game, and CFR /
CFR+ exploitability after a few iterations must equal OpenSpiel's C++ solvers.
"""

import numpy as np
import pytest

pyspiel = pytest.importorskip(
    "pyspiel", reason="open-spiel is not installed (pip install -e '.[test]' installs it)")

from jaxpapers import games  # pylint: disable=g-import-not-at-top
from jaxpapers.games import tree as tree_lib  # pylint: disable=g-import-not-at-top

DEFAULT_GAMES = [
    ("kuhn_poker", {"players": 2}), ("kuhn_poker", {"players": 3}), ("kuhn_poker", {"players": 4}),
    ("leduc_poker", {"players": 2}), ("goofspiel", {"num_cards": 4}), ("goofspiel", {"num_cards": 5}),
    ("liars_dice", {"dice_sides": 4}), ("liars_dice", {"dice_sides": 5}),
]
SLOW_GAMES = [("liars_dice", {"dice_sides": 6}), ("leduc_poker", {"players": 3})]
SPEC_COUNTS = {  # infoset counts of OpenSpiel's games
    ("kuhn_poker", 2): 12, ("kuhn_poker", 3): 48, ("kuhn_poker", 4): 160, ("leduc_poker", 2): 936,
    ("leduc_poker", 3): 25_800, ("goofspiel", 4): 162, ("goofspiel", 5): 2_124,
    ("liars_dice", 4): 1_024, ("liars_dice", 5): 5_120, ("liars_dice", 6): 24_576,
}


def _spec_key(name, params):
  return name, next(iter(params.values())) if name != "leduc_poker" and name != "kuhn_poker" else params["players"]


def _id(case):
  name, params = case
  return name + "-" + "-".join(str(v) for v in params.values())


def _check_counts(name, params):
  game = games.load_game(name, **params)
  os_game = pyspiel.load_game(game.openspiel_string)
  os_count = len(pyspiel.CFRSolver(os_game).tabular_current_policy().policy_table())
  assert game.num_infosets == os_count == SPEC_COUNTS[_spec_key(name, params)]


@pytest.mark.parametrize("case", DEFAULT_GAMES, ids=_id)
def test_infoset_counts_match_openspiel(case):
  _check_counts(*case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_GAMES, ids=_id)
def test_infoset_counts_match_openspiel_large(case):
  _check_counts(*case)


@pytest.mark.parametrize("case", [("kuhn_poker", {"players": 3}), ("leduc_poker", {"players": 2}),
                                  ("goofspiel", {"num_cards": 4}), ("liars_dice", {"dice_sides": 4})],
                         ids=_id)
def test_tree_walks_in_lockstep_with_openspiel(case):
  """Every history: same kind, player, legal actions, chance distribution and returns; the
  information-set partition is the same (a bijection between keys and OpenSpiel's strings)."""
  name, params = case
  game = games.load_game(name, **params)
  rules = tree_lib.make_rules(name, **params)
  os_game = pyspiel.load_game(game.openspiel_string)
  ours_to_os, os_to_ours = {}, {}
  stack = [(os_game.new_initial_state(), rules.initial_state())]
  histories = 0
  while stack:
    os_state, state = stack.pop()
    histories += 1
    info = rules.info(state)
    if os_state.is_terminal():
      assert info.kind == "terminal"
      np.testing.assert_allclose(info.returns, os_state.returns(), atol=1e-12)
      continue
    if os_state.is_chance_node():
      assert info.kind == "chance"
      outcomes = os_state.chance_outcomes()
      assert list(info.actions) == [a for a, _ in outcomes]
      np.testing.assert_allclose(info.probs, [p for _, p in outcomes], atol=1e-15)
    else:
      assert info.kind == "decision" and info.player == os_state.current_player()
      assert list(info.actions) == os_state.legal_actions()
      key = rules.infoset_key(state, info.player)
      os_key = os_state.information_state_string()
      assert ours_to_os.setdefault(key, os_key) == os_key
      assert os_to_ours.setdefault(os_key, key) == key
    stack.extend((os_state.child(a), rules.child(state, a)) for a in info.actions)
  assert histories == game.num_nodes
  assert len(ours_to_os) == game.num_infosets


def _openspiel_exploitability(os_game, solver_cls, iterations):
  solver = solver_cls(os_game)
  for _ in range(iterations):
    solver.evaluate_and_update_policy()
  return pyspiel.nash_conv(os_game, solver.average_policy()) / os_game.num_players()


# Each game costs a few seconds of XLA compilation; the larger ones run with -m slow.
CFR_GAMES = [("kuhn_poker", {"players": 2}), ("kuhn_poker", {"players": 3}),
             ("leduc_poker", {"players": 2}), ("goofspiel", {"num_cards": 4}),
             ("liars_dice", {"dice_sides": 4})]
CFR_SLOW_GAMES = [("kuhn_poker", {"players": 4}), ("goofspiel", {"num_cards": 5}),
                  ("liars_dice", {"dice_sides": 5})]


def _check_cfr(name, params, iterations):
  game = games.load_game(name, **params)
  os_game = pyspiel.load_game(game.openspiel_string)
  for algorithm, cls in (("cfr", pyspiel.CFRSolver), ("cfr_plus", pyspiel.CFRPlusSolver)):
    ours = games.solve(game, algorithm, iterations).exploitability
    theirs = _openspiel_exploitability(os_game, cls, iterations)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-14), algorithm


@pytest.mark.parametrize("case", CFR_GAMES, ids=_id)
def test_cfr_and_cfr_plus_equal_openspiel(case):
  _check_cfr(*case, iterations=7)


@pytest.mark.slow
@pytest.mark.parametrize("case", CFR_SLOW_GAMES, ids=_id)
def test_cfr_and_cfr_plus_equal_openspiel_large(case):
  _check_cfr(*case, iterations=7)


def test_dcfr_equals_openspiel_python_solver():
  from open_spiel.python.algorithms import discounted_cfr, exploitability  # pylint: disable=g-import-not-at-top
  os_game = pyspiel.load_game("kuhn_poker(players=3)")
  solver = discounted_cfr.DCFRSolver(os_game)
  for _ in range(20):
    solver.evaluate_and_update_policy()
  theirs = exploitability.nash_conv(os_game, solver.average_policy()) / 3
  ours = games.solve(games.load_game("kuhn_poker", players=3), "dcfr", 20).exploitability
  assert ours == pytest.approx(theirs, rel=1e-9)


def test_best_response_value_equals_openspiel():
  """Exact best-response values against a non-uniform policy, on 3-player Kuhn."""
  game = games.load_game("kuhn_poker", players=3)
  result = games.solve(game, "cfr", 5)
  os_game = pyspiel.load_game(game.openspiel_string)
  solver = pyspiel.CFRSolver(os_game)
  for _ in range(5):
    solver.evaluate_and_update_policy()
  policy = solver.average_policy()
  for player in range(3):
    theirs = pyspiel.TabularBestResponse(os_game, player, policy).value_from_state(os_game.new_initial_state())
    ours, _ = games.best_response(game, result.average_policy, player)
    assert ours == pytest.approx(theirs, rel=1e-10)
