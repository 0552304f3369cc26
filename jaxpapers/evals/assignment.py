"""Exact assignment distances between point sets (earth mover's distance of uniform sets).

Between two sets of n points with uniform weights 1/n, an optimal transport plan can be taken to
be a permutation (Birkhoff-von Neumann), so the earth mover's distance (W1 for the Euclidean
cost) is the mean cost of the optimal one-to-one assignment: an exact linear assignment problem,
solved here by `scipy.optimize.linear_sum_assignment` (no solver of our own). Sets of sizes n
and m (uniform weights 1/n and 1/m) are reduced to the same problem on lcm(n, m) points by
repeating every point of the first set lcm/n times and of the second lcm/m times, which is exact
for the same reason.

Used by TactAlign's (arXiv 2602.13579) EMD between mapped human and robot tactile latents, and
meant for any other set distance (unit sets, features).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import scipy.optimize
import scipy.spatial.distance

Metric = str | Callable[[np.ndarray, np.ndarray], float]


def _points(name: str, x) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim == 1:
    x = x[:, None]
  if x.ndim != 2 or x.shape[0] == 0:
    raise ValueError(f"{name} has shape {x.shape}: expected [n, d] points with n >= 1")
  return x


def optimal_assignment(x, y, metric: Metric = "euclidean", *, power: float = 1.0,
                       max_points: int = 8192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The optimal one-to-one matching of the uniform sets x and y under cost `metric ** power`.

  Args:
    x: [n, d] points (a [n] array is n one-dimensional points).
    y: [m, d] points.
    metric: a `scipy.spatial.distance.cdist` metric name ("euclidean", "sqeuclidean",
      "cityblock", ...) or a callable of two points.
    power: the cost is metric(x_i, y_j) ** power (1: W1/EMD; 2 with "euclidean": W2 squared).
    max_points: refuse problems on more than this many (repeated) points per side.

  Returns:
    (rows, cols, costs): matched indices into x and y and the matched costs, each of length
    lcm(n, m) (n when the sizes are equal); the mean of `costs` is the transport cost.
  """
  x, y = _points("x", x), _points("y", y)
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"x has {x.shape[1]} dimensions and y {y.shape[1]}: the sets must live in one space")
  if power <= 0:
    raise ValueError(f"power must be > 0, got {power}")
  n, m = len(x), len(y)
  size = math.lcm(n, m)
  if size > max_points:
    raise ValueError(f"sets of {n} and {m} points need an assignment over lcm = {size} points "
                     f"(> max_points={max_points}); subsample to equal sizes or raise max_points")
  cost = scipy.spatial.distance.cdist(x, y, metric) ** power
  rows_of = np.repeat(np.arange(n), size // n)
  cols_of = np.repeat(np.arange(m), size // m)
  r, c = scipy.optimize.linear_sum_assignment(cost[np.ix_(rows_of, cols_of)])
  rows, cols = rows_of[r], cols_of[c]
  return rows, cols, cost[rows, cols]


def assignment_distance(x, y, metric: Metric = "euclidean", *, power: float = 1.0,
                        max_points: int = 8192) -> float:
  """Exact transport cost between uniform point sets: min over matchings of the mean cost.

  With the Euclidean metric and power 1 this is the earth mover's distance (W1); with power p
  the result is W_p ** p (take the p-th root for W_p).

  Args:
    x: [n, d] points.
    y: [m, d] points.
    metric: see `optimal_assignment`.
    power: see `optimal_assignment`.
    max_points: see `optimal_assignment`.
  """
  return float(np.mean(optimal_assignment(x, y, metric, power=power, max_points=max_points)[2]))
