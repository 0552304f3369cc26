"""Compatibility adapter: kfac-jax 0.0.8's jaxpr evaluator on JAX >= 0.9.2 (bench only).

kfac-jax 0.0.8 (the newest release on the package index) evaluates traced equations with
`tag_graph_matcher.eval_jaxpr_eqn`, which unpacks `Primitive.get_bind_params(params)` as a
`(subfuns, params)` pair and binds `primitive.bind(*subfuns, *inputs, **params)`. Newer JAX
(0.10.2 here) returns only the params dict from `get_bind_params` (call primitives put their
sub-functions inside it under "subfuns"), so the unpacking raises
`ValueError: too many values to unpack` and every curvature update fails.

`patch_kfac_jax()` replaces that one module function with an evaluator for the new API: bind
with the returned params only. It is applied only when both hold: the installed kfac-jax is a
release known to have the old call (`BROKEN_VERSIONS`), and this JAX's `get_bind_params`
returns a dict (probed on a plain primitive, not guessed from the version string). kfac-jax's
callers (`tracer.py`) look the function up as `tgm.eval_jaxpr_eqn` at call time, so replacing
the module attribute reaches all of them. (kfac-jax 0.0.8's `BlockDiagonalCurvature.param_order`,
used only by its explicit exact estimator, also fails on this JAX, `Var.count` is gone; it is not
needed here and not patched.) Used only by `experiments/crispedit/bench.py` and
`tests/optim/test_kfac_vs_kfac_jax.py`; nothing in `jaxpapers/` depends on kfac-jax.
"""

from __future__ import annotations

from typing import Any

import jax.extend as jex

BROKEN_VERSIONS = ("0.0.8",)


def _bind_params_is_dict() -> bool:
  """Whether this JAX's `Primitive.get_bind_params` returns the params dict alone."""
  probe = jex.core.Primitive("kfac_jax_compat_probe")
  return isinstance(probe.get_bind_params({}), dict)


def _eval_jaxpr_eqn(eqn: Any, in_values: list[Any]) -> list[Any]:
  """Outputs of one jaxpr equation, binding with the new-API `get_bind_params` result."""
  params = eqn.primitive.get_bind_params(eqn.params)
  with jex.source_info_util.user_context(eqn.source_info.traceback):
    output = eqn.primitive.bind(*in_values, **params)
  return output if isinstance(output, list) else [output]


def patch_kfac_jax() -> bool:
  """Applies the adapter if this kfac-jax/JAX pair needs it.

  Returns:
    True when kfac-jax's evaluator was replaced (or already had been), False when kfac-jax
    needed no change.
  """
  import kfac_jax  # pylint: disable=g-import-not-at-top
  from kfac_jax._src import tag_graph_matcher  # pylint: disable=g-import-not-at-top

  if tag_graph_matcher.eval_jaxpr_eqn is _eval_jaxpr_eqn:
    return True
  if kfac_jax.__version__ not in BROKEN_VERSIONS or not _bind_params_is_dict():
    return False
  tag_graph_matcher.eval_jaxpr_eqn = _eval_jaxpr_eqn
  return True
