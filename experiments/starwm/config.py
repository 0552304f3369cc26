"""Config and presets of the StarWM experiment (arXiv 2602.14857).

The protocol is the spec's CPU-scale one (shared/papers/agents_and_evals.md section 6, "Small-scale
verification"; experiments/starwm/README.md): `jaxpapers.envs.toy_rts.ToyRTS`, a reactive base
policy, an MLP world model (9 -> 128 -> 128 -> 6) that predicts the state `horizon` ticks ahead
under "action now, then the base policy", trained on epsilon-greedy transitions, and a fixed
refine rule inside `jaxpapers.worldmodel.predict_then_refine`. The `seeds` world models are one
vmapped ensemble trained in one run of the shared loop (each member on its own seed's data).

Presets:
  smoke: the spec's CI list: ToyRTS transitions, `smape` and `unit_set_wasserstein` edge cases,
    the text round trip, a 300-step world model and 100-tick refine episodes.
  small: the spec's full experiment: 45,000 transitions per seed, 3,000 Adam steps, 5 seeds,
    under-trained snapshots of the same run at 200 and 1,000 steps, 200-tick episodes.
  paper: the same protocol with 10 x the data and steps and 64 episodes per seed (the paper's
    own scale, SC2 and Qwen3-8B, is out of reach: README).
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check


@dataclasses.dataclass(frozen=True)
class StarWMConfig:
  """What `jaxpapers reproduce starwm` runs.

  Attributes:
    seeds: world-model seeds (ensemble members, each with its own data, initialization and
      evaluation starts), trained and evaluated as one vmapped batch.
    transitions: epsilon-greedy training transitions per seed.
    heldout: held-out transitions per seed (the world models' SMAPE and MSE).
    episode_ticks: ticks per episode (data collection and evaluation).
    epsilon: share of uniformly random actions in the data-collection rollouts.
    horizon: ticks the world model looks ahead (StarWM: 5 s).
    hidden: hidden width of the world-model MLP (two layers).
    learning_rate: Adam step size (constant, so a shorter run is a prefix of the full one).
    batch_size: transitions per member per step.
    quality_steps: the under-trained world models: the same run stopped at these steps (each
      < train.steps); the WM-quality ladder is these plus train.steps.
    margin: refine trigger: predicted used supply >= predicted cap - margin.
    eval_episodes: evaluation episodes per seed, from randomized starts.
    train: the world model's training run.
    mesh: devices.
  """

  seeds: int = 5
  transitions: int = 45_000
  heldout: int = 5_000
  episode_ticks: int = 200
  epsilon: float = 0.3
  horizon: int = 5
  hidden: int = 128
  learning_rate: float = 1e-3
  batch_size: int = 64
  quality_steps: tuple[int, ...] = (200, 1000)
  margin: float = 0.5
  eval_episodes: int = 16
  train: TrainConfig = TrainConfig(steps=3000, eval_every=500, log_every=100, checkpoint_every=1000,
                                   steps_per_dispatch=100)
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    check(1 <= self.seeds <= 64, "seeds", self.seeds, "in [1, 64]")
    check(self.episode_ticks <= self.transitions <= 10_000_000, "transitions", self.transitions,
          "in [episode_ticks, 10000000]")
    check(self.episode_ticks <= self.heldout <= 1_000_000, "heldout", self.heldout,
          "in [episode_ticks, 1000000]")
    check(10 <= self.episode_ticks <= 10_000, "episode_ticks", self.episode_ticks, "in [10, 10000]")
    check(0 <= self.epsilon <= 1, "epsilon", self.epsilon, "in [0, 1]")
    check(1 <= self.horizon <= 50, "horizon", self.horizon, "in [1, 50]")
    check(1 <= self.hidden <= 4096, "hidden", self.hidden, "in [1, 4096]")
    check(0 < self.learning_rate < 1, "learning_rate", self.learning_rate, "in (0, 1)")
    check(1 <= self.batch_size <= self.transitions, "batch_size", self.batch_size,
          "in [1, transitions]")
    check(all(1 <= s < self.train.steps for s in self.quality_steps)
          and list(self.quality_steps) == sorted(set(self.quality_steps)), "quality_steps",
          self.quality_steps, "increasing steps, each in [1, train.steps)")
    check(0 <= self.margin < 1, "margin", self.margin, "in [0, 1)")
    check(1 <= self.eval_episodes <= 4096, "eval_episodes", self.eval_episodes, "in [1, 4096]")


SMALL = StarWMConfig()
SMOKE = dataclasses.replace(
    SMALL, transitions=4000, heldout=1000, episode_ticks=100, quality_steps=(), eval_episodes=4,
    train=dataclasses.replace(SMALL.train, steps=300, eval_every=0, log_every=100))
PAPER = dataclasses.replace(
    SMALL, transitions=450_000, heldout=20_000, quality_steps=(200, 1000, 3000), eval_episodes=64,
    train=dataclasses.replace(SMALL.train, steps=30_000, eval_every=5000, checkpoint_every=5000))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
