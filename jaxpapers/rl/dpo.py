"""Direct preference optimization loss on per-example sequence log-probabilities.

  L = -log sigmoid(beta * [(log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))])

Rafailov et al., "Direct Preference Optimization" (arXiv 2305.18290, Eq. 7), as used by the
reference-guided self-improvement of "References Improve LLM Alignment in Non-Verifiable
Domains" (arXiv 2602.16802, Sec. 3.2; the authors' `losses.py` in yale-nlp/RLRR, which also
offers the reference-free variant that drops the pi_ref terms).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dpo_loss(policy_chosen: jax.Array, policy_rejected: jax.Array, ref_chosen: jax.Array,
             ref_rejected: jax.Array, beta: float, reference_free: bool = False
             ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Per-example DPO loss and implicit rewards (arXiv 2305.18290, Eq. 7).

  Args:
    policy_chosen: `[B]` log pi_theta(y_w | x) (summed over response tokens).
    policy_rejected: `[B]` log pi_theta(y_l | x).
    ref_chosen: `[B]` log pi_ref(y_w | x).
    ref_rejected: `[B]` log pi_ref(y_l | x).
    beta: the KL-strength temperature beta (> 0).
    reference_free: drop the pi_ref terms (the `ref_*` arguments are then ignored).

  Returns:
    (loss, chosen_reward, rejected_reward), each `[B]`: `-log_sigmoid(r_w - r_l)` and the
    implicit rewards `r = beta * (log pi - log pi_ref)`, which carry no gradient (they are
    logged, as in the authors' code).
  """
  if reference_free:
    ref_chosen = jnp.zeros_like(policy_chosen)
    ref_rejected = jnp.zeros_like(policy_rejected)
  chosen = beta * (policy_chosen - ref_chosen)
  rejected = beta * (policy_rejected - ref_rejected)
  loss = -jax.nn.log_sigmoid(chosen - rejected)
  return loss, jax.lax.stop_gradient(chosen), jax.lax.stop_gradient(rejected)
