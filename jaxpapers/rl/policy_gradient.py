"""Policy-gradient losses on a policy's logits: REINFORCE with a baseline, and PPO's clipped loss.

Any policy that returns logits over a discrete action set fits: `logits [..., T, A]` score the
taken `actions [..., T]` (one row per episode or sequence, `T` decisions), `mask [..., T]` marks
the decisions that were taken (1) and the turns after the episode ended (0).

* REINFORCE (Williams 1992, "Simple statistical gradient-following algorithms", Eq. 11) with a
  baseline: the gradient of `-E[(R - b) sum_t log pi(a_t | s_t)]` is an unbiased estimate of the
  negated policy gradient for any `b` that does not depend on the actions; `mean_baseline`
  gives the batch-mean baseline (Calibrate-Then-Act, arXiv 2602.16699, trains its small
  policies this way in our reproduction).
* PPO (Schulman et al. 2017, arXiv 1707.06347, Eq. 7): the clipped surrogate
  `min(r A, clip(r, 1 - eps, 1 + eps) A)` with `r = pi / pi_old`.

Both reduce over the masked decisions either per sequence (sum over `T`, mean over sequences:
the REINFORCE estimator) or per token (mean over every masked decision, the GRPO/DAPO form).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxpapers.rl.logprob import token_logprobs

REDUCTIONS = ("sequence", "token")


def entropy(logits: jax.Array) -> jax.Array:
  """Entropy of the softmax policy at every decision [...] (float32)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -(jnp.exp(logp) * logp).sum(-1)


def mean_baseline(returns: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Advantages `R - mean(R)` over the (masked) batch [...] (no gradient flows into the mean)."""
  returns = jnp.asarray(returns, jnp.float32)
  if mask is None:
    return returns - jax.lax.stop_gradient(returns.mean())
  mask = mask.astype(jnp.float32)
  mean = (returns * mask).sum() / jnp.maximum(mask.sum(), 1.0)
  return returns - jax.lax.stop_gradient(mean)


def _reduce(values: jax.Array, mask: jax.Array, reduction: str) -> jax.Array:
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction={reduction!r}; choose one of {', '.join(REDUCTIONS)}")
  values = values * mask
  if reduction == "token":
    return values.sum() / jnp.maximum(mask.sum(), 1.0)
  sequences = values.reshape(-1, values.shape[-1]).shape[0]
  return values.sum() / sequences


def _broadcast_advantages(advantages: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  adv = advantages if advantages.ndim == len(shape) else advantages[..., None]
  return jax.lax.stop_gradient(jnp.broadcast_to(adv, shape).astype(jnp.float32))


def reinforce_loss(logits: jax.Array, actions: jax.Array, advantages: jax.Array,
                   mask: jax.Array | None = None, entropy_coef: float = 0.0,
                   reduction: str = "sequence") -> tuple[jax.Array, dict[str, jax.Array]]:
  """The REINFORCE loss `-(A * log pi(a) + entropy_coef * H)` over the masked decisions.

  Args:
    logits: `[..., T, A]` policy logits at each decision (differentiated).
    actions: `[..., T]` the actions taken (any value where `mask` is 0).
    advantages: `[...]` per-sequence advantages (e.g. `mean_baseline(returns)`) or `[..., T]`
      per decision; treated as constants.
    mask: `[..., T]` 1 on the decisions taken (None: all).
    entropy_coef: weight of the entropy bonus.
    reduction: "sequence" (sum over T, mean over sequences) or "token" (mean over decisions).

  Returns:
    (loss, metrics): metrics {"entropy": mean entropy per decision, "logp": mean log-prob}.
  """
  mask = (jnp.ones(actions.shape) if mask is None else mask).astype(jnp.float32)
  safe_actions = jnp.where(mask > 0, actions, 0)
  logp = token_logprobs(logits, safe_actions)
  ent = entropy(logits)
  adv = _broadcast_advantages(advantages, logp.shape)
  loss = -_reduce(adv * logp + entropy_coef * ent, mask, reduction)
  decisions = jnp.maximum(mask.sum(), 1.0)
  return loss, {"entropy": jax.lax.stop_gradient((ent * mask).sum() / decisions),
                "logp": jax.lax.stop_gradient((logp * mask).sum() / decisions)}


def ppo_loss(logits: jax.Array, actions: jax.Array, logp_old: jax.Array, advantages: jax.Array,
             mask: jax.Array | None = None, clip_eps: float = 0.2, entropy_coef: float = 0.0,
             reduction: str = "token") -> tuple[jax.Array, dict[str, jax.Array]]:
  """PPO's clipped surrogate loss (arXiv 1707.06347, Eq. 7) on logits, with an entropy bonus.

  Args:
    logits: `[..., T, A]` current policy logits (differentiated).
    actions: `[..., T]` the actions taken by the behaviour policy.
    logp_old: `[..., T]` the behaviour policy's log-probs of `actions` (constants).
    advantages: `[...]` or `[..., T]` advantages (constants).
    mask: `[..., T]` 1 on the decisions taken (None: all).
    clip_eps: the ratio's clip range.
    entropy_coef: weight of the entropy bonus.
    reduction: "token" (PPO's mean over decisions) or "sequence".

  Returns:
    (loss, metrics): metrics {"clip_fraction", "ratio", "entropy"} over the masked decisions.
  """
  mask = (jnp.ones(actions.shape) if mask is None else mask).astype(jnp.float32)
  logp = token_logprobs(logits, jnp.where(mask > 0, actions, 0))
  adv = _broadcast_advantages(advantages, logp.shape)
  ratio = jnp.exp(logp - jax.lax.stop_gradient(logp_old))
  surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
  ent = entropy(logits)
  loss = -_reduce(surrogate + entropy_coef * ent, mask, reduction)
  decisions = jnp.maximum(mask.sum(), 1.0)
  clipped = ((ratio > 1.0 + clip_eps) & (adv > 0)) | ((ratio < 1.0 - clip_eps) & (adv < 0))
  return loss, {"clip_fraction": (clipped * mask).sum() / decisions,
                "ratio": jax.lax.stop_gradient((ratio * mask).sum() / decisions),
                "entropy": jax.lax.stop_gradient((ent * mask).sum() / decisions)}
