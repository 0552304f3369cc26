"""The Red-vs-Blue (RvB) hardening game: round loop, Bayes belief update, DSR and FPR.

RvB (arXiv 2601.19726, used in the Frontier AI Risk Management Framework v1.5, arXiv
2602.14457, mitigation of the cyber-offense section) is a training-free sequential game over
rounds k = 1..N. The target system's state S_k is the only memory: Red and Blue keep no weights.
Each round:

  * Red keeps a belief b_k(pi_B) = P(pi_B | S_k) over a finite set of Blue defences and attacks
    with a_k = argmax_a E_{pi_B ~ b_k}[U_R(a, pi_B)] (or a Thompson draw, a Bayesian bandit);
  * the target answers each attack (blocked or not): the evidence E_k;
  * Blue patches the target from Red's logs: S_k -> S_{k+1};
  * Red updates b_{k+1}(pi_B) proportional to P(E_k | pi_B, S_k) b_k(pi_B) (`belief_update`).

Defense Success Rate (`dsr`): the share of attacks, held-out variants included, the hardened
target blocks; False Positive Rate (`fpr`): the share of benign inputs it blocks.

Agents plug in through two small protocols (`Red`, `Blue`) and the target through `Target`, so a
toy guardrail and an LLM-driven agent pair run through the same `play` loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


def belief_update(belief, likelihood) -> np.ndarray:
  """Bayes' rule b'(h) = P(E | h) b(h) / sum_h' P(E | h') b(h') over the last axis.

  Args:
    belief: prior over hypotheses, [..., H] (non-negative, sums to 1 on the last axis).
    likelihood: P(E | h) for the observed evidence, broadcastable to `belief`.

  Returns:
    The posterior, float64, same shape.

  Raises:
    ValueError: negative entries, or evidence impossible under every hypothesis with mass.
  """
  belief = np.asarray(belief, np.float64)
  likelihood = np.asarray(likelihood, np.float64)
  if np.any(belief < 0) or np.any(likelihood < 0):
    raise ValueError("belief_update: beliefs and likelihoods must be non-negative")
  joint = belief * likelihood
  total = joint.sum(-1, keepdims=True)
  if np.any(total <= 0):
    raise ValueError("belief_update: the evidence has probability 0 under every hypothesis in the belief")
  return joint / total


def expected_utility(belief, utility) -> np.ndarray:
  """E_{pi_B ~ b}[U_R(a, pi_B)] for every attack a: `utility` [A, H] @ `belief` [H] -> [A]."""
  return np.asarray(utility, np.float64) @ np.asarray(belief, np.float64)


def dsr(blocked: Sequence[bool]) -> float:
  """Defense Success Rate: the share of attack inputs that were blocked."""
  blocked = np.asarray(blocked, bool)
  return float(blocked.mean()) if blocked.size else float("nan")


def fpr(blocked: Sequence[bool]) -> float:
  """False Positive Rate: the share of benign inputs that were blocked (or broken)."""
  return dsr(blocked)


class Target(Protocol):
  """The system under attack; its `state` (e.g. the rule list) is the game's only memory."""

  state: Any

  def blocks(self, text: str) -> bool: ...


class Red(Protocol):
  """The attacker: proposes attacks from its belief, then updates it on the outcomes."""

  belief: Any

  def propose(self, state: Any, rng: np.random.Generator) -> list[Any]: ...
  def observe(self, attacks: Sequence[Any], blocked: Sequence[bool]) -> None: ...


class Blue(Protocol):
  """The defender: patches the target's state from Red's attack logs."""

  def patch(self, state: Any, logs: Sequence[dict]) -> Any: ...


@dataclasses.dataclass
class RoundRecord:
  """What one round of `play` measured (after Blue's patch).

  Attributes:
    round: 1-based round index.
    attacks: Red's attacks this round.
    blocked: whether the target (before the patch) blocked each one.
    dsr: held-out DSR of the patched target.
    fpr: FPR of the patched target on the benign inputs.
    belief: Red's belief after its update (a copy).
  """

  round: int
  attacks: list
  blocked: list[bool]
  dsr: float
  fpr: float
  belief: Any


def play(target: Target, red: Red, blue: Blue, rounds: int, held_out: Sequence[str],
         benign: Sequence[str], rng: np.random.Generator, text=lambda attack: attack) -> list[RoundRecord]:
  """Runs `rounds` rounds of RvB; returns one record per round.

  Args:
    target: the system; `target.state` is replaced by Blue's patch each round.
    red: the attacker (`propose`, `observe`, `belief`).
    blue: the defender (`patch`).
    rounds: N.
    held_out: attack strings Red never proposes, for the held-out DSR.
    benign: benign inputs, for the FPR.
    rng: Red's randomness (a seed fixes the game).
    text: attack -> the string sent to the target (default: the attack itself).
  """
  records = []
  for k in range(1, rounds + 1):
    attacks = red.propose(target.state, rng)
    blocked = [bool(target.blocks(text(a))) for a in attacks]
    logs = [{"attack": a, "text": text(a), "blocked": b} for a, b in zip(attacks, blocked)]
    target.state = blue.patch(target.state, logs)
    red.observe(attacks, blocked)
    records.append(RoundRecord(
        k, list(attacks), blocked, dsr([target.blocks(s) for s in held_out]),
        fpr([target.blocks(s) for s in benign]), np.array(red.belief, copy=True)))
  return records
