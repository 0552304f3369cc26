"""The spec's CI checks of CUWM (agents_and_evals, sec. 4), run as claims of the smoke preset.

* `action_search` picks the argmax of `score` over the imagined states (ties: first candidate).
* Coverage bookkeeping on a hand-made case (`jaxpapers.evals.coverage_accuracy`).
* The delta -> render composition of `TwoStageWM` has the right shapes and is jit-compatible.
* 5 GRPO updates of the delta head on a 2-widget ToyUI produce no NaNs (the smoke preset's own
  GRPO run: it is that size).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.core import report
from jaxpapers.envs.toy_ui import ToyUI
from jaxpapers.evals.coverage import coverage_accuracy, gap_recovered
from jaxpapers.worldmodel import TwoStageWM, action_search


def search_argmax_errors() -> int:
  """Hand case: candidates [3, 1, 4, 1, 5], imagined state 10 a mod 7 -> [2, 3, 5, 3, 1], score
  minus |state - 5|: the argmax is candidate 2 (action 4); with score 0 everywhere, candidate 0."""
  propose = lambda obs, key, k: jnp.array([3, 1, 4, 1, 5])  # noqa: E731
  wm = lambda obs, a: (10 * a) % 7  # noqa: E731
  r = action_search(propose, wm, lambda s: -jnp.abs(s - 5), 5, None, jax.random.key(0), jnp.array(9))
  flat = action_search(propose, wm, lambda s: jnp.float32(0), 5, None, jax.random.key(0), jnp.array(1))
  errors = int(r.action != 4) + int(r.index != 2) + int(bool(r.covered))
  errors += int(not np.array_equal(np.asarray(r.imagined), [2, 3, 5, 3, 1]))
  errors += int(flat.action != 3) + int(not bool(flat.covered))
  return errors


def coverage_errors() -> int:
  """Hand case of 4 samples: logged [0, 1, 2, 3], candidates holding it in samples 0, 1, 3, chosen
  right in 0 and 3: accuracy 1/2, coverage 3/4, covered accuracy 2/3, gap recovered
  (0.5 - 0.25) / (0.75 - 0.25) = 1/2."""
  r = coverage_accuracy([0, 2, 1, 3], [0, 1, 2, 3], [[0, 5], [1, 2], [4, 1], [7, 3]])
  want = {"accuracy": 0.5, "coverage": 0.75, "covered_accuracy": 2 / 3, "samples": 4}
  errors = sum(not np.isclose(r[k], v) for k, v in want.items())
  return errors + int(not np.isclose(gap_recovered(0.25, 0.5, 0.75), 0.5))


def composition_errors() -> int:
  """Shapes of delta logits and next-screen logits on a [2, 3] batch, traced under jit (abstract:
  nothing is compiled) for both the composed call and `imagine`."""
  ui = ToyUI.default(6)
  abstract = nnx.eval_shape(lambda: TwoStageWM(ui.image_shape, ui.num_actions, ui.num_changes, (16,),
                                               rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  obs = jax.ShapeDtypeStruct((2, 3, *ui.image_shape), jnp.float32)
  action = jax.ShapeDtypeStruct((2, 3), jnp.int32)
  call = jax.jit(lambda s, o, a: nnx.merge(graphdef, s)(o, a))
  imagine = jax.jit(lambda s, o, a: nnx.merge(graphdef, s).imagine(o, a))
  logits, nxt = jax.eval_shape(call, state, obs, action)
  img = jax.eval_shape(imagine, state, obs, action)
  errors = int(logits.shape != (2, 3, ui.num_changes)) + int(nxt.shape != (2, 3, *ui.image_shape))
  return errors + int(img.shape != (2, 3, *ui.image_shape)) + int(img.dtype != jnp.float32)


def grpo_nonfinite(curve: dict, wm: nnx.Module) -> int:
  """Non-finite arrays in a GRPO run's curve and the fine-tuned parameters."""
  leaves = jax.tree.leaves(curve) + jax.tree.leaves(nnx.state(wm, nnx.Param))
  return sum(int(not np.all(np.isfinite(np.asarray(x)))) for x in leaves)


def all_claims() -> list[report.Claim]:
  """The first three CI checks (the fourth reads the smoke run's own GRPO: `grpo_claim`)."""
  return [
      report.at_most("ci_search_argmax", "hand-made action_search errors (argmax of score over the imagined "
                     "states, ties to the first candidate, imagined states, coverage flag)",
                     search_argmax_errors(), 0),
      report.at_most("ci_coverage_bookkeeping", "errors of coverage_accuracy and gap_recovered on a hand-made "
                     "4-sample case", coverage_errors(), 0),
      report.at_most("ci_delta_render_composition", "shape and eager-vs-jit errors of TwoStageWM's "
                     "delta -> render composition on a [2, 3] batch, traced under jit", composition_errors(), 0),
  ]


def grpo_claim(config, curve: dict, wm: nnx.Module) -> report.Claim:
  return report.at_most("ci_grpo_finite", f"non-finite arrays after {config.grpo_updates} GRPO updates of the "
                        f"delta head on a {config.widgets}-widget ToyUI (the smoke run's own GRPO)",
                        grpo_nonfinite(curve, wm), 0)
