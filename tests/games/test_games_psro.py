"""Meta-solvers (HYB of arXiv 2602.16928 on rock-paper-scissors) and PSRO on Kuhn poker."""

import numpy as np
import pytest

from jaxpapers import games
from jaxpapers.games import meta_solvers

RPS = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], float)


@pytest.mark.parametrize("solver", ["shor_train", "shor_eval", "nash"])
def test_rock_paper_scissors_equilibrium(solver):
  for mix in meta_solvers.make(solver)([RPS, -RPS]):
    np.testing.assert_allclose(mix, [1 / 3] * 3, atol=1e-6)


def test_rm_and_prd_approach_the_unique_nash_of_a_biased_game():
  a = np.array([[3.0, -1.0], [-1.0, 1.0]])  # zero-sum; Nash x = (1/3, 2/3), y = (1/3, 2/3)
  for solver in (meta_solvers.regret_matching, meta_solvers.projected_replicator_dynamics):
    x, y = solver([a, -a], 20_000)
    np.testing.assert_allclose(x, [1 / 3, 2 / 3], atol=2e-2)
    np.testing.assert_allclose(y, [1 / 3, 2 / 3], atol=2e-2)
  x, y = meta_solvers.nash_lp([a, -a])
  np.testing.assert_allclose(x, [1 / 3, 2 / 3], atol=1e-9)


def test_psro_with_nash_solvers_finds_kuhn_equilibrium():
  result = games.psro(games.load_game("kuhn_poker"), "nash", "nash", 10)
  assert result.at(10) < 1e-9                     # our numpy reference: Nash/Nash reaches ~0 by iteration 10
  assert result.curve[0][1] > 1e-2
  assert [len(p) for p in result.populations] == [11, 11]
  game = games.load_game("kuhn_poker")
  np.testing.assert_allclose(result.payoffs[0] + result.payoffs[1], 0.0, atol=1e-12)  # zero-sum
  uniform_value = games.expected_values(game, games.uniform_policy(game))[0]
  assert result.payoffs[0][0, 0] == pytest.approx(uniform_value, abs=1e-12)
  joint = np.where((game.infoset_player == 0)[:, None], result.populations[0][3], result.populations[1][7])
  assert result.payoffs[0][3, 7] == pytest.approx(games.expected_values(game, joint)[0], abs=1e-12)


def test_aggregate_is_realization_equivalent():
  """A 50/50 mixture of two pure policies equals, in value, half of each's value."""
  game = games.load_game("kuhn_poker")
  rng = np.random.default_rng(0)
  pure = [np.eye(2)[rng.integers(0, 2, game.num_infosets)] for _ in range(2)]
  other = games.uniform_policy(game)
  values = [games.expected_values(game, np.where((game.infoset_player == 0)[:, None], p, other))
            for p in pure]
  reaches = [games.own_reach(game, p) for p in pure]
  mixed = games.aggregate(game, [pure, [other]], [np.array([0.5, 0.5]), np.array([1.0])],
                          [reaches, [np.ones(game.num_infosets)]])
  np.testing.assert_allclose(games.expected_values(game, mixed), 0.5 * (values[0] + values[1]), atol=1e-12)
