"""A synthetic "non-verifiable" alignment task with reference-guided and reference-free toy judges.

Our stand-in (the small-scale protocol of experiments/ref_guided_dpo) for the setting of
"References Improve LLM Alignment in Non-Verifiable Domains" (arXiv 2602.16802): P prompts, a
response is a length-L sequence over V tokens, and each prompt has a hidden ideal sequence. The
true quality of a response is the fraction of positions that match the ideal; the learner never
sees it. A reference (the frontier model's answer of the paper) is the ideal with a fraction of
positions changed to another token, so its quality is about 1 - corruption.

The judges return the log-probabilities of the two option tokens (slot A, slot B), as an LLM
judge's top log-probs would (`jaxpapers.rl.pairwise.slot_probability` turns them into P(A)):
  * reference-guided (RefEval): logit = scale * (overlap(a, ref) - overlap(b, ref)) + bias + noise;
  * reference-free: logit = scale * (w_q (q(a) - q(b)) + w_s (s(a) - s(b))) + bias + noise, with
    a weak quality signal, a spurious preference for one token (s: that token's share, standing
    in for a verbosity bias) and more noise;
  * oracle: from the true quality (ties 0.5).
`bias` is a position bias towards slot A, which judging both orders cancels.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class JudgeParams:
  """The toy judges' parameters.

  Attributes:
    scale: logit per unit score difference.
    position_bias: logit added towards slot A.
    ref_noise: standard deviation of the reference-guided judge's logit noise.
    free_noise: standard deviation of the reference-free judge's logit noise.
    free_quality_weight: w_q, the reference-free judge's weight on true quality.
    free_spurious_weight: w_s, its weight on the spurious token's share.
  """

  scale: float = 8.0
  position_bias: float = 0.5
  ref_noise: float = 0.25
  free_noise: float = 3.0
  free_quality_weight: float = 0.5
  free_spurious_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class AlignmentTask:
  """Ideal and reference sequences `[P, L]` and the spurious token.

  Attributes:
    ideal: `[P, L]` hidden ideal responses.
    reference: `[P, L]` references (corrupted ideals).
    vocab: V.
    spurious_token: the token the reference-free judge likes regardless of quality.
  """

  ideal: jax.Array
  reference: jax.Array
  vocab: int
  spurious_token: int = 0

  @property
  def num_prompts(self) -> int:
    return self.ideal.shape[0]

  @property
  def length(self) -> int:
    return self.ideal.shape[1]

  def quality(self, prompts: jax.Array, responses: jax.Array) -> jax.Array:
    """`[N]` true quality: share of positions equal to the prompt's ideal."""
    return jnp.mean(responses == self.ideal[prompts], axis=-1)

  def overlap(self, prompts: jax.Array, responses: jax.Array) -> jax.Array:
    """`[N]` share of positions equal to the prompt's reference."""
    return jnp.mean(responses == self.reference[prompts], axis=-1)

  def spurious(self, responses: jax.Array) -> jax.Array:
    """`[N]` share of positions holding the spurious token."""
    return jnp.mean(responses == self.spurious_token, axis=-1)

  def judge_logprobs(self, kind: str, params: JudgeParams, rng: jax.Array, prompts: jax.Array,
                     a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Option-token log-probs (l_A, l_B) of one judge on comparisons `(a in A, b in B)`.

    Args:
      kind: "reference" (RefEval-style), "reference_free" or "oracle".
      params: the judges' parameters.
      rng: PRNG key of the judge noise.
      prompts: `[N]` prompt ids.
      a: `[N, L]` slot-A candidates.
      b: `[N, L]` slot-B candidates.

    Returns:
      (l_A, l_B), each `[N]`; the oracle gives `-inf` for a losing slot and (0, 0) on ties.
    """
    noise = jax.random.normal(rng, prompts.shape)
    if kind == "oracle":
      d = self.quality(prompts, a) - self.quality(prompts, b)
      la = jnp.where(d >= 0, 0.0, -jnp.inf)
      lb = jnp.where(d <= 0, 0.0, -jnp.inf)
      return la, lb
    if kind == "reference":
      d = self.overlap(prompts, a) - self.overlap(prompts, b)
      logit = params.scale * d + params.position_bias + params.ref_noise * noise
    elif kind == "reference_free":
      d = (params.free_quality_weight * (self.quality(prompts, a) - self.quality(prompts, b))
           + params.free_spurious_weight * (self.spurious(a) - self.spurious(b)))
      logit = params.scale * d + params.position_bias + params.free_noise * noise
    else:
      raise ValueError(f"unknown judge {kind!r}; choose reference, reference_free or oracle")
    return jax.nn.log_sigmoid(logit), jax.nn.log_sigmoid(-logit)


def make_alignment_task(num_prompts: int, length: int, vocab: int, corruption: float = 0.25,
                        spurious_token: int = 0, seed: int = 0) -> AlignmentTask:
  """Ideals drawn uniformly; each reference changes round(corruption * L) positions of its ideal."""
  if min(num_prompts, length) < 1 or vocab < 2:
    raise ValueError("num_prompts and length must be >= 1 and vocab >= 2")
  if not 0 <= corruption <= 1:
    raise ValueError(f"corruption={corruption} must be in [0, 1]")
  rng = np.random.default_rng(seed)
  ideal = rng.integers(0, vocab, (num_prompts, length))
  reference = ideal.copy()
  flips = int(round(corruption * length))
  for p in range(num_prompts):
    pos = rng.choice(length, flips, replace=False)
    reference[p, pos] = (ideal[p, pos] + rng.integers(1, vocab, flips)) % vocab
  return AlignmentTask(jnp.asarray(ideal, jnp.int32), jnp.asarray(reference, jnp.int32), vocab,
                       spurious_token)
