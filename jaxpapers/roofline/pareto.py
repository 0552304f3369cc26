"""Pareto frontier of (latency, loss), constrained optima and iso-latency optima.

"Hardware Co-Design Scaling Laws via Roofline Modelling for On-Device LLMs" (Sun et al., arXiv
2602.10377, sections 4 and 5): every candidate gets a latency (roofline) and a predicted loss
(the fitted law); the Pareto set is the candidates no other one beats in both, and the
co-designed architecture minimizes the loss under latency and memory budgets. The paper's
closed-form optima (l* ~ d^-2, rho* ~ d^-1.19) are read here as log-log slopes along the
iso-latency optimum: for every width d, the best candidate under the latency budget.

Everything is vectorized with numpy (a sort and a running minimum for the frontier).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def pareto_mask(latency: np.ndarray, loss: np.ndarray) -> np.ndarray:
  """Boolean mask of the non-dominated candidates, both objectives minimized.

  A candidate is dominated when another is no worse in both and better in one; of exact
  duplicates the first (lowest index) is kept. Sorting by (latency, loss, index), a candidate
  is on the frontier iff its loss is below every loss before it.
  """
  latency, loss = np.asarray(latency, float), np.asarray(loss, float)
  order = np.lexsort((np.arange(latency.size), loss, latency))
  best_before = np.concatenate([[np.inf], np.minimum.accumulate(loss[order])[:-1]])
  mask = np.zeros(latency.size, bool)
  mask[order] = loss[order] < best_before
  return mask


def constrained_argmin(loss: np.ndarray, feasible: np.ndarray) -> int:
  """Index of the lowest loss among the feasible candidates (ties: lowest index).

  Raises:
    ValueError: no candidate is feasible.
  """
  feasible = np.asarray(feasible, bool)
  if not feasible.any():
    raise ValueError("no candidate satisfies the constraints")
  return int(np.argmin(np.where(feasible, loss, np.inf)))


class IsoLatencyOptima(NamedTuple):
  """Per group value (e.g. width d): the best feasible candidate.

  Attributes:
    values: the group values with at least one feasible candidate, sorted.
    index: the chosen candidate of each (index into the candidate arrays).
  """

  values: np.ndarray
  index: np.ndarray


def iso_latency_optima(group: np.ndarray, loss: np.ndarray, feasible: np.ndarray) -> IsoLatencyOptima:
  """For every distinct `group` value, the lowest-loss feasible candidate (ties: lowest index)."""
  group, loss = np.asarray(group), np.asarray(loss, float)
  feasible = np.asarray(feasible, bool)
  idx = np.flatnonzero(feasible)
  if idx.size == 0:
    return IsoLatencyOptima(np.zeros(0, group.dtype), np.zeros(0, int))
  order = idx[np.lexsort((idx, loss[idx], group[idx]))]
  first = np.concatenate([[True], group[order][1:] != group[order][:-1]])
  chosen = order[first]
  return IsoLatencyOptima(group[chosen], chosen)


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
  """Least-squares slope of log y against log x (NaN with fewer than two distinct x)."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  if np.unique(x).size < 2:
    return float("nan")
  return float(np.polyfit(np.log(x), np.log(y), 1)[0])
