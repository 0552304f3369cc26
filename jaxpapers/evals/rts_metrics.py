"""StarWM's offline and online RTS metrics (arXiv 2602.14857; section numbers unchecked).

* `smape`: symmetric mean absolute percentage error of predicted resources (the paper's Economy
  metric). Library convention [ours; the paper's scaling is not confirmed]:
  SMAPE = (1/n) sum_i |yhat_i - y_i| / ((|yhat_i| + |y_i|) / 2), with 0/0 := 0, in [0, 2].
* `supply_block_rate`: the share of ticks whose production is supply-blocked (an online
  metric of StarWM-Agent).
* `unit_set_wasserstein`: the Euclidean W1 distance between two unit layouts (point sets), exact
  through the assignment helper `jaxpapers.evals.assignment`. The paper's macro-situation metric
  is AWD; its exact weighting and normalization were not retrieved, so this is named differently
  and is not claimed to equal AWD.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxpapers.evals import assignment


def smape(pred, true, axis=None):
  """Symmetric MAPE of `pred` against `true` (module docstring), 0/0 counted as 0.

  Args:
    pred: predictions (any shape; jax or numpy).
    true: targets, broadcastable with `pred`.
    axis: axes averaged over (None: all).

  Returns:
    The mean over `axis` of |pred - true| / ((|pred| + |true|) / 2), each term in [0, 2].
  """
  pred, true = jnp.asarray(pred, jnp.float32), jnp.asarray(true, jnp.float32)
  denom = (jnp.abs(pred) + jnp.abs(true)) / 2
  ratio = jnp.where(denom > 0, jnp.abs(pred - true) / jnp.where(denom > 0, denom, 1.0), 0.0)
  return jnp.mean(ratio, axis=axis)


def supply_block_rate(supply_used, supply_cap, depot_pending=None, axis=-1):
  """Share of ticks (along `axis`) with used supply >= cap.

  Args:
    supply_used: per-tick used supply.
    supply_cap: per-tick supply cap (same shape).
    depot_pending: optional per-tick bool, True while supply is under construction; such ticks
      are not counted as blocked (the spec's count: "used >= cap with no depot under
      construction"). None counts every tick with used >= cap (the stall rate).
    axis: the time axis.
  """
  blocked = jnp.asarray(supply_used) >= jnp.asarray(supply_cap)
  if depot_pending is not None:
    blocked = blocked & ~jnp.asarray(depot_pending, bool)
  return jnp.mean(blocked.astype(jnp.float32), axis=axis)


def _units(name: str, x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim == 1:
    x = x[:, None]
  if x.ndim != 2:
    raise ValueError(f"{name} has shape {x.shape}: expected [n, d] unit positions")
  return x


def unit_set_wasserstein(x, y, *, unmatched_cost: float | None = None) -> float:
  """W1 (Euclidean) between two unit sets, exact; unequal counts pay for the unmatched units.

  Equal counts n: the uniform-weight earth mover's distance, min over one-to-one matchings of
  the mean Euclidean distance (`assignment.assignment_distance`). Counts n != m:
    * `unmatched_cost=c` (the penalty convention [ours]): the max(n, m) - min(n, m) units
      left over in the larger set each cost c, i.e. the smaller set is padded with "absent"
      units at distance c from every unit; the result is
      (min over partial matchings of the sum of matched distances + c |n - m|) / max(n, m).
      Pick c at least the map's diameter so that matching is never dearer than leaving out.
    * `unmatched_cost=None`: the two sets as uniform distributions of equal mass (W1 between the
      normalized measures, `assignment.assignment_distance` on lcm(n, m) repeats), which ignores
      the count difference.
  Two empty sets are at 0; an empty and a non-empty set at `unmatched_cost` (required then).

  Args:
    x: `[n, d]` unit positions.
    y: `[m, d]` unit positions.
    unmatched_cost: the cost of each unmatched unit (see above).
  """
  x, y = _units("x", x), _units("y", y)
  n, m = len(x), len(y)
  if unmatched_cost is not None and unmatched_cost < 0:
    raise ValueError(f"unmatched_cost must be >= 0, got {unmatched_cost}")
  if n == 0 or m == 0:
    if n == m:
      return 0.0
    if unmatched_cost is None:
      raise ValueError("one unit set is empty: pass unmatched_cost to price the unmatched units")
    return float(unmatched_cost)
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"x has {x.shape[1]} coordinates and y {y.shape[1]}: one map, one dimension")
  if n == m or unmatched_cost is None:
    return assignment.assignment_distance(x, y, "euclidean")
  # Pad the smaller set with "absent" units (a flag coordinate), priced at `unmatched_cost`.
  small, large = (x, y) if n < m else (y, x)
  pad = np.concatenate([small, np.zeros((len(large) - len(small), small.shape[1]))])
  flag_small = np.concatenate([np.zeros(len(small)), np.ones(len(large) - len(small))])
  a = np.concatenate([pad, flag_small[:, None]], 1)
  b = np.concatenate([large, np.zeros((len(large), 1))], 1)
  c = float(unmatched_cost)

  def cost(u, v):
    return c if u[-1] > 0 else float(np.sqrt(np.sum((u[:-1] - v[:-1]) ** 2)))

  return assignment.assignment_distance(a, b, cost)
