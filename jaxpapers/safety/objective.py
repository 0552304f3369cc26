"""NeST's training objective: refusal SFT on vanilla harmful prompts plus benign retention.

NeST (arXiv 2602.16835, Sec. 3, training) fine-tunes the cluster updates with supervised
fine-tuning (TRL's SFT trainer) on vanilla harmful prompts paired with refusals and benign
prompts paired with helpful responses, next-token cross-entropy on the response tokens, and no
jailbreak-specific data. Our choice for the benign responses is the base model's own greedy
outputs (self-distillation), which keeps utility drift measurable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def sft_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean cross-entropy of `targets` under `logits` over the masked positions.

  Args:
    logits: `[..., V]` (a class per prompt `[B, V]`, or next-token logits `[B, T, V]`).
    targets: int `[...]`.
    mask: `[...]` weights, 1 on response tokens (or real rows), 0 elsewhere; None: all ones.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  if mask is None:
    return jnp.mean(ce)
  mask = mask.astype(ce.dtype)
  return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def greedy_targets(logits: jax.Array) -> jax.Array:
  """The base model's greedy outputs as retention targets (self-distillation)."""
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)
