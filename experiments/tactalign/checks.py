"""The CI checks of TactAlign's smoke preset (the spec's CI items 1-3), as claims.

Each compares against a hand-made or analytic answer: the pseudo-pair builder on hand-made
arrays, the Euler transport on analytic fields, the EMD helper on permuted and shifted copies.
(The pooled latent's token-order invariance, item 4, is a unit test: tests/nn/test_tactile.py;
building an encoder eagerly here costs the smoke preset 7 s of compiles.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers import align
from jaxpapers.core import report
from jaxpapers.evals import assignment_distance


def pairs_claim() -> report.Claim:
  """Nearest neighbour, same finger, contact filter on 3 human and 4 robot samples."""
  pose_r = np.array([[0.0], [1.0], [2.0], [0.1]])
  p = align.pseudo_pairs(np.array([[0.9], [1.8], [5.0]]), pose_r, np.array([0, 0, 1]),
                         np.array([0, 0, 0, 1]), np.array([True, False, True]),
                         np.array([False, True, True, True]), both_directions=False)
  got = sorted(zip(p.human.tolist(), p.robot.tolist()))
  wrong = int(got != [(0, 1), (2, 3)]) + abs(p.dropped - 1)
  return report.at_most("pseudo_pairs_hand_made", "hand-made pseudo-pair cases wrong (nearest "
                        "neighbour, same finger, mismatched contact removed)", wrong, 0)


def euler_claim() -> report.Claim:
  h = jax.random.normal(jax.random.key(0), (4, 3))
  c, r = jnp.array([0.5, -1.0, 2.0]), jax.random.normal(jax.random.key(1), (4, 3))
  err = max(float(jnp.max(jnp.abs(align.transport(lambda x, t: jnp.broadcast_to(c, x.shape), h, 20) - (h + c)))),
            float(jnp.max(jnp.abs(align.transport(lambda x, t: r - h, h, 20) - r))))
  return report.at_most("euler_analytic_fields", "max |Euler(h) - answer| for v = c (-> h + c) and "
                        "v = r - h (-> r), 20 steps", err, 1e-5)


def emd_claim() -> report.Claim:
  x = np.random.default_rng(0).normal(size=(64, 4)) * 0.05
  delta = np.array([1.0, 0.0, -1.0, 0.5])
  err = max(assignment_distance(x, x[np.random.default_rng(1).permutation(64)]),
            abs(assignment_distance(x, x + delta) - np.linalg.norm(delta)))
  return report.at_most("emd_helper", "max of EMD(X, X[perm]) and |EMD(X, X + d) - |d||", err, 1e-9)


def all_claims() -> list[report.Claim]:
  return [pairs_claim(), euler_claim(), emd_claim()]
