"""The loss law: training loss as a fitted function of the architecture (pluggable).

"Hardware Co-Design Scaling Laws via Roofline Modelling for On-Device LLMs" (Sun et al., arXiv
2602.10377, section 3) fits the loss of trained candidates, at a fixed token budget, as an
explicit function of the architecture's hyper-parameters (R^2 0.975 fit / 0.952 validation).
Its formula and coefficients were not available to us; the coefficients here are always ours,
fitted to our own runs. A `LossLaw` is a function `fn(features, theta)` of named features
(`features(arch)`: active and total parameters, d, l, ...) with bounds and starting points;
`fit` minimizes the Huber loss of log-loss residuals with `scipy.optimize.least_squares` from
each starting point (Chinchilla-style fitting, Hoffmann et al. arXiv 2203.15556, section D.2)
and keeps the best.

Laws provided:
  REDUCED: L = E + A (N_active / 1e6)^-a + B (N_total / N_active)^-b   (b > 0: more experts
           at fixed active size lower the loss)
  ASPECT:  REDUCED + C log(d / (w l))^2                (a bowl in the width/depth aspect ratio)
  `power_law(names)`: E + sum_i A_i (x_i / scale_i)^-a_i over any features.
N counts exclude the embedding and head by default (Kaplan et al., arXiv 2001.08361, section
2.1), since at our tiny sizes the vocabulary would dominate them.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy import optimize

from jaxpapers.roofline.arch import Arch, param_counts

Features = Mapping[str, np.ndarray]
_TINY = 1e-12


def features(a: Arch, *, embedding: bool = False) -> dict[str, np.ndarray]:
  """The law's inputs: `n_active`, `n_total` (non-embedding unless `embedding`), `d`, `l`,
  `g` (GQA group), `rho` (K / E) and `experts`."""
  counts = param_counts(a)
  n_active = counts.active if embedding else counts.non_embedding_active
  n_total = counts.total if embedding else counts.non_embedding_total
  return {"n_active": np.asarray(n_active, float), "n_total": np.asarray(n_total, float),
          "d": np.asarray(a.d_model, float), "l": np.asarray(a.num_layers, float),
          "g": np.asarray(a.group, float), "rho": np.asarray(a.sparsity, float),
          "experts": np.asarray(a.num_experts, float)}


@dataclasses.dataclass(frozen=True)
class LossLaw:
  """A parametric loss law.

  Attributes:
    name: a label.
    params: parameter names, in the order of `theta`.
    fn: `(features, theta) -> predicted loss`.
    lower, upper: bounds of each parameter.
    starts: starting points of the fit (each a full `theta`).
  """

  name: str
  params: tuple[str, ...]
  fn: Callable[[Features, np.ndarray], np.ndarray]
  lower: tuple[float, ...]
  upper: tuple[float, ...]
  starts: tuple[tuple[float, ...], ...]

  def __call__(self, x: Features, theta: np.ndarray) -> np.ndarray:
    return self.fn(x, np.asarray(theta, float))


def _reduced(x: Features, t: np.ndarray) -> np.ndarray:
  e, a_coef, a, b_coef, b = t[:5]
  ratio = np.maximum(x["n_total"] / x["n_active"], 1.0)
  return e + a_coef * (x["n_active"] / 1e6) ** -a + b_coef * ratio ** -b


def _aspect(x: Features, t: np.ndarray) -> np.ndarray:
  c, log_w = t[5:7]
  return _reduced(x, t) + c * (np.log(x["d"] / x["l"]) - log_w) ** 2


_REDUCED_STARTS = tuple(itertools.product((0.5, 1.0), (0.5,), (0.3, 1.0), (0.3,), (0.2, 1.0)))

REDUCED = LossLaw("reduced", ("E", "A", "a", "B", "b"), _reduced,
                  lower=(0.0, 0.0, 0.0, 0.0, -3.0), upper=(20.0, 50.0, 3.0, 50.0, 5.0),
                  starts=_REDUCED_STARTS)
ASPECT = LossLaw("aspect", REDUCED.params + ("C", "log_w"), _aspect,
                 lower=REDUCED.lower + (0.0, -5.0), upper=REDUCED.upper + (10.0, 12.0),
                 starts=tuple(s + (0.01, w) for s in _REDUCED_STARTS for w in (2.0, 4.0)))


def power_law(names: Sequence[str], scales: Sequence[float] | None = None) -> LossLaw:
  """E + sum_i A_i (x_i / scale_i)^-a_i over the features `names` (a generic additive family)."""
  names = tuple(names)
  scales = tuple(scales or (1.0,) * len(names))

  def fn(x: Features, t: np.ndarray) -> np.ndarray:
    out = t[0]
    for i, (name, scale) in enumerate(zip(names, scales)):
      out = out + t[1 + 2 * i] * (x[name] / scale) ** -t[2 + 2 * i]
    return out

  params = ("E",) + tuple(p for n in names for p in (f"A_{n}", f"a_{n}"))
  lower = (0.0,) + (0.0, -3.0) * len(names)
  upper = (20.0,) + (50.0, 5.0) * len(names)
  starts = tuple((e,) + tuple(v for _ in names for v in (1.0, a))
                 for e in (0.5, 1.0) for a in (0.2, 0.5))
  return LossLaw("power_law(" + ",".join(names) + ")", params, fn, lower, upper, starts)


LAWS = {"reduced": REDUCED, "aspect": ASPECT}


class Fit(NamedTuple):
  """A fitted law.

  Attributes:
    law: the law.
    theta: fitted parameters.
    cost: the final robust cost (of log residuals).
    r2: R^2 of the fit on its own data (in loss, not log loss).
  """

  law: LossLaw
  theta: np.ndarray
  cost: float
  r2: float

  def predict(self, x: Features) -> np.ndarray:
    return self.law(x, self.theta)

  def as_dict(self) -> dict[str, float]:
    return dict(zip(self.law.params, map(float, self.theta)))


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> float:
  """1 - SS_res / SS_tot."""
  observed, predicted = np.asarray(observed, float), np.asarray(predicted, float)
  ss_tot = np.sum((observed - observed.mean()) ** 2)
  return float(1 - np.sum((observed - predicted) ** 2) / max(ss_tot, _TINY))


def fit(law: LossLaw, x: Features, loss: np.ndarray, *, huber_delta: float = 1e-2) -> Fit:
  """Fits `law` to observed losses: Huber loss (`huber_delta`, in log-loss units) of
  `log(predicted) - log(observed)`, trust-region reflective within the bounds, from every
  starting point; the lowest cost wins.

  Raises:
    ValueError: fewer observations than parameters.
  """
  loss = np.asarray(loss, float)
  if loss.size < len(law.params):
    raise ValueError(f"{law.name} has {len(law.params)} parameters; got only {loss.size} losses")
  log_obs = np.log(loss)

  def residuals(theta):
    return np.log(np.maximum(law(x, theta), _TINY)) - log_obs

  best = None
  lower, upper = np.asarray(law.lower), np.asarray(law.upper)
  for start in law.starts:
    start = np.clip(np.asarray(start, float), lower, upper)
    result = optimize.least_squares(residuals, start, bounds=(lower, upper), loss="huber",
                                    f_scale=huber_delta, method="trf", max_nfev=2000)
    if best is None or result.cost < best.cost:
      best = result
  theta = best.x
  return Fit(law, theta, float(best.cost), r_squared(loss, law(x, theta)))


def split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(fit indices, held-out indices): `round(holdout n)` of `range(n)` held out, seeded."""
  if not 0 <= holdout < 1:
    raise ValueError(f"holdout must be in [0, 1), got {holdout}")
  order = np.random.default_rng(seed).permutation(n)
  k = int(round(holdout * n))
  return np.sort(order[k:]), np.sort(order[:k])
