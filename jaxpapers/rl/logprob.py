"""Per-token and per-sequence log-probabilities of given tokens under a policy's logits.

Alignment convention: `logits[..., t, :]` scores `tokens[..., t]`. The caller shifts (a causal
LM's logits at position t predict token t + 1; `jaxpapers.rl.policies.LMPolicy` already returns
logits aligned with the response tokens). The sum over response tokens is the sequence
log-probability log pi(y | x) of DPO (Rafailov et al., arXiv 2305.18290, Eq. 7) and of the
reference-guided self-improvement recipe (arXiv 2602.16802, Sec. 3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_logprobs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """log softmax(logits)[t, tokens[t]] at every position.

  Args:
    logits: `[..., T, V]` logits; position t scores `tokens[..., t]`.
    tokens: `[..., T]` int token ids.

  Returns:
    `[..., T]` float32 log-probabilities.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


def sequence_logprob(logits: jax.Array, tokens: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Sum of the token log-probabilities over the positions where `mask` is set.

  Args:
    logits: `[..., T, V]` logits; position t scores `tokens[..., t]` (the caller shifts).
    tokens: `[..., T]` int token ids.
    mask: `[..., T]` 1 on response tokens, 0 on prompt and padding (None: all positions).

  Returns:
    `[...]` float32 log pi(tokens).
  """
  lp = token_logprobs(logits, tokens)
  if mask is not None:
    lp = jnp.where(mask.astype(bool), lp, 0.0)
  return lp.sum(-1)
