"""Expert-bias load balancing for MoE routers: SMEBU and the sign rule.

Implements the two bias updates of the Arcee Trinity report (arXiv 2602.17004, section on
load balancing) as optax transforms. The "gradient" these transforms consume is the per-expert
load excess, not a loss gradient; the "params" they update are the router's selection biases.

With `n_i` the number of (token, slot) assignments to expert `i` in one optimizer step and
`n̄ = mean_i n_i`, the load excess is `e_i = (n_i - n̄) / n̄` (`v_i = -e_i` is the normalized
violation of the report; `v_i > 0` means under-loaded).

SMEBU (Soft-clamped Momentum Expert Bias Updates, Trinity Large)::

  Δb_i = λ · tanh(κ · v_i)
  Δb   ← Δb − mean_i(Δb)                 # center the update
  m    ← β · m + (1 − β) · Δb            # momentum, init 0, no bias correction
  b    ← b + m

Sign rule (DeepSeek-V3 auxiliary-loss-free balancing, Wang et al., arXiv 2408.15664), with the
re-centering used by Trinity Nano/Mini and TorchTitan::

  Δb_i = γ · sign(v_i);   Δb ← Δb − mean_i(Δb);   b ← b + Δb

Both updates are centered over the expert axis, so `Σ_i b_i` stays 0 when `b` starts at 0.
Experts are on the LAST axis; any leading axes (e.g. layers) are treated independently, and the
inputs may be pytrees (one array per MoE layer). Apply the returned updates with
`optax.apply_updates(biases, updates)`.

MaxVio (Wang et al., arXiv 2408.15664): `MaxVio = (max_i n_i − n̄) / n̄`; 0 is perfect balance.

Example::

  tx = smebu(learning_rate=5e-4, momentum=0.5, kappa=2.0)
  state = tx.init(biases)                        # biases: [layers, experts] float32
  updates, state = tx.update(load_excess(counts), state)
  biases = optax.apply_updates(biases, updates)

To schedule `learning_rate` (DeepSeek-V3 sets γ to 0 late in training), wrap the factory with
`optax.inject_hyperparams(smebu)(learning_rate=...)`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxpapers.optim import _checks, _sharding


class SmebuState(NamedTuple):
  """State of :func:`smebu`.

  Attributes:
    momentum: The momentum buffer `m`, a pytree with the structure, shapes and shardings of the
      biases; float32 (float64 for float64 biases: the biases' dtype promoted with float32).
  """

  momentum: optax.Updates


def load_excess(counts: jax.Array) -> jax.Array:
  """The per-expert load excess `(n_i − n̄) / n̄` over the last (expert) axis.

  Args:
    counts: Assignment counts `n`, shape `[..., num_experts]` (any real dtype).

  Returns:
    A float32 array of the same shape; positive for over-loaded experts. Rows with no
    assignments at all (`n̄ = 0`) give 0 (no update).
  """
  counts = jnp.asarray(counts, jnp.float32)
  mean = jnp.mean(counts, axis=-1, keepdims=True)
  safe_mean = jnp.where(mean > 0, mean, 1.0)
  return jnp.where(mean > 0, (counts - mean) / safe_mean, 0.0)


def max_violation(counts: jax.Array) -> jax.Array:
  """MaxVio `(max_i n_i − n̄) / n̄` over the last (expert) axis.

  Args:
    counts: Assignment counts `n`, shape `[..., num_experts]`.

  Returns:
    A float32 array of shape `counts.shape[:-1]`; 0 means perfectly balanced.

  References:
    Wang et al., `Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts
    <https://arxiv.org/abs/2408.15664>`_, 2024
  """
  return jnp.max(load_excess(counts), axis=-1)


def _centered(x: jax.Array) -> jax.Array:
  return x - jnp.mean(x, axis=-1, keepdims=True)


def _momentum_dtype(bias: Any) -> jnp.dtype:
  """float32, or the biases' dtype when it is wider (float64)."""
  return jnp.promote_types(jnp.result_type(bias), jnp.float32)


def _update_dtype(excess: Any, bias: Any) -> jnp.dtype:
  """The dtype of the returned update: the biases' (params') if given, else the input's."""
  dtype = jnp.result_type(excess if bias is None else bias)
  return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.dtype(jnp.float32)


def _map_with_params(fn, updates: Any, params: Any, *rest: Any) -> Any:
  """`fn(update, *rest_leaves, param_or_None)` over the leaves of `updates`."""
  if params is None:
    return jax.tree.map(lambda u, *r: fn(u, *r, None), updates, *rest)
  return jax.tree.map(fn, updates, *rest, params)


def smebu(
    learning_rate: float = 5e-4,
    momentum: float = 0.5,
    kappa: float = 2.0,
) -> optax.GradientTransformationExtraArgs:
  """SMEBU: soft-clamped, centered, momentum expert-bias updates (Trinity Large).

  `update(load_excess, state, params=None)` takes the load excess `(n − n̄) / n̄` of each expert
  (see :func:`load_excess`; experts on the last axis, any leading axes, pytrees allowed) and
  returns the new momentum `m`, which is the bias update itself (`b ← b + m`).

  Dtypes and shardings follow optax's conventions: the momentum is created with the biases'
  sharding (so on an Explicit mesh the state's type does not change in `update`) and kept in
  float32 (float64 for float64 biases) whatever the biases' dtype; the returned update has the
  biases' dtype when `params` (the biases) are passed, else the dtype of the load excess. In
  float32 the arithmetic is exactly that of the formula above. Extra keyword arguments of
  `update` are accepted and ignored (`optax.GradientTransformationExtraArgs`).

  Args:
    learning_rate: The step size `λ` (Trinity Large: 5e-4).
    momentum: The momentum decay `β` (Trinity Large: 0.5). There is no bias correction, so the
      first step moves the bias by `(1 − β) · Δb`.
    kappa: The soft-clamp sharpness `κ` in `tanh(κ · v)` (Trinity Large: 2).

  Returns:
    An `optax.GradientTransformationExtraArgs` with state :class:`SmebuState`.

  References:
    Arcee AI, `Arcee Trinity Large Technical Report <https://arxiv.org/abs/2602.17004>`_, 2026

    Wang et al., `Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts
    <https://arxiv.org/abs/2408.15664>`_, 2024
  """

  def init_fn(params):
    return SmebuState(
        momentum=jax.tree.map(lambda b: jnp.zeros_like(b, dtype=_momentum_dtype(b)), params))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _checks.check_expert_axis("smebu", updates)
    _checks.check_like("smebu", updates, state.momentum, "biases (the momentum in the state)")
    _checks.check_like("smebu", updates, params, "biases (params)")

    def step(excess, m):
      excess = jnp.asarray(excess, m.dtype)
      delta = _centered(learning_rate * jnp.tanh(kappa * (-excess)))
      return (momentum * m + (1.0 - momentum) * delta).astype(m.dtype)

    new_m = _sharding.restore_like(jax.tree.map(step, updates, state.momentum), state.momentum)
    new_updates = _map_with_params(lambda e, m, b: m.astype(_update_dtype(e, b)), updates,
                                   params, new_m)
    return new_updates, SmebuState(momentum=new_m)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def sign_bias_balancing(learning_rate: float = 1e-3) -> optax.GradientTransformationExtraArgs:
  """The centered sign rule of auxiliary-loss-free balancing (DeepSeek-V3).

  `update(load_excess, state, params=None)` returns `γ · sign(−load_excess)` minus its mean
  over the expert axis (the re-centering of Trinity Nano/Mini and TorchTitan). Stateless.

  The rule is computed in float32 (float64 for float64 inputs) and returned in the biases'
  dtype when `params` (the biases) are passed, else in the dtype of the load excess. Extra
  keyword arguments of `update` are accepted and ignored.

  Args:
    learning_rate: The step size `γ` (DeepSeek-V3: 1e-3).

  Returns:
    An `optax.GradientTransformationExtraArgs` with state `optax.EmptyState`.

  References:
    Wang et al., `Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts
    <https://arxiv.org/abs/2408.15664>`_, 2024

    DeepSeek-AI, `DeepSeek-V3 Technical Report <https://arxiv.org/abs/2412.19437>`_, 2024
  """

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    _checks.check_expert_axis("sign_bias_balancing", updates)
    _checks.check_like("sign_bias_balancing", updates, params, "biases (params)")

    def step(excess, bias):
      e = jnp.asarray(excess, _momentum_dtype(excess))
      return _centered(learning_rate * jnp.sign(-e)).astype(_update_dtype(excess, bias))

    return _map_with_params(step, updates, params), state

  return optax.GradientTransformationExtraArgs(optax.init_empty_state, update_fn)
