"""ToyRTS: a few-line RTS economy (minerals, workers, supply) and its structured text form.

The stand-in for StarCraft II in our CPU-scale check of StarWM ("World Models for
Policy Refinement in StarCraft II", arXiv 2602.14857): the spec's economy
(shared/papers/agents_and_evals.md section 6, "Proposal for the library"), pure-functional and
`jax.vmap`-able, and a serializer/parser in the spirit of the paper's five-module structured
textual observation (its five modules: Info, Queue, My Units, My Structures, Visible Hostiles); only Info
and Queue carry state in this toy.

One tick of `ToyRTS.step(state, action)`, in this order [ours: the spec fixes the numbers, not
the order]:
  1. the action, when legal (an illegal one is a wait):
     * TRAIN_WORKER: needs `minerals >= worker_cost`, an idle worker queue (`worker_timer == 0`)
       and free supply (`supply_used < supply_cap`); pays the cost, takes one supply now (as
       SC2 does at queue time) and starts `worker_timer = worker_ticks`;
     * BUILD_DEPOT: needs `minerals >= depot_cost` and no depot under construction
       (`depot_timer == 0`); pays and starts `depot_timer = depot_ticks`;
  2. income: `income_per_worker * workers` minerals (the workers at the start of the tick);
  3. timers count down; a worker timer reaching 0 adds the worker, a depot timer reaching 0 adds
     `depot_supply` to the cap.
So a worker queued at tick t is working from tick t + worker_ticks on, and a depot started at t
raises the cap for the state after tick t + depot_ticks - 1.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

WAIT, TRAIN_WORKER, BUILD_DEPOT = 0, 1, 2
NUM_ACTIONS = 3
ACTION_NAMES = ("wait", "train_worker", "build_depot")
FIELDS = ("minerals", "workers", "supply_used", "supply_cap", "depot_timer", "worker_timer")


class RTSState(NamedTuple):
  """The economy's state; each field an int32 array of one (batch) shape.

  Attributes:
    minerals: mineral bank.
    workers: finished workers (each mines `income_per_worker` per tick).
    supply_used: supply taken (finished workers plus the one in training).
    supply_cap: supply provided (the base plus finished depots).
    depot_timer: ticks left on the depot under construction (0: none).
    worker_timer: ticks left on the worker in training (0: queue idle).
  """

  minerals: jax.Array
  workers: jax.Array
  supply_used: jax.Array
  supply_cap: jax.Array
  depot_timer: jax.Array
  worker_timer: jax.Array


def to_array(state: RTSState) -> jax.Array:
  """The state as a `[..., 6]` array in `FIELDS` order (the world model's input and output)."""
  return jnp.stack([jnp.asarray(x) for x in state], -1)


def from_array(x: jax.Array) -> RTSState:
  """The `RTSState` of a `[..., 6]` array in `FIELDS` order (values kept as they are)."""
  return RTSState(*(x[..., i] for i in range(len(FIELDS))))


@dataclasses.dataclass(frozen=True)
class ToyRTS:
  """The economy's rules (spec numbers by default; the start is SC2's: 12 workers, 12/15).

  Attributes:
    income_per_worker: minerals per worker per tick.
    worker_cost: minerals per worker.
    worker_ticks: ticks to train a worker (one at a time).
    depot_cost: minerals per supply depot.
    depot_ticks: ticks to build a depot (one at a time).
    depot_supply: cap added by a finished depot.
    start_minerals: minerals at `reset`.
    start_workers: workers (and supply used) at `reset`.
    start_cap: supply cap at `reset` (the main base's supply).
  """

  income_per_worker: int = 5
  worker_cost: int = 50
  worker_ticks: int = 3
  depot_cost: int = 100
  depot_ticks: int = 6
  depot_supply: int = 8
  start_minerals: int = 50
  start_workers: int = 12
  start_cap: int = 15

  def reset(self) -> RTSState:
    """The standard start: `start_minerals`, `start_workers` at `start_workers/start_cap`."""
    i = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
    return RTSState(i(self.start_minerals), i(self.start_workers), i(self.start_workers),
                    i(self.start_cap), i(0), i(0))

  def random_starts(self, rng: np.random.Generator, shape: tuple[int, ...] = (),
                    max_minerals: int = 150, workers: tuple[int, int] = (6, 14),
                    free_supply: tuple[int, int] = (1, 6)) -> RTSState:
    """Randomized idle starts of `shape` [ours], drawn on the host (numpy: no compiled RNG):
    minerals U{0..max_minerals}, workers U{workers}, cap = workers + U{free_supply} (inclusive)."""
    m = rng.integers(0, max_minerals + 1, shape)
    w = rng.integers(workers[0], workers[1] + 1, shape)
    cap = w + rng.integers(free_supply[0], free_supply[1] + 1, shape)
    zero = np.zeros(shape, np.int32)
    i = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
    return RTSState(i(m), i(w), i(w), i(cap), i(zero), i(zero))

  def can_train(self, state: RTSState) -> jax.Array:
    return ((state.minerals >= self.worker_cost) & (state.worker_timer <= 0)
            & (state.supply_used < state.supply_cap))

  def can_build(self, state: RTSState) -> jax.Array:
    return (state.minerals >= self.depot_cost) & (state.depot_timer <= 0)

  def legal(self, state: RTSState, action: jax.Array) -> jax.Array:
    """Whether `action` does something in `state` (WAIT is always legal)."""
    return jnp.where(action == TRAIN_WORKER, self.can_train(state),
                     jnp.where(action == BUILD_DEPOT, self.can_build(state), action == WAIT))

  def step(self, state: RTSState, action: jax.Array) -> RTSState:
    """One tick (module docstring); an illegal or unknown action is a wait."""
    train = (action == TRAIN_WORKER) & self.can_train(state)
    build = (action == BUILD_DEPOT) & self.can_build(state)
    minerals = (state.minerals - self.worker_cost * train - self.depot_cost * build
                + self.income_per_worker * state.workers)
    used = state.supply_used + train
    wt = jnp.where(train, self.worker_ticks, state.worker_timer)
    dt = jnp.where(build, self.depot_ticks, state.depot_timer)
    worker_done = wt == 1
    depot_done = dt == 1
    return RTSState(
        minerals=minerals.astype(jnp.int32),
        workers=(state.workers + worker_done).astype(jnp.int32),
        supply_used=used.astype(jnp.int32),
        supply_cap=(state.supply_cap + self.depot_supply * depot_done).astype(jnp.int32),
        depot_timer=jnp.maximum(dt - 1, 0).astype(jnp.int32),
        worker_timer=jnp.maximum(wt - 1, 0).astype(jnp.int32))

  def blocked(self, state: RTSState) -> jax.Array:
    """Supply-blocked as the spec counts it: used >= cap with no depot under construction."""
    return (state.supply_used >= state.supply_cap) & (state.depot_timer <= 0)

  def rollout(self, policy: Callable[[RTSState], jax.Array], state: RTSState,
              ticks: int) -> tuple[RTSState, jax.Array]:
    """`ticks` steps of `policy` from `state` (`lax.scan`; vmap it for batches).

    Returns:
      (states, actions): the states before each tick and the final one (fields `[ticks + 1]`)
      and the actions taken (`[ticks]`).
    """
    def tick(s, _):
      a = jnp.asarray(policy(s), jnp.int32)
      return self.step(s, a), (s, a)
    final, (states, actions) = jax.lax.scan(tick, state, None, length=ticks)
    states = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]]), states, final)
    return states, actions

  def base_policy(self, state: RTSState) -> jax.Array:
    """The spec's reactive policy: build a depot only once blocked (waiting for the minerals),
    otherwise train workers whenever possible."""
    return jnp.where(self.blocked(state), jnp.where(self.can_build(state), BUILD_DEPOT, WAIT),
                     jnp.where(self.can_train(state), TRAIN_WORKER, WAIT)).astype(jnp.int32)


