"""Config and presets of the games experiment (Li et al., arXiv 2602.16928).

The small and smoke presets are our CPU-scale protocol, see experiments/games/README.md.

Presets:
  smoke: the CI protocol, Kuhn 2p for 600 iterations (VAD-CFR, CFR+, DCFR) and HYB on
    rock-paper-scissors.
  small: 1,000 iterations of CFR, CFR+, DCFR, PCFR+, VAD-CFR on Kuhn 2p/3p and Leduc 2p,
    OpenSpiel equality of CFR/CFR+/DCFR on Kuhn, and 30 PSRO iterations on Kuhn 2p.
  paper: the 8 games named in the paper's Sec. 4.1 plus Kuhn 2p and Liar's Dice 4 (our guess at
    its 11-game sweep) at 1,000 CFR iterations and 100 PSRO iterations, for a big machine.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, check, check_choice

GAME_SPECS = {  # short name -> (OpenSpiel name, parameters)
    "kuhn2": ("kuhn_poker", {"players": 2}),
    "kuhn3": ("kuhn_poker", {"players": 3}),
    "kuhn4": ("kuhn_poker", {"players": 4}),
    "leduc2": ("leduc_poker", {"players": 2}),
    "leduc3": ("leduc_poker", {"players": 3}),
    "goofspiel4": ("goofspiel", {"num_cards": 4}),
    "goofspiel5": ("goofspiel", {"num_cards": 5}),
    "liars4": ("liars_dice", {"dice_sides": 4}),
    "liars5": ("liars_dice", {"dice_sides": 5}),
    "liars6": ("liars_dice", {"dice_sides": 6}),
}
ALGORITHMS = ("cfr", "cfr_plus", "dcfr", "pcfr_plus", "vad_cfr")
PSRO_SOLVERS = ("shor", "uniform", "nash", "rm", "prd")


@dataclasses.dataclass(frozen=True)
class GamesConfig:
  """What `jaxpapers reproduce games` runs.

  Attributes:
    games: short game names (GAME_SPECS) solved by every algorithm.
    algorithms: CFR-family algorithms.
    iterations: CFR iterations per run.
    eval_every: exploitability of the average policy every this many iterations.
    openspiel_check: compare CFR/CFR+/DCFR on Kuhn 2p/3p with OpenSpiel run live (pyspiel).
    psro_game: game of the PSRO runs ("" for none).
    psro_iterations: PSRO iterations.
    psro_solvers: meta-solver pairs run as (train, eval): shor = SHOR-PSRO's train/eval solvers.
    rps_check: run HYB on rock-paper-scissors (CI protocol).
    mesh: devices, as every experiment config has (the solvers run on the host and ignore it;
      there is no TrainConfig: the experiment declares no training stage).
  """

  games: tuple[str, ...] = ("kuhn2", "kuhn3", "leduc2")
  algorithms: tuple[str, ...] = ALGORITHMS
  iterations: int = 1000
  eval_every: int = 100
  openspiel_check: bool = True
  psro_game: str = "kuhn2"
  psro_iterations: int = 30
  psro_solvers: tuple[str, ...] = ("shor", "uniform")
  rps_check: bool = True
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    for g in self.games + ((self.psro_game,) if self.psro_game else ()):
      check_choice("games", g, tuple(GAME_SPECS))
    for a in self.algorithms:
      check_choice("algorithms", a, ALGORITHMS)
    for s in self.psro_solvers:
      check_choice("psro_solvers", s, PSRO_SOLVERS)
    check(1 <= self.iterations <= 1_000_000, "iterations", self.iterations, "in [1, 1000000]")
    check(1 <= self.eval_every <= self.iterations, "eval_every", self.eval_every, "in [1, iterations]")
    check(0 <= self.psro_iterations <= 10_000, "psro_iterations", self.psro_iterations, "in [0, 10000]")


SMOKE = GamesConfig(games=("kuhn2",), algorithms=("cfr_plus", "dcfr", "vad_cfr"), iterations=600,
                    openspiel_check=False, psro_game="", psro_iterations=0, psro_solvers=())
SMALL = GamesConfig()
PAPER = GamesConfig(games=tuple(GAME_SPECS), psro_iterations=100,
                    psro_solvers=("shor", "uniform", "nash", "rm", "prd"))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
