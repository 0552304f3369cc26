"""Preference labels from a pairwise judge over all ordered pairs of K candidates.

The label construction of "References Improve LLM Alignment in Non-Verifiable Domains"
(arXiv 2602.16802, Sec. 3.2; `scoring.py` and `_make_output_pair_from_pm` of the authors'
yale-nlp/RLRR): the judge sees every ordered pair (i in slot A, j in slot B), K (K - 1)
comparisons, so each pair is judged in both positions and a position bias cancels. From the
log-probabilities of the two option tokens, slot A gets p_A = exp l_A / (exp l_A + exp l_B) and
slot B 1 - p_A (one option token absent from the judge's top log-probs: 1 / 0; both absent:
0.5 / 0.5). A candidate's score is the mean of its slot probabilities over the comparisons it
is in; chosen = argmax, rejected = argmin, and a prompt whose scores all tie (or with fewer than
two usable candidates) gives no pair.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np


class Judge(Protocol):
  """A pairwise judge: `judge(prompts, a, b, reference) -> P(a better than b)`.

  Batched over comparisons: `prompts [N]`, candidates `a, b [N, T]`, `reference [N, T]` or
  None (a reference-free judge). Any scorer fits: the toy judges of
  `jaxpapers.envs.alignment`, or an LLM prompted with the RefEval template elsewhere.
  """

  def __call__(self, prompts: jax.Array, a: jax.Array, b: jax.Array,
               reference: jax.Array | None) -> jax.Array: ...


class PairwiseLabels(NamedTuple):
  """Output of `aggregate_pairwise`.

  Attributes:
    scores: `[..., K]` each candidate's mean slot probability (NaN where it took part in none).
    chosen: `[...]` index of the best candidate.
    rejected: `[...]` index of the worst candidate.
    valid: `[...]` False where every usable score ties or fewer than two candidates are usable.
  """

  scores: jax.Array
  chosen: jax.Array
  rejected: jax.Array
  valid: jax.Array


def ordered_pairs(k: int) -> np.ndarray:
  """All K (K - 1) ordered pairs (i, j), i != j, as an int32 `[K (K - 1), 2]` array."""
  if k < 2:
    raise ValueError(f"ordered pairs need k >= 2 candidates; got k={k}")
  return np.array(list(itertools.permutations(range(k), 2)), np.int32)


def slot_probability(logp_a: jax.Array, logp_b: jax.Array) -> jax.Array:
  """P(slot A wins) from the two option tokens' log-probabilities (arXiv 2602.16802, Sec. 3.2).

  An option token missing from the judge's top log-probs is passed as `-inf`.

  Args:
    logp_a: log-probability of the token naming slot A (e.g. "A").
    logp_b: log-probability of the token naming slot B.

  Returns:
    exp l_A / (exp l_A + exp l_B); 1 if only A is present, 0 if only B, 0.5 if neither.
  """
  logp_a, logp_b = jnp.asarray(logp_a, jnp.float32), jnp.asarray(logp_b, jnp.float32)
  has_a, has_b = jnp.isfinite(logp_a), jnp.isfinite(logp_b)
  both = jax.nn.sigmoid(jnp.where(has_a & has_b, logp_a - logp_b, 0.0))
  return jnp.where(has_a & has_b, both, jnp.where(has_a, 1.0, jnp.where(has_b, 0.0, 0.5)))


def aggregate_pairwise(probs: jax.Array, pairs: jax.Array, k: int,
                       candidate_mask: jax.Array | None = None) -> PairwiseLabels:
  """Candidate scores and a (chosen, rejected) pair from judged ordered pairs.

  Args:
    probs: `[..., M]` P(slot A wins) of comparison m.
    pairs: `[M, 2]` int (i, j): comparison m put candidate i in slot A and j in slot B
      (`ordered_pairs(k)` for the paper's all-ordered-pairs protocol).
    k: number of candidates per prompt.
    candidate_mask: `[..., K]` usable candidates (e.g. within the length limit); comparisons
      with an unusable candidate are ignored. None: all usable.

  Returns:
    `PairwiseLabels`. Swapping the slots of every comparison (pairs (j, i), probs 1 - p) leaves
    the scores unchanged.
  """
  probs = jnp.asarray(probs, jnp.float32)
  pairs = jnp.asarray(pairs, jnp.int32)
  onehot_a = jax.nn.one_hot(pairs[:, 0], k, dtype=jnp.float32)  # [M, K]
  onehot_b = jax.nn.one_hot(pairs[:, 1], k, dtype=jnp.float32)
  if candidate_mask is None:
    used = jnp.ones(probs.shape, jnp.float32)
  else:
    usable = jnp.asarray(candidate_mask, bool)
    used = (jnp.take(usable, pairs[:, 0], -1) & jnp.take(usable, pairs[:, 1], -1)).astype(jnp.float32)
  total = (probs * used) @ onehot_a + ((1.0 - probs) * used) @ onehot_b
  count = used @ onehot_a + used @ onehot_b
  scores = jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)
  present = count > 0
  chosen = jnp.argmax(jnp.where(present, scores, -jnp.inf), -1)
  rejected = jnp.argmin(jnp.where(present, scores, jnp.inf), -1)
  top = jnp.max(jnp.where(present, scores, -jnp.inf), -1)
  bottom = jnp.min(jnp.where(present, scores, jnp.inf), -1)
  valid = (present.sum(-1) >= 2) & (top > bottom)
  return PairwiseLabels(scores, chosen, rejected, valid)


def judge_ordered_pairs(judge: Judge, prompts: jax.Array, candidates: jax.Array,
                        reference: jax.Array | None = None) -> tuple[jax.Array, np.ndarray]:
  """Runs `judge` on every ordered pair of each prompt's K candidates.

  Args:
    judge: the pairwise judge.
    prompts: `[P]` prompt ids.
    candidates: `[P, K, T]` candidate responses.
    reference: `[P, T]` reference responses, or None for a reference-free judge.

  Returns:
    (probs `[P, K (K - 1)]`, pairs `[K (K - 1), 2]`), ready for `aggregate_pairwise`.
  """
  p, k, t = candidates.shape
  pairs = ordered_pairs(k)
  m = len(pairs)
  a = candidates[:, pairs[:, 0]].reshape(p * m, t)
  b = candidates[:, pairs[:, 1]].reshape(p * m, t)
  rep = jnp.repeat(jnp.asarray(prompts), m)
  ref = None if reference is None else jnp.repeat(jnp.asarray(reference), m, axis=0)
  return judge(rep, a, b, ref).reshape(p, m), pairs
