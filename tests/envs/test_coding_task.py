"""coding_task (Calibrate-Then-Act, arXiv 2602.16699, Sec. 5, library version): the factorized DP
against an expectimax over the explicit joint belief, its Monte Carlo, the authors' CSV prior
model, the step rules."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.envs import coding_task as C


def expectimax(prior, arities, d_unit, d_code, turns):
  """Exact value by recursion over the joint belief: a dict combo -> probability, never factorized.

  RUN guesses each attribute's most probable remaining value (marginal of the joint; ties to the
  lower index); a failed run reveals which attributes were wrong.
  """
  k = len(arities)
  combos = list(itertools.product(*[range(a) for a in arities]))
  start = {c: float(np.prod([prior[j][c[j]] for j in range(k)])) for c in combos}

  @functools.lru_cache(maxsize=None)
  def value(items, h):
    belief = dict(items)
    total = sum(belief.values())
    if h == 0 or total <= 0:
      return 0.0
    best = 0.0
    for j in range(k):  # TEST j: split on the value of attribute j
      q = 0.0
      for v in range(arities[j]):
        part = tuple((c, p) for c, p in items if c[j] == v)
        mass = sum(p for _, p in part)
        if mass > 0:
          q += mass / total * value(part, h - 1)
      best = max(best, d_unit * q)
    guess = []
    for j in range(k):
      marg = [sum(p for c, p in items if c[j] == v) for v in range(arities[j])]
      alive = [v for v in range(arities[j]) if any(c[j] == v for c, _ in items)]
      guess.append(max(alive, key=lambda v: (marg[v], -v)))
    q = 0.0
    for o in itertools.product((0, 1), repeat=k):
      part = tuple((c, p) for c, p in items
                   if all((c[j] == guess[j]) == bool(o[j]) for j in range(k)))
      mass = sum(p for _, p in part)
      if mass > 0:
        q += mass / total * (1.0 if all(o) else value(part, h - 1))
    return max(best, d_code * q)

  return value(tuple(start.items()), turns)


def test_dp_equals_expectimax():
  arities = (3, 2, 2)
  tasks = C.sample(jax.random.key(0), (12,), arities, alpha=0.7)
  ours = np.asarray(C.oracle_value(tasks, arities, max_turns=4))
  for i in range(12):
    prior = [np.asarray(tasks.shown[i, j, :a], np.float64) for j, a in enumerate(arities)]
    ref = expectimax(prior, arities, float(tasks.d_unit[i]), float(tasks.d_code[i]), 4)
    np.testing.assert_allclose(ours[i], ref, atol=2e-6)


def test_dp_equals_expectimax_k4():
  arities = (2, 2, 2, 2)
  tasks = C.sample(jax.random.key(1), (4,), arities, alpha=1.0)
  ours = np.asarray(C.oracle_value(tasks, arities, max_turns=5))
  for i in range(4):
    prior = [np.asarray(tasks.shown[i, j, :2], np.float64) for j in range(4)]
    ref = expectimax(prior, arities, float(tasks.d_unit[i]), float(tasks.d_code[i]), 5)
    np.testing.assert_allclose(ours[i], ref, atol=2e-6)


def test_oracle_monte_carlo_matches_value():
  arities = C.CSV_ARITIES
  tasks = C.sample_csv(jax.random.key(2), (20_000,))
  out = C.oracle_rollout(tasks, jax.random.key(3), arities)
  value = float(C.oracle_value(tasks, arities).mean())
  assert abs(float(out.final.reward.mean()) - value) < 0.01
  assert float(out.final.done.mean()) == 1.0  # 8 turns always suffice for arities (3, 2, 2)
  # costlier runs (rho 4) make the oracle test more than cheap ones (rho 0.5: never)
  tests = np.asarray(out.final.tests)
  rho = np.asarray(tasks.rho)
  assert tests[rho == 0.5].mean() == 0.0 and tests[rho == 4.0].mean() > 0.2


def test_csv_prior_model():
  """The authors' task file: filename along_eu_tsv_sas.tsv (eu, tsv, sas) -> delimiter
  (0.0933, 0.5644, 0.3423), quotechar (0.1824, 0.8176), skiprows (0.6900, 0.3100)."""
  p = np.asarray(C.csv_priors(jnp.array([1.0, 1.0, 1.0, 0.0])))
  np.testing.assert_allclose(p[0], [0.09329277, 0.56438838, 0.34231885], atol=1e-6)
  np.testing.assert_allclose(p[1, :2], [0.18242552, 0.81757448], atol=1e-6)
  np.testing.assert_allclose(p[2, :2], [0.68997448, 0.31002552], atol=1e-6)
  assert p[1, 2] == 0.0 and p[2, 2] == 0.0


def test_step_rules():
  arities = (3, 2)
  shown = jnp.array([[0.5, 0.3, 0.2], [0.9, 0.1, 0.0]])
  task = C.Tasks(shown, jnp.array([2, 0], jnp.int32), jnp.array(0.9), jnp.array(0.81), jnp.array(2.0))
  s = C.reset(task)
  s = C.step(task, s, jnp.array(2), arities)  # RUN with (0, 0): attribute 0 wrong, 1 right
  assert not bool(s.done) and s.excluded.tolist() == [1, 0] and s.known.tolist() == [False, True]
  s = C.step(task, s, jnp.array(2), arities)  # RUN with (1, 0): wrong again -> value 2 known
  assert s.excluded.tolist() == [2, 0] and s.known.tolist() == [True, True]
  s = C.step(task, s, jnp.array(2), arities)  # RUN: solved
  assert bool(s.done) and int(s.runs) == 3 and int(s.tests) == 0
  np.testing.assert_allclose(float(s.reward), 0.81 ** 3, rtol=1e-6)
  t = C.step(task, C.step(task, C.reset(task), jnp.array(0), arities), jnp.array(2), arities)
  assert bool(t.done) and int(t.tests) == 1  # TEST 0 reveals value 2, then one RUN solves
  np.testing.assert_allclose(float(t.reward), 0.9 * 0.81, rtol=1e-6)
