"""Meta-strategy solvers for PSRO on exact meta-games (arXiv 2602.16928).

PSRO as in Sec. 2.3 of Li et al.; SHOR-PSRO as in their Sec. 4.3.1 (Eq. (8)) and App. 7.1 (Listing 6).

A meta-game is a list of N payoff tensors, `payoffs[p][k_0, ..., k_{N-1}]` = expected utility of
player p when each player j plays its pure policy k_j. Every solver maps it to one mixture per
player: uniform, Nash (linear program, 2 players), regret matching, projected replicator
dynamics (PRD), and SHOR-PSRO's hybrid solver HYB (Listing 6) with its train/eval schedules.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import optimize

from jaxpapers.core.errors import UsageError


def payoff_vector(payoffs: Sequence[np.ndarray], mixtures: Sequence[np.ndarray], player: int) -> np.ndarray:
  """u[k] = expected payoff of `player`'s pure strategy k against the others' mixtures.

  Contracts every other axis with that player's mixture, highest axis first (Listing 6).
  """
  u = np.asarray(payoffs[player], np.float64)
  for axis in reversed(range(u.ndim)):
    if axis != player:
      u = np.tensordot(u, mixtures[axis], axes=([axis], [0]))
  return u


def uniform(payoffs: Sequence[np.ndarray]) -> list[np.ndarray]:
  shape = np.shape(payoffs[0])
  return [np.full(k, 1.0 / k) for k in shape]


def nash_lp(payoffs: Sequence[np.ndarray]) -> list[np.ndarray]:
  """Maximin strategies of a 2-player zero-sum meta-game (one LP per player)."""
  if len(payoffs) != 2:
    raise UsageError(f"the Nash LP meta-solver needs 2 players, got {len(payoffs)}")
  out = []
  for player in range(2):
    a = np.asarray(payoffs[player], np.float64)
    a = a if player == 0 else a.T           # rows: this player's strategies
    k, m = a.shape
    # variables (x_1..x_k, v): maximize v s.t. x^T a[:, j] >= v for all j, sum x = 1, x >= 0
    c = np.zeros(k + 1)
    c[-1] = -1.0
    a_ub = np.hstack([-a.T, np.ones((m, 1))])
    a_eq = np.hstack([np.ones((1, k)), np.zeros((1, 1))])
    res = optimize.linprog(c, A_ub=a_ub, b_ub=np.zeros(m), A_eq=a_eq, b_eq=[1.0],
                           bounds=[(0, None)] * k + [(None, None)], method="highs")
    x = np.maximum(res.x[:k], 0.0)
    out.append(x / x.sum())
  return out


def regret_matching(payoffs: Sequence[np.ndarray], iterations: int = 10_000, gamma: float = 1e-6) -> list[np.ndarray]:
  """Simultaneous regret matching with gamma-uniform exploration; returns the average strategy
  (OpenSpiel's regret_matching.py scheme)."""
  n = len(payoffs)
  sigma = uniform(payoffs)
  regrets = [np.zeros_like(s) for s in sigma]
  total = [np.zeros_like(s) for s in sigma]
  for _ in range(iterations):
    us = [payoff_vector(payoffs, sigma, p) for p in range(n)]
    for p in range(n):
      regrets[p] += us[p] - us[p] @ sigma[p]
      total[p] += sigma[p]
    for p in range(n):
      pos = np.maximum(regrets[p], 0.0)
      k = len(pos)
      sigma[p] = (1 - gamma) * (pos / pos.sum() if pos.sum() > 0 else np.full(k, 1.0 / k)) + gamma / k
  return [t / t.sum() for t in total]


def _project(x: np.ndarray, low: float) -> np.ndarray:
  """Euclidean projection onto {x : sum x = 1, x >= low}."""
  k = len(x)
  y = x - low
  mass = 1.0 - low * k
  u = np.sort(y)[::-1]
  css = np.cumsum(u) - mass
  idx = np.nonzero(u - css / np.arange(1, k + 1) > 0)[0][-1]
  return np.maximum(y - css[idx] / (idx + 1), 0.0) + low


def projected_replicator_dynamics(payoffs: Sequence[np.ndarray], iterations: int = 10_000, dt: float = 1e-3,
                                  gamma: float = 1e-6, average_last: int | None = None) -> list[np.ndarray]:
  """PRD (Lanctot et al. 2017): x <- Proj(x + dt x (u - x.u)) onto the gamma-exploratory simplex;
  returns the average of the last `average_last` iterates (all if None)."""
  n = len(payoffs)
  sigma = uniform(payoffs)
  keep = iterations if average_last is None else average_last
  total = [np.zeros_like(s) for s in sigma]
  for it in range(iterations):
    us = [payoff_vector(payoffs, sigma, p) for p in range(n)]
    sigma = [_project(sigma[p] + dt * sigma[p] * (us[p] - us[p] @ sigma[p]), gamma / len(sigma[p]))
             for p in range(n)]
    if it >= iterations - keep:
      for p in range(n):
        total[p] += sigma[p]
  return [t / t.sum() for t in total]


def hybrid(payoffs: Sequence[np.ndarray], iterations: int, lam: float, tau: float, mu: float, c: float,
           normalize: bool, average: bool) -> list[np.ndarray]:
  """HYB of SHOR-PSRO (Listing 6; the blend of Eq. (8)): optimistic RM+ with a diversity bonus, blended with a
  softmax over payoffs, Gauss-Seidel over players."""
  n = len(payoffs)
  sigma = uniform(payoffs)
  cum = [np.zeros_like(s) for s in sigma]
  g_prev = [np.zeros_like(s) for s in sigma]
  total = [np.zeros_like(s) for s in sigma]
  for _ in range(iterations):
    for p in range(n):
      k = len(sigma[p])
      u = payoff_vector(payoffs, sigma, p)
      g = u - u.mean()
      x = (1 + mu) * g - mu * g_prev[p] + c * (1 - sigma[p])
      scale = np.abs(x).max()
      if normalize and scale > 1e-8:
        x = x / scale
      cum[p] = np.maximum(0.0, cum[p] + x)
      s = cum[p].sum()
      orm = cum[p] / s if s > 1e-12 else np.full(k, 1.0 / k)
      soft = np.exp((u - u.max()) / tau)
      soft = soft / soft.sum() if soft.sum() > 1e-12 else np.full(k, 1.0 / k)
      sigma[p] = (1 - lam) * orm + lam * soft
      g_prev[p] = g
      if average:
        total[p] += sigma[p]
  if average:
    return [t / t.sum() for t in total]
  return sigma


class ShorTrain:
  """SHOR-PSRO's training solver (Listing 6): annealed HYB with a call counter."""

  def __init__(self):
    self.calls = 0

  def __call__(self, payoffs: Sequence[np.ndarray]) -> list[np.ndarray]:
    self.calls += 1
    size = np.shape(payoffs[0])[0]
    iterations = int(np.clip(1000 + 20 * (size - 1), 1000, 5000))
    q = min(1.0, self.calls / 75)
    lam = float(np.clip(0.30 * (1 - q) + 0.05 * q, 0.05, 0.30))
    tau = float(np.clip(0.50 * (1 - q) + 0.01 * q, 0.01, 0.50))
    c = float(np.clip(0.050 * (1 - q) + 0.001 * q, 0.001, 0.050))
    return hybrid(payoffs, iterations, lam, tau, mu=0.5, c=c, normalize=True, average=True)


def shor_eval(payoffs: Sequence[np.ndarray]) -> list[np.ndarray]:
  """SHOR-PSRO's evaluation solver (Listing 6): near-greedy HYB, last iterate."""
  size = np.shape(payoffs[0])[0]
  iterations = int(np.clip(8000 + 50 * (size - 1), 8000, 15000))
  return hybrid(payoffs, iterations, lam=0.01, tau=0.001, mu=0.2, c=0.0, normalize=True, average=False)


def make(name: str):
  """A meta-solver by name: uniform, nash, rm, prd, shor_train (fresh counter), shor_eval."""
  table = {"uniform": uniform, "nash": nash_lp, "rm": regret_matching,
           "prd": projected_replicator_dynamics, "shor_eval": shor_eval}
  if name == "shor_train":
    return ShorTrain()
  if name not in table:
    raise UsageError(f"unknown meta-solver {name!r}; choose one of {', '.join([*table, 'shor_train'])}")
  return table[name]
