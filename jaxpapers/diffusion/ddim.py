"""Deterministic samplers of variance-preserving diffusion models on a log-SNR grid.

`z_lam = alpha x + sigma eps` with `alpha^2 = sigmoid(lam)`, `sigma^2 = sigmoid(-lam)`. A
predictor `predict(z, lam) -> v | eps | x` gives `(x_hat, eps_hat)`
(`jaxpapers.diffusion.unified_latents.to_x_eps`). Two first-order solvers of the probability-flow
ODE, which in log-SNR reads `dz/dlam = -1/2 alpha sigma v_hat`:

* "ddim" (Song et al., arXiv 2010.02502, Eq. (12) with eta = 0): `z <- alpha_next x_hat +
  sigma_next eps_hat`, exact when x_hat is constant over the step;
* "euler": `z <- z - 1/2 (lam_next - lam) alpha sigma v_hat`.

Used by Unified Latents (arXiv 2602.17270, Sec. 3) for the decoder (noise to pixels, given the
noisy latent z_0) and for the base model, which stops at the encoder's log-SNR lambda_0 and
hands the *noisy* state to the decoder (`denoise=False`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.diffusion.unified_latents import Predictor, alpha_sigma, to_x_eps

METHODS = ("ddim", "euler")


def lambda_grid(lambda_start: float, lambda_end: float, steps: int) -> jax.Array:
  """`steps + 1` log-SNRs, linear from `lambda_start` (noisiest) to `lambda_end`."""
  if steps < 1:
    raise ValueError(f"lambda_grid: steps={steps} must be >= 1")
  return jnp.linspace(lambda_start, lambda_end, steps + 1, dtype=jnp.float32)


def vp_sample(predict: Predictor, z_start: jax.Array, lambdas: jax.Array, method: str = "ddim",
              parameterization: str = "v", denoise: bool = True) -> jax.Array:
  """Integrates the probability-flow ODE from `lambdas[0]` to `lambdas[-1]`.

  Args:
    predict: `predict(z, lam [B]) -> prediction`.
    z_start: the state at `lambdas[0]` (e.g. N(0, I) draws at the lowest log-SNR).
    lambdas: increasing log-SNR grid [steps + 1].
    method: "ddim" or "euler".
    parameterization: what `predict` returns ("v", "eps", "x").
    denoise: return the model's x_hat at `lambdas[-1]` (one more evaluation); otherwise the
      state z at `lambdas[-1]`.
  """
  if method not in METHODS:
    raise ValueError(f"unknown sampler {method!r}; choose one of {', '.join(METHODS)}")
  batch = z_start.shape[0]

  def step(z, lams):
    lam, lam_next = lams
    lam_b = jnp.full((batch,), lam)
    x_hat, eps_hat = to_x_eps(z, predict(z, lam_b), lam_b, parameterization)
    if method == "ddim":
      a, s = alpha_sigma(lam_next)
      return a * x_hat + s * eps_hat, None
    a, s = alpha_sigma(lam)
    v_hat = a * eps_hat - s * x_hat
    return z - 0.5 * (lam_next - lam) * a * s * v_hat, None

  z, _ = jax.lax.scan(step, z_start, (lambdas[:-1], lambdas[1:]))
  if not denoise:
    return z
  lam_b = jnp.full((batch,), lambdas[-1])
  return to_x_eps(z, predict(z, lam_b), lam_b, parameterization)[0]
