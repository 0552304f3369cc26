"""VAD-CFR: unit tests of Listing 5's rules (arXiv 2602.16928); exploitability on known policies.

The CI protocol's Kuhn runs (VAD-CFR, CFR+, DCFR at 500/600) are asserted by the smoke reproduction
(test_games_experiment.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers import games
from jaxpapers.games import vad_cfr


def test_uniform_policy_exploitability_kuhn():
  game = games.load_game("kuhn_poker")
  assert games.exploitability(game, games.uniform_policy(game)) == pytest.approx(11 / 24, abs=1e-12)


def test_known_kuhn_equilibrium_has_zero_exploitability():
  """Kuhn's equilibrium family with alpha = 1/6 (player 0 bets a jack w.p. alpha)."""
  game = games.load_game("kuhn_poker")
  policy = games.uniform_policy(game)
  a = 1 / 6
  bet_prob = {  # (player, card, history) -> probability of action 1 (bet / call)
      (0, 0, ()): a, (0, 1, ()): 0.0, (0, 2, ()): 3 * a,
      (0, 0, (0, 1)): 0.0, (0, 1, (0, 1)): a + 1 / 3, (0, 2, (0, 1)): 1.0,
      (1, 0, (0,)): 1 / 3, (1, 1, (0,)): 0.0, (1, 2, (0,)): 1.0,
      (1, 0, (1,)): 0.0, (1, 1, (1,)): 1 / 3, (1, 2, (1,)): 1.0,
  }
  for i, key in enumerate(game.infoset_keys):
    policy[i] = [1 - bet_prob[key], bet_prob[key]]
  assert abs(games.exploitability(game, policy)) < 1e-12
  np.testing.assert_allclose(games.expected_values(game, policy), [-1 / 18, 1 / 18], atol=1e-12)


def test_adapt_rules():
  with jax.enable_x64(True):
    m = jnp.array([0.5, 3.0])
    e, last = vad_cfr.ewma_global(jnp.array(0), m, jnp.array([True, True]), jnp.array(7.0))
    np.testing.assert_allclose(e, m)                       # t = 0: e = m
    v, d_plus, d_minus = vad_cfr.discounts(jnp.array(3.0), e)
    np.testing.assert_allclose(v, [0.25, 1.0])             # v clipped at 1 once e >= 2
    alpha = np.log(d_plus / (1 - d_plus)) / np.log(4.0)
    beta = np.log(d_minus / (1 - d_minus)) / np.log(4.0)
    np.testing.assert_allclose(alpha, [1.5 - 0.125, 1.0])
    np.testing.assert_allclose(beta, [-0.1 - 0.125, -0.6])
    # t > 0: EWMA with weight 0.1 on the new sample, inactive rows leave it unchanged, in row order
    e, last = vad_cfr.ewma_global(jnp.array(5), jnp.array([1.0, 2.0, 4.0]),
                                  jnp.array([True, False, True]), jnp.array(2.0))
    ref, out = 2.0, []
    for mi, on in zip([1.0, 2.0, 4.0], [True, False, True]):
      ref = 0.1 * mi + 0.9 * ref if on else ref
      out.append(ref)
    np.testing.assert_allclose(e, out)
    assert float(last) == pytest.approx(out[-1])


def test_regret_policy_and_average_components():
  with jax.enable_x64(True):
    cum = jnp.array([[2.0, -80.0, -1.0]])
    r = jnp.array([[1.0, -1.0, 0.5]])
    d_plus, d_minus = jnp.array([0.8]), jnp.array([0.3])
    new = vad_cfr.accumulate_regret(cum, r, d_plus, d_minus)
    np.testing.assert_allclose(new, [[0.8 * 2 + 1.1, -20.0, -0.3 + 0.55]])  # boost, floor, sign of old R
    legal = jnp.array([[True, True, True]])
    sigma = vad_cfr.next_policy(jnp.array(0.0), new, r, jnp.array([0.0]), d_plus, d_minus, legal)
    proj = np.maximum(0, np.array([0.8 * 2.7 + 1.1, 0.3 * -20 - 1.0, 0.8 * 0.25 + 0.55]))**1.5
    np.testing.assert_allclose(sigma, [proj / proj.sum()])                  # exponent 1.5
    assert float(vad_cfr.average_weight(jnp.array(499.0), r)[0]) == 0.0     # warm start
    m = 1.0
    want = 501.0**(2 + 1.5 * 0.5) / (1 + m**1.5) * (1 + m / 2)**0.5
    assert float(vad_cfr.average_weight(jnp.array(500.0), r)[0]) == pytest.approx(want)


def test_unknown_algorithm_is_a_usage_error():
  with pytest.raises(ValueError, match="unknown algorithm"):
    games.solve(games.load_game("kuhn_poker"), "cfr_minus", 3)
  with pytest.raises(ValueError, match="unknown game"):
    games.load_game("chess")
