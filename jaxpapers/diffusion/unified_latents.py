"""Unified Latents (UL, Heek, Hoogeboom, Mensink and Salimans, arXiv 2602.17270): the losses.

UL trains an encoder E, a diffusion prior P over latents and a diffusion decoder D jointly. All
processes are variance preserving with log-SNR lambda: `alpha^2 = sigmoid(lambda)`,
`sigma^2 = sigmoid(-lambda)`, `z_lambda = alpha z + sigma eps`.

* Encoder noise (paper Sec. 3, "linking the encoder noise to the prior"): the encoder output is
  noised to a *fixed* log-SNR lambda_0 = 5, `z_0 = alpha_0 E(x) + sigma_0 eps`, and lambda_0 is
  also the prior's largest log-SNR, so the KL term of the VAE bound is exactly the prior's
  diffusion loss over t in [0, 1] plus a terminal KL: no entropy estimate, no learned variance.
  `encoder_noise`, `noisy_latent`.
* Prior loss = latent bitrate bound (the unweighted continuous-time ELBO of VDM, Kingma et al.,
  arXiv 2107.00630, Eq. (17), with the terminal KL):
  `L_z = E_t[ 1/2 (-dlambda/dt) ||eps - eps_hat||^2 ] + KL(q(z_1 | z_clean) || N(0, I))`
  in nats per example, summed over the latent's elements. `prior_loss`, `terminal_kl`.
* Decoder loss (the reconstruction term): `c_lf * E_t[ 1/2 (-dlambda/dt) w(lambda)
  ||eps - eps_hat||^2 ]` with the sigmoid weight `w(lambda) = sigmoid(b - lambda)` (Kingma & Gao,
  arXiv 2303.00848, VDM++, Sec. 4; in x-form `e^lambda sigmoid(b - lambda) ||x - x_hat||^2 =
  e^b sigmoid(lambda - b) ||x - x_hat||^2`). `decoder_loss`, `sigmoid_weight`.

  The paper's secondary sources write "sigmoid(lambda - b)". On ||x - x_hat||^2 without an
  explicit e^lambda that is our weight up to the constant e^b; read as a weight on the ELBO
  (multiplying e^lambda) it would flip which noise levels are discounted. `SIGN_CONVENTIONS`
  names both: "discount_low_noise" (default: w -> 1 as lambda -> -inf, w -> 0 as lambda -> +inf,
  so fine detail is left to the decoder) and "discount_high_noise" (w = sigmoid(lambda - b) on
  the ELBO), kept as an option and pinned by the limit tests.
* v-prediction (Salimans & Ho, arXiv 2202.00512, Sec. 4): networks predict
  `v = alpha eps - sigma z`; `x_hat = alpha z_t - sigma v`, `eps_hat = sigma z_t + alpha v`.
* Antithetic stratified times (VDM's low-discrepancy sampler, arXiv 2107.00630, App. I.1, with
  the second half of the batch mirrored `t -> 1 - t`). `stratified_times`.
* The stage-2 base model (paper Sec. 3.3) is trained on `z_clean` targets with the sigmoid
  weight and sampled only up to lambda_0: `base_loss`.

A predictor is a callable `predict(z_t, lam) -> prediction` (lam [B]); `parameterization` says
whether it returns v, eps or x ("v", "eps", "x"). Losses return per-example values [B].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

Predictor = Callable[[jax.Array, jax.Array], jax.Array]
PARAMETERIZATIONS = ("v", "eps", "x")
SIGN_CONVENTIONS = ("discount_low_noise", "discount_high_noise")
LAMBDA_0 = 5.0  # the encoder's fixed output log-SNR = the prior's largest log-SNR (paper Sec. 3)


@dataclasses.dataclass(frozen=True)
class LinearLogSNR:
  """A log-SNR schedule linear in t: `lambda(t) = lambda_max - (lambda_max - lambda_min) t`.

  t = 0 is the least noisy end (lambda_max), t = 1 the noisiest (lambda_min).
  """

  lambda_max: float
  lambda_min: float

  def __post_init__(self):
    if not self.lambda_max > self.lambda_min:
      raise ValueError(f"LinearLogSNR: lambda_max={self.lambda_max} must exceed "
                       f"lambda_min={self.lambda_min}")

  def __call__(self, t: jax.Array) -> jax.Array:
    return self.lambda_max - (self.lambda_max - self.lambda_min) * t

  def neg_dlambda_dt(self, t: jax.Array) -> jax.Array:
    """-dlambda/dt (a constant for this schedule), shaped like t."""
    return jnp.full_like(t, self.lambda_max - self.lambda_min, dtype=jnp.float32)


def alpha_sigma(lam: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(alpha, sigma) of a variance-preserving process at log-SNR lam: sqrt(sigmoid(+-lam))."""
  return jnp.sqrt(jax.nn.sigmoid(lam)), jnp.sqrt(jax.nn.sigmoid(-lam))