# ---------------------------------------------------------------- structured text


def to_text(state: RTSState, rules: ToyRTS = ToyRTS()) -> str:
  """The five-module structured observation of one (unbatched) state.

  Info and Queue carry the state; My Units and My Structures are derived from it (workers;
  the main base and `(cap - start_cap) / depot_supply` depots, rounded down); there are no
  hostiles in this toy. `from_text` reads it back exactly.
  """
  s = [int(np.asarray(x)) for x in state]
  minerals, workers, used, cap, depot_timer, worker_timer = s
  queue = []
  if worker_timer > 0:
    queue.append(f"- SCV: {worker_timer} ticks left of {rules.worker_ticks}")
  if depot_timer > 0:
    queue.append(f"- Supply Depot: {depot_timer} ticks left of {rules.depot_ticks}")
  depots = max(cap - rules.start_cap, 0) // rules.depot_supply
  lines = ["[Info]", f"Minerals: {minerals}", "Gas: 0",
           f"Collection rate: {rules.income_per_worker * workers} per tick",
           f"Supply: {used}/{cap}", "",
           "[Queue]", *(queue or ["(empty)"]), "",
           "[My Units]", f"SCV x{workers}", "",
           "[My Structures]", "Command Center x1", f"Supply Depot x{depots}", "",
           "[Visible Hostiles]", "(none)"]
  return "\n".join(lines) + "\n"


