"""`jaxpapers bench games`: CFR iterations per second, JAX vs OpenSpiel's C++ CFR (arXiv 2602.16928).

On Kuhn 3p, Leduc 2p and Liar's Dice 5 both solvers run the same number of CFR iterations in
this process; reported: iterations/s of each (solve time only; JAX compile time separately),
the speed-up, and both exploitabilities after those iterations (they must agree).
"""

from __future__ import annotations

import time

import jax

from .run import load
from jaxpapers import games

CASES = (("kuhn3", 1000), ("leduc2", 1000), ("liars5", 300))


def _ours(short: str, iterations: int):
  game = load(short)
  solver = games.Solver(game, "cfr")
  state = solver.init()
  start = time.perf_counter()
  jax.block_until_ready(solver.run(state, 1))       # compiles the loop (trip count is dynamic)
  compile_s = time.perf_counter() - start
  state = solver.init()
  start = time.perf_counter()
  state = jax.block_until_ready(solver.run(state, iterations))
  seconds = time.perf_counter() - start
  return iterations / seconds, compile_s, solver.evaluate(state)[1]


def _openspiel(short: str, iterations: int):
  import pyspiel  # pylint: disable=g-import-not-at-top
  game = pyspiel.load_game(load(short).openspiel_string)
  solver = pyspiel.CFRSolver(game)
  start = time.perf_counter()
  for _ in range(iterations):
    solver.evaluate_and_update_policy()
  seconds = time.perf_counter() - start
  return iterations / seconds, pyspiel.nash_conv(game, solver.average_policy()) / game.num_players()


def bench_games():
  """(table rows, JSON record)."""
  try:
    import pyspiel  # pylint: disable=g-import-not-at-top,unused-import
    have_openspiel = True
  except ImportError:
    have_openspiel = False
  rows = [("game", "iterations", "jax it/s", "openspiel C++ it/s", "speed-up", "jax compile s",
           "jax exploitability", "openspiel exploitability")]
  record = {"benchmark": "games", "backend": jax.default_backend(), "cases": []}
  for short, iterations in CASES:
    ips, compile_s, expl = _ours(short, iterations)
    os_ips, os_expl = _openspiel(short, iterations) if have_openspiel else (float("nan"), float("nan"))
    rows.append((short, str(iterations), f"{ips:.1f}", f"{os_ips:.1f}", f"{ips / os_ips:.1f}x",
                 f"{compile_s:.1f}", f"{expl:.10g}", f"{os_expl:.10g}"))
    record["cases"].append({"game": short, "iterations": iterations, "jax_iterations_per_s": ips,
                            "openspiel_cpp_iterations_per_s": os_ips, "speedup": ips / os_ips,
                            "jax_compile_s": compile_s, "jax_exploitability": expl,
                            "openspiel_exploitability": os_expl,
                            "relative_gap": abs(expl - os_expl) / os_expl})
  return rows, record
