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
`dense_layer_curvature` sets up kfac-jax's estimator for the one-layer comparisons of both.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
import optax

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


def dense_layer_curvature(w: jax.Array, readout: Callable[[jax.Array], jax.Array],
                          example: dict[str, Any], mode: str):
  """kfac-jax's `BlockDiagonalCurvature` of `logits = readout(x @ w)`, `w` its only parameter.

  Args:
    w: the Dense kernel `[d_in, d_out]` (registered with `register_dense`; `readout` is constant).
    readout: pre-activations `[tokens, d_out]` -> logits.
    example: a batch `{"x": [tokens, d_in], "targets": [tokens]}` to initialise the estimator.
    mode: kfac-jax's `estimation_mode` ("fisher_empirical", "fisher_exact", ...).

  Returns:
    `(update, state, factors)`: `update(state, batch)` (jitted) adds one batch with weight 1
    (`ema_old = ema_new = 1`, so the factors are the mean over batches), and `factors(state)`
    gives kfac-jax's `(A, G)` of `w` as float64 arrays.
  """
  import kfac_jax  # pylint: disable=g-import-not-at-top

  patch_kfac_jax()

  def loss(params, batch):
    x = batch["x"]
    logits = readout(kfac_jax.register_dense(x @ params["w"], x, params["w"]))
    kfac_jax.register_softmax_cross_entropy_loss(logits, batch["targets"])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]))

  params = {"w": w}
  estimator = kfac_jax.BlockDiagonalCurvature(func=loss)
  rng = jax.random.key(0)
  state = estimator.init(rng, (params, example), None, None)

  @jax.jit
  def update(state, batch):
    return estimator.update_curvature_matrix_estimate(
        state, ema_old=1.0, ema_new=1.0, identity_weight=0.0, batch_size=batch["x"].shape[0],
        rng=rng, func_args=(params, batch), estimation_mode=mode)

  def factors(state):
    block = state.blocks_states[estimator.params_block_index["w"]]
    return tuple(np.asarray(f.value, np.float64) for f in block.factors)

  return update, state, factors