MODULES = ("Info", "Queue", "My Units", "My Structures", "Visible Hostiles")
_QUEUE = re.compile(r"- (SCV|Supply Depot): (\d+) ticks left of (\d+)")


def _modules(text: str) -> dict[str, list[str]]:
  out: dict[str, list[str]] = {}
  current = None
  for n, line in enumerate(text.splitlines(), 1):
    line = line.strip()
    if not line:
      continue
    header = re.fullmatch(r"\[(.+)\]", line)
    if header:
      current = header.group(1)
      if current not in MODULES or current in out:
        raise ValueError(f"line {n}: unexpected module header {line!r} (modules: {', '.join(MODULES)})")
      out[current] = []
    elif current is None:
      raise ValueError(f"line {n}: {line!r} before the first module header")
    else:
      out[current].append(line)
  missing = [m for m in MODULES if m not in out]
  if missing:
    raise ValueError(f"observation lacks the module(s) {', '.join(missing)}")
  return out


def from_text(text: str) -> RTSState:
  """The `RTSState` of a `to_text` observation (int32 scalars).

  Raises:
    ValueError: a module is missing or repeated, a field is missing or malformed, or the unit
      list disagrees with Info.
  """
  modules = _modules(text)
  info = {}
  for line in modules["Info"]:
    key, sep, value = line.partition(":")
    if not sep:
      raise ValueError(f"Info line {line!r} is not 'key: value'")
    info[key.strip()] = value.strip()
  for key in ("Minerals", "Supply"):
    if key not in info:
      raise ValueError(f"Info lacks {key!r}")
  supply = re.fullmatch(r"(\d+)/(\d+)", info["Supply"])
  if not re.fullmatch(r"-?\d+", info["Minerals"]) or supply is None:
    raise ValueError(f"malformed Info: Minerals {info['Minerals']!r}, Supply {info['Supply']!r} "
                     "(expected an integer and USED/CAP)")
  timers = {"SCV": 0, "Supply Depot": 0}
  for line in modules["Queue"]:
    if line == "(empty)":
      continue
    m = _QUEUE.fullmatch(line)
    if m is None:
      raise ValueError(f"malformed Queue line {line!r} (expected '- SCV: N ticks left of M')")
    timers[m.group(1)] = int(m.group(2))
  units = [re.fullmatch(r"SCV x(\d+)", line) for line in modules["My Units"]]
  if len(units) != 1 or units[0] is None:
    raise ValueError(f"malformed My Units {modules['My Units']!r} (expected one 'SCV xN' line)")
  i = lambda v: jnp.asarray(int(v), jnp.int32)  # noqa: E731
  return RTSState(i(info["Minerals"]), i(units[0].group(1)), i(supply.group(1)),
                  i(supply.group(2)), i(timers["Supply Depot"]), i(timers["SCV"]))
