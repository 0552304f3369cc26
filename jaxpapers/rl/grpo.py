"""Group-relative policy optimization (GRPO): group advantages and the clipped token loss.

Shao et al., "DeepSeekMath" (arXiv 2402.03300, Sec. 4.1, Eq. 3): for a group of G outputs of one
prompt with outcome rewards R_i, the advantage of every token of output i is
A_i = (R_i - mean_j R_j) / std_j R_j, and

  J = (1 / sum_i |o_i|) sum_i sum_t [min(rho_it A_i, clip(rho_it, 1 - eps, 1 + eps) A_i)
                                     - beta KL_it(pi_theta || pi_ref)]

with rho_it = pi_theta(o_it | ...) / pi_old(o_it | ...). The normalization by the total token
count (rather than per sequence, then per group) is DAPO's token-level form (arXiv 2503.14476,
Eq. 8) and the one of MRPO's objective as the Mobile-Agent-v3.5 spec gives it (GUI-Owl-1.5,
arXiv 2602.16855, Sec. 4). The KL term uses DeepSeekMath's unbiased "k3" estimator (Eq. 4):
pi_ref / pi_theta - log(pi_ref / pi_theta) - 1 >= 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

KL_ESTIMATORS = ("k3", "k1")


def group_advantages(rewards: jax.Array, eps: float = 1e-6) -> tuple[jax.Array, jax.Array]:
  """Per-group standardized rewards (arXiv 2402.03300, Sec. 4.1.2, outcome supervision).

  Args:
    rewards: `[groups, G]` outcome rewards of the G rollouts of each group.
    eps: added to the (population) standard deviation.

  Returns:
    (advantages `[groups, G]`, collapsed `[groups]`): `(R - mean) / (std + eps)` per group, and
    zeros with `collapsed=True` where every reward of the group is equal (a group whose
    advantage vanishes: it gives the optimizer no signal).
  """
  rewards = jnp.asarray(rewards, jnp.float32)
  mean = rewards.mean(-1, keepdims=True)
  std = rewards.std(-1, keepdims=True)
  collapsed = jnp.all(rewards == rewards[..., :1], axis=-1)
  adv = jnp.where(collapsed[..., None], 0.0, (rewards - mean) / (std + eps))
  return adv, collapsed


def kl_k3(logp: jax.Array, logp_ref: jax.Array) -> jax.Array:
  """Per-token k3 estimate of KL(pi_theta || pi_ref) (arXiv 2402.03300, Eq. 4).

  `exp(logp_ref - logp) - (logp_ref - logp) - 1`, evaluated on tokens sampled from the policy:
  unbiased for the KL and never negative.
  """
  d = logp_ref - logp
  return jnp.exp(d) - d - 1.0


def grpo_loss(logp_new: jax.Array, logp_old: jax.Array, advantages: jax.Array, mask: jax.Array,
              clip_eps: float = 0.2, kl_coef: float = 0.0, logp_ref: jax.Array | None = None,
              kl_estimator: str = "k3") -> tuple[jax.Array, dict[str, jax.Array]]:
  """The negated GRPO objective, normalized by the token count (arXiv 2402.03300, Eq. 3).

  Args:
    logp_new: `[N, T]` log pi_theta of the rollout tokens (differentiated).
    logp_old: `[N, T]` behaviour log-probs, stored with the rollout at sampling time
      (`jaxpapers.rl.transport`): no gradient flows into them.
    advantages: `[N]` sequence advantages (`group_advantages`, flattened), or `[N, T]`.
    mask: `[N, T]` 1 on response tokens.
    clip_eps: the clip range eps of the ratio (DeepSeekMath: 0.2).
    kl_coef: beta of the KL penalty (0: none; DeepSeekMath uses 0.04).
    logp_ref: `[N, T]` log pi_ref of the tokens (required when `kl_coef > 0`).
    kl_estimator: "k3" (DeepSeekMath, default) or "k1" (`logp_new - logp_ref`).

  Returns:
    (loss, metrics): `-J` and {"clip_fraction": share of tokens whose clipped term is the
    minimum (no gradient), "ratio": mean rho, "kl": mean per-token KL estimate}.
  """
  if kl_estimator not in KL_ESTIMATORS:
    raise ValueError(f"kl_estimator={kl_estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}")
  if kl_coef and logp_ref is None:
    raise ValueError("grpo_loss with kl_coef > 0 needs logp_ref (the reference policy's log-probs)")
  mask = mask.astype(jnp.float32)
  adv = advantages if advantages.ndim == logp_new.ndim else advantages[..., None]
  adv = jax.lax.stop_gradient(jnp.broadcast_to(adv, logp_new.shape).astype(jnp.float32))
  ratio = jnp.exp(logp_new - jax.lax.stop_gradient(logp_old))
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
  surrogate = jnp.minimum(unclipped, clipped)
  tokens = jnp.maximum(mask.sum(), 1.0)
  kl = jnp.zeros_like(logp_new)
  if logp_ref is not None:
    ref = jax.lax.stop_gradient(logp_ref)
    kl = kl_k3(logp_new, ref) if kl_estimator == "k3" else logp_new - ref
  objective = surrogate - kl_coef * kl
  loss = -(objective * mask).sum() / tokens
  is_clipped = ((ratio > 1.0 + clip_eps) & (adv > 0)) | ((ratio < 1.0 - clip_eps) & (adv < 0))
  metrics = {"clip_fraction": (is_clipped * mask).sum() / tokens,
             "ratio": jax.lax.stop_gradient((ratio * mask).sum() / tokens),
             "kl": jax.lax.stop_gradient((kl * mask).sum() / tokens)}
  return loss, metrics
