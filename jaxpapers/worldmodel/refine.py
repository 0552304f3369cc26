"""Predict-then-refine: a policy that consults a world model before it acts (StarWM).

StarWM-Agent's Generate-Simulate-Refine loop (arXiv 2602.14857, the StarWM-Agent method): the
policy proposes an action, the world model predicts the observation a horizon ahead (StarWM:
5 s), and the policy revises its action given that prediction. As a function:

  proposed   = policy(state)
  prediction = wm(state, proposed); then `horizon - 1` times  prediction = wm(prediction,
               policy(prediction))        ("act now, then follow the policy")
  action     = refine(state, proposed, prediction)

`wm` is any callable `(state, action) -> predicted state`: a one-step simulator rolled out over
`horizon` steps, or a model that predicts H steps ahead in one call (then `horizon=1`). `refine`
is any callable `(state, proposed, prediction) -> action`; the paper's is the LLM policy
reasoning over the prediction, a fixed rule in our toy (experiments/starwm). The loop is pure
when its callables are: `jax.jit` and `jax.vmap` it over states (and over world-model parameters
closed over by `wm`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

State = Any
Action = Any


class Refined(NamedTuple):
  """One decision of a predict-then-refine policy.

  Attributes:
    action: the action taken (refine's output).
    proposed: the policy's first proposal.
    prediction: the world model's predicted state `horizon` calls ahead.
  """

  action: Action
  proposed: Action
  prediction: State


def predict_then_refine(policy: Callable[[State], Action], wm: Callable[[State, Action], State],
                        refine: Callable[[State, Action, State], Action],
                        horizon: int = 1) -> Callable[[State], Refined]:
  """The refined policy `state -> Refined(action, proposed, prediction)`.

  Args:
    policy: `state -> action`, the proposer (also the continuation inside the prediction).
    wm: `(state, action) -> predicted next state`, of the kind `policy` reads.
    refine: `(state, proposed action, prediction) -> action`.
    horizon: world-model calls per decision (>= 1): the first with the proposed action, the
      others with the policy's action on the predicted state.

  Returns:
    The refined policy; `refined(state).action` is the action to take.

  Raises:
    ValueError: `horizon < 1`.
  """
  if int(horizon) != horizon or horizon < 1:
    raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
  horizon = int(horizon)

  def refined(state: State) -> Refined:
    proposed = policy(state)
    prediction = wm(state, proposed)
    for _ in range(horizon - 1):
      prediction = wm(prediction, policy(prediction))
    return Refined(refine(state, proposed, prediction), proposed, prediction)

  return refined
