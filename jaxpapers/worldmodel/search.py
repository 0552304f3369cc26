"""Test-time action search with a world model: propose -> imagine -> select.

Computer-Using World Model (CUWM, arXiv 2602.17365, Sec. "test-time action search"): a frozen
agent proposes k candidate actions (paper: 5), the world model predicts the outcome of each,
the same agent picks the candidate whose imagined outcome it scores best, and only that action
is compared with the logged one (offline single-step action matching). Whether the logged
action was among the candidates at all (coverage) bounds what any world model can recover, so
it is returned with the choice (`jaxpapers.evals.coverage` reports accuracy beside it).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Propose = Callable[[Any, jax.Array, int], jax.Array]  # (obs, key, k) -> [k] actions, best first
WorldModel = Callable[[Any, jax.Array], Any]  # (obs, action) -> imagined next state
Score = Callable[[Any], jax.Array]  # imagined state -> scalar (higher is better)


class SearchResult(NamedTuple):
  """One search.

  Attributes:
    action: the chosen action.
    index: its position among the candidates.
    candidates: `[k]` the proposed actions, in the proposer's order.
    imagined: the imagined next states, stacked on a leading `[k]` axis.
    scores: `[k]` the score of each imagined state.
    covered: whether `logged` is among the candidates (False when no `logged` was given).
  """

  action: jax.Array
  index: jax.Array
  candidates: jax.Array
  imagined: Any
  scores: jax.Array
  covered: jax.Array


def action_search(propose: Propose, world_model: WorldModel, score: Score, k: int, obs: Any,
                  key: jax.Array, logged: jax.Array | None = None) -> SearchResult:
  """Proposes `k` actions, imagines each outcome, returns the one whose imagined state scores best.

  Ties go to the earlier candidate (the proposer's own preference), so a world model that
  imagines the same outcome for every candidate leaves the proposer's first choice. Pure and
  traceable: `jax.vmap` over a batch of `(obs, key, logged)` (with `score` closed over each
  sample's goal) and `jax.jit` apply.

  Args:
    propose: `(obs, key, k) -> [k]` candidate actions, the proposer's preferred first.
    world_model: `(obs, action) -> imagined next state` (a pytree).
    score: imagined state -> scalar (e.g. minus the distance to the goal).
    k: candidates.
    obs: the current observation.
    key: the proposer's key.
    logged: the logged action, for the coverage bookkeeping (optional).

  Returns:
    The `SearchResult`.
  """
  candidates = jnp.asarray(propose(obs, key, k))
  if candidates.shape != (k,):
    raise ValueError(f"propose returned shape {candidates.shape}; action_search needs ({k},)")
  imagined = jax.vmap(lambda a: world_model(obs, a))(candidates)
  scores = jax.vmap(score)(imagined)
  index = jnp.argmax(scores)  # the first maximum: ties go to the proposer's order
  covered = jnp.array(False) if logged is None else jnp.any(candidates == logged)
  return SearchResult(candidates[index], index, candidates, imagined, scores, covered)


def gumbel_top_k(logits: jax.Array, key: jax.Array, k: int) -> jax.Array:
  """`[k]` indices sampled without replacement from `softmax(logits)`, in sampling order
  (Gumbel-top-k: the k largest of logits + Gumbel noise)."""
  g = logits + jax.random.gumbel(key, logits.shape)
  return jax.lax.top_k(g, k)[1]
