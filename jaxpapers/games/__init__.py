"""Extensive-form games, the CFR family with VAD-CFR, PSRO with SHOR-PSRO, exact exploitability.

Reimplementation of arXiv 2602.16928 (Li, Schultz, Hennes, Lanctot): games follow OpenSpiel's
rules and names; trees are flattened once and solved with jitted level-by-level passes.
"""

from jaxpapers.games.cfr import ALGORITHMS, Solver, SolveResult, solve
from jaxpapers.games.policy import (
                                    best_response,
                                    expected_values,
                                    exploitability,
                                    nash_conv,
                                    normalize,
                                    own_reach,
                                    uniform_policy,
)
from jaxpapers.games.psro import PsroResult, aggregate, psro
from jaxpapers.games.tree import GAMES, Game, load_game

__all__ = [
    "ALGORITHMS", "GAMES", "Game", "PsroResult", "SolveResult", "Solver", "aggregate",
    "best_response", "exploitability", "expected_values", "load_game", "nash_conv", "normalize",
    "own_reach", "psro", "solve", "uniform_policy",
]