def encoder_noise(lambda_0: float = LAMBDA_0) -> tuple[float, float]:
  """(alpha_0, sigma_0) of the encoder's fixed output noise (lambda_0 = 5: 0.9966, 0.08198)."""
  return (math.sqrt(1 / (1 + math.exp(-lambda_0))), math.sqrt(1 / (1 + math.exp(lambda_0))))


def _b(x: jax.Array, ndim: int) -> jax.Array:
  """[B] -> [B, 1, ..., 1] with `ndim` dims."""
  return x.reshape((-1,) + (1,) * (ndim - 1))


def _sum(x: jax.Array) -> jax.Array:
  """Sum over all but the batch axis, in float32."""
  return jnp.sum(x.astype(jnp.float32), axis=tuple(range(1, x.ndim)))


def noisy_latent(z_clean: jax.Array, noise: jax.Array, lambda_0: float = LAMBDA_0) -> jax.Array:
  """`z_0 = alpha_0 z_clean + sigma_0 eps`, the encoder's noisy latent (paper Sec. 3)."""
  a0, s0 = encoder_noise(lambda_0)
  return a0 * z_clean + s0 * noise


def diffuse(x: jax.Array, noise: jax.Array, lam: jax.Array) -> jax.Array:
  """`z_lam = alpha(lam) x + sigma(lam) eps`, lam [B]."""
  a, s = alpha_sigma(_b(lam, x.ndim))
  return a * x + s * noise


def v_target(x: jax.Array, noise: jax.Array, lam: jax.Array) -> jax.Array:
  """`v = alpha eps - sigma x` (v-prediction target)."""
  a, s = alpha_sigma(_b(lam, x.ndim))
  return a * noise - s * x


def to_x_eps(z_t: jax.Array, prediction: jax.Array, lam: jax.Array,
             parameterization: str = "v") -> tuple[jax.Array, jax.Array]:
  """(x_hat, eps_hat) from a network's prediction, tied by `z_t = alpha x_hat + sigma eps_hat`."""
  a, s = alpha_sigma(_b(lam, z_t.ndim))
  if parameterization == "v":
    return a * z_t - s * prediction, s * z_t + a * prediction
  if parameterization == "eps":
    return (z_t - s * prediction) / a, prediction
  if parameterization == "x":
    return prediction, (z_t - a * prediction) / s
  raise ValueError(f"unknown parameterization {parameterization!r}; choose one of "
                   f"{', '.join(PARAMETERIZATIONS)}")


def stratified_times(rng: jax.Array, batch: int, antithetic: bool = True) -> jax.Array:
  """Training times in [0, 1), one per example, stratified within the batch.

  VDM's low-discrepancy sampler (arXiv 2107.00630, App. I.1): `t_i = (u + i / n) mod 1` for one
  uniform u. With `antithetic`, the first ceil(B / 2) times are stratified that way and the
  rest are their mirror images `1 - t_i`.
  """
  if batch < 1:
    raise ValueError(f"stratified_times: batch={batch} must be >= 1")
  n = (batch + 1) // 2 if antithetic else batch
  u = jax.random.uniform(rng, ())
  t = jnp.mod(u + jnp.arange(n, dtype=jnp.float32) / n, 1.0)
  if antithetic:
    t = jnp.concatenate([t, 1.0 - t[:batch - n]])
  return t


def sigmoid_weight(lam: jax.Array, bias: float, convention: str = "discount_low_noise") -> jax.Array:
  """The decoder's weight on the epsilon-form ELBO integrand.

  "discount_low_noise" (default, VDM++ / SiD2's convention): `sigmoid(b - lam)`, 1 at high
  noise, 0 at low noise. "discount_high_noise": `sigmoid(lam - b)`, the literal reading of the
  secondary sources as a weight on the ELBO. `bias=inf` gives w = 1 (the ELBO) in the default
  convention.
  """
  if convention == "discount_low_noise":
    return jax.nn.sigmoid(bias - lam)
  if convention == "discount_high_noise":
    return jax.nn.sigmoid(lam - bias)
  raise ValueError(f"unknown weight convention {convention!r}; choose one of "
                   f"{', '.join(SIGN_CONVENTIONS)}")


def eps_form_loss(noise: jax.Array, eps_hat: jax.Array, neg_dlambda_dt: jax.Array,
                  weight: jax.Array | float = 1.0) -> jax.Array:
  """`1/2 (-dlambda/dt) w ||eps - eps_hat||^2` per example (sum over elements), [B]."""
  return 0.5 * neg_dlambda_dt * weight * _sum(jnp.square(noise - eps_hat))


