"""ToyRTS (StarWM's toy economy): hand-computed transitions, vmap, the base policy, text round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.envs import toy_rts
from jaxpapers.envs.toy_rts import BUILD_DEPOT, TRAIN_WORKER, WAIT, RTSState, ToyRTS

ENV = ToyRTS()


def _s(*v):
  return RTSState(*(jnp.asarray(x, jnp.int32) for x in v))


def _np(state):
  return [int(x) for x in state]


def _numpy_step(s, a, env=ENV):
  """An independent scalar re-statement of the module docstring's rules."""
  m, w, used, cap, dt, wt = s
  if a == TRAIN_WORKER and m >= env.worker_cost and wt == 0 and used < cap:
    m, used, wt = m - env.worker_cost, used + 1, env.worker_ticks
  elif a == BUILD_DEPOT and m >= env.depot_cost and dt == 0:
    m, dt = m - env.depot_cost, env.depot_ticks
  m += env.income_per_worker * w
  if wt == 1:
    w += 1
  if dt == 1:
    cap += env.depot_supply
  return [m, w, used, cap, max(dt - 1, 0), max(wt - 1, 0)]


def test_hand_computed_transitions():
  s = ENV.reset()
  assert _np(s) == [50, 12, 12, 15, 0, 0]
  s = ENV.step(s, TRAIN_WORKER)
  assert _np(s) == [60, 12, 13, 15, 0, 2]  # paid 50, +1 supply now, income 12 x 5
  s = ENV.step(ENV.step(s, WAIT), WAIT)
  assert _np(s) == [180, 13, 13, 15, 0, 0]  # the worker joins after 3 ticks
  d = _s(100, 12, 12, 15, 0, 0)
  d = ENV.step(d, BUILD_DEPOT)
  for _ in range(4):
    d = ENV.step(d, WAIT)
  assert _np(d) == [300, 12, 12, 15, 1, 0]  # not yet after 5 ticks
  assert _np(ENV.step(d, WAIT)) == [360, 12, 12, 23, 0, 0]  # +8 cap after 6
  assert _np(ENV.step(_s(500, 10, 15, 15, 0, 0), TRAIN_WORKER)) == [550, 10, 15, 15, 0, 0]  # at cap
  assert _np(ENV.step(_s(49, 10, 10, 15, 0, 0), TRAIN_WORKER)) == [99, 10, 10, 15, 0, 0]
  assert _np(ENV.step(_s(99, 10, 10, 15, 0, 0), BUILD_DEPOT)) == [149, 10, 10, 15, 0, 0]
  assert _np(ENV.step(_s(300, 10, 10, 15, 3, 0), BUILD_DEPOT)) == [350, 10, 10, 15, 2, 0]  # one at a time


@pytest.fixture(scope="module")
def random_transitions():
  rng = np.random.default_rng(0)
  n = 300
  cols = [rng.integers(0, 400, n), rng.integers(0, 30, n), rng.integers(0, 30, n),
          rng.integers(0, 40, n), rng.integers(0, 7, n), rng.integers(0, 4, n)]
  actions = rng.integers(0, 3, n)
  states = RTSState(*(jnp.asarray(c, jnp.int32) for c in cols))
  nxt = jax.jit(jax.vmap(ENV.step))(states, jnp.asarray(actions, jnp.int32))
  return np.stack(cols, 1), actions, np.stack([np.asarray(x) for x in nxt], 1)


def test_vmapped_step_matches_a_scalar_reference(random_transitions):
  states, actions, nxt = random_transitions
  want = np.array([_numpy_step(list(map(int, s)), int(a)) for s, a in zip(states, actions)])
  np.testing.assert_array_equal(nxt, want)


def test_base_policy_episode_and_legal():
  states, actions = jax.jit(lambda s: ENV.rollout(ENV.base_policy, s, 200))(ENV.reset())
  assert states.minerals.shape == (201,) and actions.shape == (200,)
  blocked = np.asarray(ENV.blocked(jax.tree.map(lambda x: x[:-1], states)))
  # the reactive policy: a depot only on a blocked tick, a block only once per depot cycle
  built = np.asarray(actions) == BUILD_DEPOT
  assert np.all(blocked[built]) and blocked.sum() == built.sum() == 7
  assert int(states.workers[-1]) == 69  # 12 + 57 trained (7 stalls of 6 ticks)
  assert np.all(np.asarray(states.supply_used) <= np.asarray(states.supply_cap))
  assert bool(ENV.legal(_s(0, 1, 1, 2, 0, 0), WAIT)) and not bool(ENV.legal(_s(0, 1, 1, 2, 0, 0), TRAIN_WORKER))


def test_text_round_trip_and_modules(random_transitions):
  states = random_transitions[0]
  for row in states[:100]:
    s = _s(*row)
    text = toy_rts.to_text(s)
    assert _np(toy_rts.from_text(text)) == list(map(int, row))
  text = toy_rts.to_text(_s(150, 14, 15, 23, 4, 2))
  assert [line for line in text.splitlines() if line.startswith("[")] == [f"[{m}]" for m in toy_rts.MODULES]
  assert "Supply: 15/23" in text and "- SCV: 2 ticks left of 3" in text and "Supply Depot x1" in text
  with pytest.raises(ValueError, match="lacks the module"):
    toy_rts.from_text(text.replace("[Queue]", ""))
  with pytest.raises(ValueError, match="My Units"):
    toy_rts.from_text(text.replace("SCV x14", "SCV fourteen"))
  with pytest.raises(ValueError, match="Queue line"):
    toy_rts.from_text(text.replace("2 ticks left", "two ticks left"))
