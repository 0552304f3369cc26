"""frontier_risk: smoke results, ToyGuardrail's Blue strategies, Red's belief, config checks."""

import json
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.frontier_risk import guardrail
from jaxpapers.experiments.frontier_risk.config import SMALL
from jaxpapers.experiments.frontier_risk.run import (
  EXPERIMENT,
  HAND_TABLE,
  _hand_weighted,
  game,
  monotone_violations,
  resampled_passk,
)


def test_smoke_report_covers_the_ci_checks(smoke_report):
  run = smoke_report("frontier_risk")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert set(claims) == {"passk_edge_cases", "bayes_two_hypotheses", "rvb_two_rounds_deterministic",
                         "weighted_passk_hand"}
  assert claims["passk_edge_cases"]["measured"] == 0
  m = json.loads((run.folder / "measurements.json").read_text())
  assert len(m["games"]["class_pattern"][0]["dsr"]) == 2
  assert "[secondary]" in claims["weighted_passk_hand"]["statement"]


def test_hand_table_and_resampling_against_exact_values():
  # written out: A (1 - C(7,5)/C(10,5) + 0) / 2 = 11/24; B 1 - C(7,5)/C(8,5) = 5/8;
  # C (1 + 1 - C(10,5)/C(12,5)) / 2 = (1 + 15/22) / 2; D 1 (k = 5 > n - c = 4)
  a, b = Fraction(1) - Fraction(21, 252), Fraction(1) - Fraction(21, 56)
  c = (1 + 1 - Fraction(252, 792)) / 2
  assert _hand_weighted(5) == Fraction(2, 10) * a / 2 + Fraction(3, 10) * b + Fraction(3, 10) * c + Fraction(2, 10)
  assert [r["task"] for r in HAND_TABLE] == ["a1", "a2", "b1", "c1", "c2", "d1"]
  rng = np.random.default_rng(0)
  draws = 40_000
  for n, c_, k in ((10, 3, 2), (50, 1, 20), (7, 0, 3), (7, 5, 3)):
    exact = 1 - comb(n - c_, k) / comb(n, k)
    se = max(np.sqrt(exact * (1 - exact) / draws), 1e-12)
    got = resampled_passk(n, c_, k, draws, rng)
    assert abs(got - exact) <= 4 * se, (n, c_, k, got, exact)  # exact for c = 0 and k > n - c


def test_blue_strategies_generalise_or_overfit():
  a, b, held = guardrail.attack_text(0, 1), guardrail.attack_text(0, 2), guardrail.attack_text(0, 9)
  logs = [{"attack": (0, 1), "text": a, "blocked": False}, {"attack": (0, 2), "text": b, "blocked": False}]
  target = guardrail.ToyGuardrail()
  target.state = guardrail.ClassPatternBlue().patch(target.state, logs)
  assert target.state.patterns == (frozenset(guardrail.CLASSES[0][1]),)  # the core: all tokens common to both
  assert target.blocks(held) and not target.blocks(guardrail.attack_text(1, 1))
  assert not target.blocks("ignore the typo in my previous message about chess")  # 2 of 3 core tokens
  exact = guardrail.ToyGuardrail()
  exact.state = guardrail.ExactStringBlue().patch(exact.state, logs)
  assert exact.blocks(a) and exact.blocks(b) and not exact.blocks(held)


def test_red_updates_its_belief_by_bayes():
  red = guardrail.BanditRed([[0, 1], [2, 3]], 4)
  red.observe([(0, 0), (0, 1), (1, 2)], [True, True, False])
  # class 0: two blocks, P(open) = 0.5 * 0.1^2 / (0.5 * 0.1^2 + 0.5 * 0.9^2)
  assert red.belief[0, 0] == pytest.approx(0.01 / 0.82, rel=1e-12)
  assert red.belief[1, 0] == pytest.approx(0.9, rel=1e-12)
  red.policy = "greedy"
  assert {c for c, _ in red.propose(None, np.random.default_rng(0))} == {1}  # argmax of expected utility


def test_games_are_seeded_and_monotonicity_is_counted():
  assert game(SMALL, 3, "class_pattern", 3) == game(SMALL, 3, "class_pattern", 3)
  fake = {"open_belief": [[0.5, 0.5], [0.2, 0.6], [0.3, 0.6]], "covered": [[True, False], [True, True], [True, True]]}
  assert monotone_violations(fake) == (1, 3)  # class 0 rose from 0.2 to 0.3 after being patched


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="red_policy"):
    EXPERIMENT.config("small", ["red_policy=random"])
  with pytest.raises(ConfigError, match="held_out_variants"):
    EXPERIMENT.config("small", ["held_out_variants=19"])