def x_form_loss(x: jax.Array, x_hat: jax.Array, lam: jax.Array, neg_dlambda_dt: jax.Array,
                weight: jax.Array | float = 1.0) -> jax.Array:
  """`1/2 (-dlambda/dt) w e^lambda ||x - x_hat||^2` per example, [B] (equal to the epsilon form)."""
  return 0.5 * neg_dlambda_dt * weight * jnp.exp(lam) * _sum(jnp.square(x - x_hat))


def terminal_kl(z_clean: jax.Array, lambda_1: float | jax.Array) -> jax.Array:
  """`KL(N(alpha_1 z, sigma_1^2 I) || N(0, I))` per example, [B], in nats.

  `1/2 sum(alpha_1^2 z^2 + sigma_1^2 - 1 - log sigma_1^2)`.
  """
  lam = jnp.asarray(lambda_1, jnp.float32)
  a2, s2 = jax.nn.sigmoid(lam), jax.nn.sigmoid(-lam)
  return 0.5 * _sum(a2 * jnp.square(z_clean) + s2 - 1.0 - jnp.log(s2))


def _weighted(predict: Predictor, x: jax.Array, t: jax.Array, noise: jax.Array,
              schedule: LinearLogSNR, weight_fn: Callable[[jax.Array], jax.Array] | None,
              parameterization: str) -> jax.Array:
  lam = schedule(t)
  x_t = diffuse(x, noise, lam)
  _, eps_hat = to_x_eps(x_t, predict(x_t, lam), lam, parameterization)
  weight = 1.0 if weight_fn is None else weight_fn(lam)
  return eps_form_loss(noise, eps_hat, schedule.neg_dlambda_dt(t), weight)


def prior_loss(predict: Predictor, z_clean: jax.Array, t: jax.Array, noise: jax.Array,
               schedule: LinearLogSNR, parameterization: str = "v",
               include_kl: bool = True) -> jax.Array:
  """The latent bitrate bound L_z in nats per example, [B] (paper Sec. 3; VDM Eq. (17)).

  One Monte Carlo sample of `1/2 (-dlambda/dt) ||eps - eps_hat(z_t, lambda)||^2` at
  `z_t = alpha(lambda(t)) z_clean + sigma(lambda(t)) eps`, unweighted (w = 1: any re-weighting
  would let the encoder hide information at discounted levels), plus the terminal KL at
  lambda(1). `schedule.lambda_max` must be the encoder's lambda_0. Bits per image: L_z / ln 2.
  """
  loss = _weighted(predict, z_clean, t, noise, schedule, None, parameterization)
  if include_kl:
    loss = loss + terminal_kl(z_clean, schedule.lambda_min)
  return loss


def decoder_loss(predict: Predictor, x: jax.Array, t: jax.Array, noise: jax.Array,
                 schedule: LinearLogSNR, loss_factor: float = 1.5, bias: float = 0.0,
                 convention: str = "discount_low_noise", parameterization: str = "v") -> jax.Array:
  """UL's decoder loss `c_lf E_t[1/2 (-dlambda/dt) w(lambda) ||eps - eps_hat||^2]`, [B].

  `predict(x_t, lam)` is the decoder with its conditioning (the noisy latent z_0) closed over.
  `loss_factor` (c_lf > 1 prevents posterior collapse) and `bias` (b of the sigmoid weight) are
  the paper's two bitrate knobs.
  """
  return loss_factor * _weighted(predict, x, t, noise, schedule,
                                 lambda lam: sigmoid_weight(lam, bias, convention),
                                 parameterization)


def base_loss(predict: Predictor, z_clean: jax.Array, t: jax.Array, noise: jax.Array,
              schedule: LinearLogSNR, bias: float = -2.0,
              convention: str = "discount_low_noise", parameterization: str = "v") -> jax.Array:
  """The stage-2 base model's sigmoid-weighted ELBO on `z_clean` targets (paper Sec. 3.3), [B]."""
  return _weighted(predict, z_clean, t, noise, schedule,
                   lambda lam: sigmoid_weight(lam, bias, convention), parameterization)


def gaussian_information(dim: int, scale: float, lambda_0: float = LAMBDA_0) -> float:
  """`I(z_clean; z_0) = 1/2 d log(1 + s^2 e^lambda_0)` nats for z_clean ~ N(0, s^2 I_d).

  The value L_z takes with the exact MMSE denoiser (and a terminal log-SNR low enough), the
  analytic check of the bitrate bound.
  """
  return 0.5 * dim * math.log1p(scale ** 2 * math.exp(lambda_0))


def gaussian_mmse_x(scale: float) -> Predictor:
  """The exact MMSE denoiser `x_hat = alpha s^2 / (alpha^2 s^2 + sigma^2) z_t` of N(0, s^2 I)."""
  def predict(z_t: jax.Array, lam: jax.Array) -> jax.Array:
    a, s = alpha_sigma(_b(lam, z_t.ndim))
    return a * scale ** 2 / (a ** 2 * scale ** 2 + s ** 2) * z_t
  return predict
