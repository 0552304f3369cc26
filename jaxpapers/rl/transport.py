"""Token-id transport: a rollout carries the exact token ids sampled and their behaviour log-probs.

MRPO (GUI-Owl-1.5 / Mobile-Agent-v3.5, arXiv 2602.16855, Sec. 4) recomputes the trainer's
log-probs on the ids the rollout engine sampled, never on a re-tokenization of the decoded text,
so pi_old (stored here at sampling time) and pi_theta score the same sequence: the importance
ratio is exactly 1 before the first update. Re-tokenizing text can pick another segmentation of
the same string, and the ratios then compare different tokens (see the transport check of
experiments/mrpo).

A policy is any NNX module `policy(prompts [N], responses [N, T]) -> logits [N, T, V]` whose
position t scores `responses[:, t]` (`jaxpapers.rl.policies`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.rl.logprob import token_logprobs


class Rollout(NamedTuple):
  """Sampled responses as the rollout engine produced them.

  Attributes:
    prompts: `[N]` int prompt ids.
    tokens: `[N, T]` int32 sampled token ids (transported to the trainer as they are).
    logp: `[N, T]` float32 behaviour log-probs of `tokens` under the sampling distribution.
    mask: `[N, T]` float32 1 on response tokens.
  """

  prompts: jax.Array
  tokens: jax.Array
  logp: jax.Array
  mask: jax.Array


def sample(policy: nnx.Module, prompts: jax.Array, rng: jax.Array, length: int,
           temperature: float = 1.0) -> Rollout:
  """Samples `length` tokens per prompt from softmax(logits / temperature).

  An autoregressive policy (`policy.autoregressive`, default True) is run once per position
  with the tokens sampled so far; a factorized one once. The behaviour log-probs are those of the
  logits each token was drawn from.

  Args:
    policy: the sampling policy.
    prompts: `[N]` int prompt ids.
    rng: PRNG key.
    length: response length T.
    temperature: sampling temperature (> 0).

  Returns:
    The `Rollout`.
  """
  n = prompts.shape[0]
  keys = jax.random.split(rng, length)
  tokens = jnp.zeros((n, length), jnp.int32)
  if not getattr(policy, "autoregressive", True):
    logits = policy(prompts, tokens) / temperature
    tokens = jax.vmap(lambda k, lg: jax.random.categorical(k, lg), in_axes=(0, 1), out_axes=1)(keys, logits)
    tokens = tokens.astype(jnp.int32)
    return Rollout(prompts, tokens, token_logprobs(logits, tokens), jnp.ones((n, length), jnp.float32))
  logps = []
  for t in range(length):
    logits = policy(prompts, tokens)[:, t] / temperature
    tok = jax.random.categorical(keys[t], logits).astype(jnp.int32)
    tokens = tokens.at[:, t].set(tok)
    logps.append(token_logprobs(logits, tok))
  return Rollout(prompts, tokens, jnp.stack(logps, 1), jnp.ones((n, length), jnp.float32))


def recompute_logprobs(policy: nnx.Module, prompts: jax.Array, tokens: jax.Array,
                       temperature: float = 1.0) -> jax.Array:
  """`[N, T]` log pi_theta of the transported `tokens` (one teacher-forced pass)."""
  return token_logprobs(policy(prompts, tokens) / temperature, tokens)


def importance_ratio(policy: nnx.Module, rollout: Rollout, temperature: float = 1.0) -> jax.Array:
  """`[N, T]` rho = pi_theta / pi_old on the rollout's own token ids (1 where masked out)."""
  logp = recompute_logprobs(policy, rollout.prompts, rollout.tokens, temperature)
  return jnp.where(rollout.mask > 0, jnp.exp(logp - rollout.logp), 1.0)
