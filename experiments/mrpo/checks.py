"""The CI checks of the MRPO smoke preset, as claims (the spec's CI list for arXiv 2602.16855).

`group_advantages` on constant and mixed groups; `grpo_loss` at rho = 1, its gradient's sign,
its clipping; the buffer on a stream of groups (never a collapsed group out, fixed shapes); the
token-id transport check on a toy tokenizer with two segmentations of one string.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers import rl
from jaxpapers.core import report


def advantage_claims() -> list[report.Claim]:
  rewards = jnp.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.3, 2.0, -1.0, 0.5]])
  adv, collapsed = rl.group_advantages(rewards)
  adv, collapsed = np.asarray(adv), np.asarray(collapsed)
  constant = float(np.abs(adv[:2]).max()) + float(np.sum(collapsed != [True, True, False, False]))
  moments = float(np.abs(adv[2:].mean(-1)).max() + np.abs(adv[2:].std(-1) - 1).max())
  return [report.at_most("advantages_constant_groups", "max |advantage| on constant groups + wrong "
                         "collapsed flags", constant, 0),
          report.at_most("advantages_standardized", "max |mean| + max |std - 1| of mixed groups' "
                         "advantages", moments, 1e-5)]


def loss_claims() -> list[report.Claim]:
  rng = np.random.default_rng(0)
  logp = jnp.asarray(rng.normal(-1.0, 0.3, (6, 5)), jnp.float32)
  adv = jnp.asarray(rng.normal(size=6), jnp.float32)
  mask = jnp.asarray(rng.random((6, 5)) < 0.8, jnp.float32)
  loss, _ = rl.grpo_loss(logp, logp, adv, mask)
  expect = -float((adv[:, None] * mask).sum() / mask.sum())
  at_one = abs(float(loss) - expect)
  g = jax.grad(lambda lp: rl.grpo_loss(lp, logp, adv, mask)[0])(logp)
  sign = np.sign(np.asarray(g)) * np.asarray(mask)
  wrong = int(np.sum((sign != -np.sign(np.asarray(adv))[:, None]) & (np.asarray(mask) > 0)))
  shift = jnp.where(adv[:, None] > 0, 0.5, -0.5)  # ratio e^0.5 with A > 0, e^-0.5 with A < 0: clipped
  g_out = jax.grad(lambda lp: rl.grpo_loss(lp, logp, adv, mask)[0])(logp + shift)
  clipped = float(np.abs(np.asarray(g_out)).max())
  _, m = rl.grpo_loss(logp + shift, logp, adv, mask)
  return [report.at_most("grpo_loss_at_ratio_one", "|grpo_loss - (-token-weighted mean A)| at rho = 1, "
                         "no KL", at_one, 1e-6),
          report.at_most("grpo_gradient_sign", "masked tokens whose gradient sign is not -sign(A) "
                         "(descent raises log pi where A > 0)", wrong, 0),
          report.at_most("grpo_clipping", "max |gradient| where rho is outside [1 - eps, 1 + eps] on the "
                         f"clipped side (clip fraction {float(m['clip_fraction']):.2f})", clipped, 0)]


def buffer_claims() -> list[report.Claim]:
  rng = np.random.default_rng(0)
  buf = rl.RolloutBuffer(4, 3, 2, select="balanced")
  shapes, collapsed = set(), 0
  for _ in range(20):
    rewards = (rng.random((5, 16)) < rng.random((5, 1)) ** 3).astype(np.float32)
    tokens = rng.integers(0, 3, (5, 16, 2))
    buf.add(np.arange(5), np.zeros(5, int), tokens, np.zeros((5, 16, 2)), np.ones((5, 16, 2)), rewards)
    while buf.ready():
      b = buf.pop()
      collapsed += int(b["collapsed"].sum()) + int(np.sum(np.ptp(b["rewards"].reshape(3, 4), 1) == 0))
      shapes.add(tuple((k, v.shape) for k, v in sorted(b.items())))
  return [report.at_most("buffer_never_collapsed", f"collapsed groups in {buf.updates} emitted batches "
                         f"({buf.groups_dropped} of {buf.groups_seen} groups dropped)", collapsed, 0),
          report.at_most("buffer_fixed_shapes", "distinct batch shapes emitted (1: nothing retraces)",
                         len(shapes), 1)]


class ToyTokenizer:
  """Greedy longest-match tokenizer over {"a", "b", "ab"}: "ab" has two segmentations."""

  vocab = ("a", "b", "ab")

  def decode(self, ids) -> str:
    return "".join(self.vocab[i] for i in ids)

  def encode(self, text: str) -> list[int]:
    out, i = [], 0
    while i < len(text):
      if text.startswith("ab", i):
        out.append(2)
        i += 2
      else:
        out.append(self.vocab.index(text[i]))
        i += 1
    return out


def transport_claims(clip_eps: float = 0.2) -> list[report.Claim]:
  """rho on transported ids is exactly 1; on re-tokenized text it is not, and clipping fires."""
  length, n = 6, 256
  policy = rl.FactorizedPolicy(1, length, 3, (), rngs=nnx.Rngs(0))
  policy.out.bias[...] = jax.random.normal(jax.random.key(1), policy.out.bias.shape) * 2.0
  prompts = jnp.zeros(n, jnp.int32)
  roll = rl.sample(policy, prompts, jax.random.key(2), length)
  rho = np.asarray(rl.importance_ratio(policy, roll))
  tok = ToyTokenizer()
  retok = np.zeros((n, length), np.int32)
  mask = np.zeros((n, length), np.float32)
  for i, ids in enumerate(np.asarray(roll.tokens)):
    again = tok.encode(tok.decode(ids))
    retok[i, :len(again)], mask[i, :len(again)] = again, 1.0
  logp_retok = np.asarray(rl.recompute_logprobs(policy, prompts, jnp.asarray(retok)))
  rho_retok = np.exp(logp_retok - np.asarray(roll.logp))[mask > 0]
  differ = float(np.mean(np.any((retok != np.asarray(roll.tokens)) & (mask > 0), 1)))
  clipped = float(np.mean(np.abs(rho_retok - 1) > clip_eps))
  return [report.at_most("transport_ratio_exactly_one", f"max |rho - 1| on the transported ids of {n} "
                         "rollouts before any update", float(np.abs(rho - 1).max()), 0.0),
          report.greater_than("transport_retokenized_clips", f"share of tokens clipped (|rho - 1| > "
                              f"{clip_eps}) after decode + greedy re-tokenization ({differ:.2f} of the "
                              "rollouts change ids)", clipped, 0.0)]


def all_claims() -> list[report.Claim]:
  return advantage_claims() + loss_claims() + buffer_claims() + transport_claims()
