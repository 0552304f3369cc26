"""`jaxpapers bench games`: CFR iterations per second, JAX vs OpenSpiel's C++ CFR (arXiv 2602.16928).

On Kuhn 3p, Leduc 2p and Liar's Dice 5 both solvers run the same number of CFR iterations in
this process; reported: iterations/s of each (solve time only, one timed run each with
`jaxpapers.core.bench.time_fn`; JAX's compile time, of a one-iteration run, separately), the
speed-up, and both exploitabilities after those iterations (they must agree: relative gap at
most 1e-9).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from jaxpapers import games
from jaxpapers.core import bench

from .run import load

CASES = (("kuhn3", 1000), ("leduc2", 1000), ("liars5", 300))
MAX_RELATIVE_GAP = 1e-9
# Keyword arguments for a quick run of the same logic (tests/core/test_bench.py runs it).
SMOKE_KWARGS = {"bench_games": {"cases": (("kuhn3", 5),)}}


def _ours(short: str, iterations: int) -> tuple[bench.Timing, float]:
  """Timing of `iterations` CFR iterations from a fresh state, and the exploitability reached."""
  solver = games.Solver(load(short), "cfr")
  state, out = solver.init(), {}

  def solve():
    out["state"] = solver.run(state, iterations)
    return out["state"]

  # The loop's trip count is dynamic: one iteration compiles it.
  timing = bench.time_fn(solve, precompile=lambda: solver.run(state, 1), warmup=0, repeats=1)
  return timing, solver.evaluate(out["state"])[1]


def _openspiel(short: str, iterations: int) -> tuple[bench.Timing, float]:
  import pyspiel  # pylint: disable=g-import-not-at-top
  game = pyspiel.load_game(load(short).openspiel_string)
  solver = pyspiel.CFRSolver(game)

  def solve():
    for _ in range(iterations):
      solver.evaluate_and_update_policy()

  timing = bench.time_fn(solve, precompile=lambda: None, warmup=0, repeats=1)
  return timing, pyspiel.nash_conv(game, solver.average_policy()) / game.num_players()


def bench_games(cases: tuple[tuple[str, int], ...] = CASES
                ) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
  """(table rows, JSON record); `cases` are (game, iterations) pairs."""
  have_openspiel = importlib.util.find_spec("pyspiel") is not None
  rows = [("game", "iterations", "jax it/s", "openspiel C++ it/s", "speed-up", "jax compile s",
           "jax exploitability", "openspiel exploitability")]
  results, targets = [], {}
  for short, iterations in cases:
    ours, expl = _ours(short, iterations)
    ips = ours.rate(iterations)
    if have_openspiel:
      theirs, os_expl = _openspiel(short, iterations)
      os_ips = theirs.rate(iterations)
    else:
      theirs, os_expl, os_ips = None, float("nan"), float("nan")
    gap = abs(expl - os_expl) / os_expl
    rows.append((short, str(iterations), f"{ips:.1f}", f"{os_ips:.1f}", f"{ips / os_ips:.1f}x",
                 f"{ours.compile_seconds:.1f}", f"{expl:.10g}", f"{os_expl:.10g}"))
    results.append({"game": short, "iterations": iterations, "jax_iterations_per_s": ips,
                    "openspiel_cpp_iterations_per_s": os_ips, "speedup": ips / os_ips,
                    "jax_compile_s": ours.compile_seconds, "jax_exploitability": expl,
                    "openspiel_exploitability": os_expl, "relative_gap": gap,
                    "jax_timing": ours, "openspiel_timing": theirs})
    targets[f"{short}_relative_gap"] = bench.target(gap, "<=", MAX_RELATIVE_GAP)
  record = bench.bench_record(
      "games", results, description="CFR iterations/s: our JAX solver vs OpenSpiel's C++ CFRSolver",
      config={"cases": [list(c) for c in cases], "algorithm": "cfr",
              "openspiel": "available" if have_openspiel else "not installed"},
      targets=targets)
  return rows, record
