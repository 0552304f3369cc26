"""Cosine-schedule DDPM with clean-sample (x0) prediction, and DDIM sampling on its steps.

The training objective of RDT, the base policy of FRAPPE (arXiv 2602.17259, Sec. 3.1, the
action loss): `a_k = sqrt(abar_k) a + sqrt(1 - abar_k) eps`, `L = ||a - f(a_k, k)||^2`.

* The schedule is Nichol & Dhariwal's cosine schedule (arXiv 2102.09672, Eq. 17):
  `abar(t) = f(t) / f(0)`, `f(t) = cos^2((t / K + s) / (1 + s) pi / 2)`, with
  `beta_t = min(1 - abar_t / abar_{t-1}, 0.999)` and `abar_t = prod_{j <= t} (1 - beta_j)`.
  Here steps are indexed `k = t - 1 in [0, K)`, k = 0 the least noisy.
* Sampling is DDIM (Song et al., arXiv 2010.02502, Eq. 12, eta = 0) on `steps` evenly spaced DDPM
  steps: the log-SNR of each chosen step feeds `jaxpapers.diffusion.ddim.vp_sample` (the Unified
  Latents sampler, reused), the last call returning the network's x0 at k = 0. One network call
  per step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.diffusion.ddim import vp_sample

X0Predictor = Callable[[jax.Array, jax.Array], jax.Array]
"""`predict(x_k, k) -> x0_hat`, with `k` a float array [B] of DDPM steps (fractional in DDIM)."""


@dataclasses.dataclass(frozen=True)
class CosineSchedule:
  """The cosine DDPM schedule over `steps` training steps.

  Attributes:
    steps: K, the number of DDPM steps.
    offset: s of arXiv 2102.09672, Eq. 17.
    max_beta: the clip of beta_t.
  """

  steps: int = 50
  offset: float = 0.008
  max_beta: float = 0.999

  def __post_init__(self):
    if self.steps < 2:
      raise ValueError(f"CosineSchedule: steps={self.steps} must be >= 2")

  @property
  def alphas_bar(self) -> np.ndarray:
    """abar_k for k = 0 .. K-1 (float64 on the host)."""
    t = np.arange(self.steps + 1, dtype=np.float64) / self.steps
    f = np.cos((t + self.offset) / (1 + self.offset) * math.pi / 2) ** 2
    betas = np.minimum(1 - f[1:] / f[:-1], self.max_beta)
    return np.cumprod(1 - betas)

  @property
  def log_snrs(self) -> np.ndarray:
    """lambda_k = log(abar_k / (1 - abar_k)), decreasing in k."""
    ab = self.alphas_bar
    return np.log(ab) - np.log1p(-ab)

  def coefficients(self, k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sqrt(abar_k), sqrt(1 - abar_k)) at integer steps `k`."""
    ab = jnp.asarray(self.alphas_bar, jnp.float32)[k]
    return jnp.sqrt(ab), jnp.sqrt(1 - ab)

  def step_of(self, log_snr: jax.Array) -> jax.Array:
    """The (fractional) step k of a log-SNR, interpolating the table."""
    return jnp.interp(-log_snr, jnp.asarray(-self.log_snrs, jnp.float32),
                      jnp.arange(self.steps, dtype=jnp.float32))


def _b(x: jax.Array, ndim: int) -> jax.Array:
  return x.reshape((-1,) + (1,) * (ndim - 1))


def q_sample(schedule: CosineSchedule, x0: jax.Array, noise: jax.Array, k: jax.Array) -> jax.Array:
  """`sqrt(abar_k) x0 + sqrt(1 - abar_k) noise` for integer steps `k` [B]."""
  a, s = schedule.coefficients(k)
  return _b(a, x0.ndim) * x0 + _b(s, x0.ndim) * noise


def sample_steps(key: jax.Array, batch: int, schedule: CosineSchedule) -> jax.Array:
  """Training steps k ~ U{0, ..., K-1} [batch]."""
  return jax.random.randint(key, (batch,), 0, schedule.steps)


def x0_loss(x0: jax.Array, x0_hat: jax.Array, weight: jax.Array | None = None) -> jax.Array:
  """The x0-prediction MSE (RDT's action loss), mean over elements, per-example `weight` [B]."""
  per_example = jnp.mean(jnp.square(x0_hat - x0).reshape(x0.shape[0], -1), axis=-1)
  if weight is None:
    return jnp.mean(per_example)
  return jnp.sum(per_example * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def ddim_steps(schedule: CosineSchedule, steps: int) -> np.ndarray:
  """`steps` DDPM steps evenly spaced from K-1 down to 0 (integers, descending)."""
  if not 1 <= steps <= schedule.steps:
    raise ValueError(f"ddim_steps: steps={steps} must be in [1, {schedule.steps}]")
  return np.round(np.linspace(schedule.steps - 1, 0, steps)).astype(np.int32)


def ddim_sample(predict: X0Predictor, noise: jax.Array, schedule: CosineSchedule,
                steps: int) -> jax.Array:
  """DDIM (eta = 0) from `noise` at step K-1 with `steps` network calls; returns x0.

  Args:
    predict: `predict(x_k, k) -> x0_hat` (k float [B]).
    noise: N(0, I) draws, the state at step K-1.
    schedule: the training schedule.
    steps: network calls (the last one's x0 at step 0 is returned).
  """
  lambdas = jnp.asarray(schedule.log_snrs[ddim_steps(schedule, steps)], jnp.float32)
  fn = lambda z, lam: predict(z, schedule.step_of(lam))  # noqa: E731
  if steps == 1:
    return fn(noise, jnp.full((noise.shape[0],), lambdas[0]))
  return vp_sample(fn, noise, lambdas, method="ddim", parameterization="x", denoise=True)
