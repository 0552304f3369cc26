"""Mixture-of-experts layer with a sigmoid top-k router and an expert bias (AFMoE).

Trinity Large Technical Report (Arcee, arXiv 2602.17004), sections on the MoE block and
load balancing; router form from DeepSeek-V3 (arXiv 2412.19437, section 2.1.2).

For a token `u_t` in R^d with router weight `W_r` in R^{d x E} (no bias), non-trainable
expert bias `b` in R^E, top-`K` routing over `E` routed experts and `N_s` shared experts:

  logits_t = u_t W_r                                 (float32)
  s_t      = sigmoid(logits_t)                       in (0, 1)^E
  S_t      = TopK_indices(s_t + b, K)                (the bias only selects)
  g_{i,t}  = route_scale * s_{i,t} / (sum_{j in S_t} s_{j,t} + 1e-20)   for i in S_t
  y_t      = SwiGLU_shared(u_t) + sum_{i in S_t} g_{i,t} SwiGLU_i(u_t)

with `SwiGLU(x) = (silu(x W_gate) * (x W_up)) W_down` and the shared expert of width
`F * N_s`. The residual connection and the sandwich norms belong to the decoder block.

The layer also returns the expert loads `n_i` = number of (token, slot) assignments to
expert `i` (what SMEBU and the sign rule balance), summed over the whole input; under `jax.jit`
with the batch sharded over devices that sum is the global load. The trainer turns loads into
bias updates (SMEBU or the sign rule) outside autodiff: `expert_bias` and `bias_momentum` are `RouterState`
variables, not `nnx.Param`, so `nnx.Optimizer(model, tx, wrt=nnx.Param)` never sees them.

Two dispatch paths compute the same function:

- `"dense"`: every expert runs on every token (one einsum over the expert axis) and a
  one-hot gate matrix combines them. `E / K` times the useful FLOPs; for tiny shapes.
- `"ragged"`: the `N * K` (token, slot) assignments are sorted by expert, their tokens
  gathered, both expert matmuls done with `jax.lax.ragged_dot` (group sizes = loads), the
  results scaled by the gates, unsorted and summed over the `K` slots. Static shapes, jit-able
  and differentiable. On CPU, jax lowers `ragged_dot` to a masked dense contraction (K times
  the dense path's FLOPs), so this path only pays off where XLA has a ragged kernel (GPU, TPU).
  Under an Explicit mesh it runs with the mesh axes switched to Auto (see `MoE._ragged`).
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import AxisType

Dispatch = Literal["dense", "ragged"]

_GATE_EPS = 1e-20


class RouterState(nnx.Variable):
  """Non-trainable router state (expert bias, bias momentum); float32, no gradient."""


class Routing(NamedTuple):
  """The router's decisions for a `[B, T, d]` input.

  Attributes:
    scores: `[B, T, E]` float32 sigmoid scores `s_t` (unbiased).
    selected: `[B, T, K]` int32 expert indices, chosen on `s_t + b` (best first).
    gates: `[B, T, K]` float32 gate values from the unbiased scores, times `route_scale`.
  """

  scores: jax.Array
  selected: jax.Array
  gates: jax.Array


class SwiGLU(nnx.Module):
  """SwiGLU MLP without biases: `down(silu(x @ gate) * (x @ up))`.

  Kernels use the Flax layout (input dimension first): `gate, up: [d, F]`, `down: [F, d]`.
  """

  def __init__(self, d_model: int, width: int, *, init_std: float = 0.02,
               dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    """Builds the MLP.

    Args:
      d_model: input and output width `d`.
      width: intermediate width `F`.
      init_std: standard deviation of the normal initialisation of all three kernels.
      dtype: computation dtype (parameters are stored in float32).
      rngs: random streams for the initialisation.
    """
    init = nnx.initializers.normal(init_std)
    kwargs = dict(use_bias=False, kernel_init=init, dtype=dtype, param_dtype=jnp.float32,
                  rngs=rngs)
    self.gate = nnx.Linear(d_model, width, **kwargs)
    self.up = nnx.Linear(d_model, width, **kwargs)
    self.down = nnx.Linear(width, d_model, **kwargs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the MLP to the last axis of `x` (`[..., d] -> [..., d]`)."""
    return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


def _explicit_axes() -> tuple[str, ...]:
  """Names of the Explicit axes of the mesh in context (empty outside `jax.set_mesh`)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return ()
  return tuple(name for name, kind in zip(mesh.axis_names, mesh.axis_types)
               if kind == AxisType.Explicit)


class MoE(nnx.Module):
  """Routed SwiGLU experts with a sigmoid top-k router, expert bias and shared experts.

  Parameters (`nnx.Param`): `router [d, E]`, `gate_up [E, d, 2F]` (the first `F` output
  columns are the gate projection, the last `F` the up projection), `down [E, F, d]`, and the
  shared expert `shared` (a `SwiGLU` of width `F * num_shared`, absent when `num_shared=0`).
  Router state (`RouterState`, float32 zeros): `expert_bias [E]`, `bias_momentum [E]`.

  Calling the layer on `x [B, T, d]` returns `(y [B, T, d], counts [E] float32)`.
  """

  def __init__(self, d_model: int, num_experts: int, top_k: int, expert_width: int, *,
               num_shared: int = 1, route_scale: float = 1.0, dispatch: Dispatch = "dense",
               router_init_std: float = 0.02, init_std: float = 0.02,
               dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    """Builds the layer.

    Args:
      d_model: token width `d`.
      num_experts: number of routed experts `E`.
      top_k: experts per token `K`, `1 <= K <= E`.
      expert_width: intermediate width `F` of each routed expert.
      num_shared: number of shared (always-on) experts `N_s`; they form one SwiGLU of width
        `F * N_s`. 0 disables the shared expert.
      route_scale: multiplies the normalised gates of the routed experts (2.448 in Trinity
        Large, 1.0 in the HF AFMoE defaults).
      dispatch: `"dense"` (all experts on all tokens) or `"ragged"` (sort + ragged_dot).
      router_init_std: standard deviation of the router's normal init. The HF code uses zeros;
        a small normal init gives non-degenerate routing from step 0 (our default).
      init_std: standard deviation of the normal init of the expert kernels.
      dtype: computation dtype of the experts (the router always computes in float32 and
        parameters are stored in float32).
      rngs: random streams for the initialisation.

    Raises:
      ValueError: on an unknown `dispatch`, or a `top_k` outside `[1, num_experts]`.
    """
    if dispatch not in ("dense", "ragged"):
      raise ValueError(f"dispatch={dispatch!r} is invalid: use 'dense' or 'ragged'")
    if not 1 <= top_k <= num_experts:
      raise ValueError(f"top_k={top_k} is invalid: must be in [1, num_experts={num_experts}]")
    if num_shared < 0:
      raise ValueError(f"num_shared={num_shared} is invalid: must be >= 0")
    self.d_model, self.num_experts, self.top_k = d_model, num_experts, top_k
    self.expert_width, self.num_shared = expert_width, num_shared
    self.route_scale, self.dispatch, self.dtype = route_scale, dispatch, dtype
    e, d, f = num_experts, d_model, expert_width
    self.router = nnx.Param(
        nnx.initializers.normal(router_init_std)(rngs.params(), (d, e), jnp.float32))
    expert_init = nnx.initializers.normal(init_std)
    self.gate_up = nnx.Param(expert_init(rngs.params(), (e, d, 2 * f), jnp.float32))
    self.down = nnx.Param(expert_init(rngs.params(), (e, f, d), jnp.float32))
    self.shared = (SwiGLU(d, f * num_shared, init_std=init_std, dtype=dtype, rngs=rngs)
                   if num_shared > 0 else None)
    self.expert_bias = RouterState(jnp.zeros((e,), jnp.float32))
    self.bias_momentum = RouterState(jnp.zeros((e,), jnp.float32))

  def route(self, x: jax.Array) -> Routing:
    """Scores, selected experts and gates for `x [B, T, d]` (see the module equations)."""
    logits = jnp.einsum("btd,de->bte", x.astype(jnp.float32), self.router[...].astype(jnp.float32))
    scores = jax.nn.sigmoid(logits)
    # The bias only ranks experts: selection is not differentiable and the bias gets no gradient.
    biased = jax.lax.stop_gradient(scores + self.expert_bias[...])
    _, selected = jax.lax.top_k(biased, self.top_k)
    chosen = jnp.take_along_axis(scores, selected, axis=-1)
    gates = chosen / (jnp.sum(chosen, axis=-1, keepdims=True) + _GATE_EPS) * self.route_scale
    return Routing(scores, selected.astype(jnp.int32), gates)

  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Applies the layer.

    Args:
      x: `[B, T, d]` tokens.
      mask: optional `[B, T]`, 1 (or True) for real tokens, 0 for padding. Padded tokens are
        left out of `counts`; their outputs are still computed (the loss should mask them).

    Returns:
      `y [B, T, d]` in the computation dtype, and `counts [E]` float32: the number of
      (token, slot) assignments per expert over the whole input (global under a sharded jit),
      under `stop_gradient`.
    """
    routing = self.route(x)
    counts = self._counts(routing.selected, mask)
    if self.dispatch == "dense":
      routed = self._dense(x, routing)
    else:
      routed = self._ragged(x, routing)
    y = routed if self.shared is None else routed + self.shared(x.astype(self.dtype))
    return y, counts

  def _counts(self, selected: jax.Array, mask: jax.Array | None) -> jax.Array:
    hits = jax.nn.one_hot(selected, self.num_experts, dtype=jnp.float32)  # [B, T, K, E]
    if mask is not None:
      hits = hits * mask.astype(jnp.float32)[:, :, None, None]
    # A sum over the (possibly sharded) batch axis: XLA all-reduces it, so this is global.
    return jax.lax.stop_gradient(jnp.sum(hits, axis=(0, 1, 2)))

  def _dense(self, x: jax.Array, routing: Routing) -> jax.Array:
    """All experts on all tokens, combined with a `[B, T, E]` gate matrix (zero off `S_t`).

    The gates scale the hidden activations before the down projection (it is linear), so
    that projection is one contraction over (expert, width) and no `[B, T, E, d]` array of
    per-expert outputs is formed.
    """
    f = self.expert_width
    xc = x.astype(self.dtype)
    h = jnp.einsum("btd,edf->btef", xc, self.gate_up[...].astype(self.dtype))
    act = jax.nn.silu(h[..., :f]) * h[..., f:]
    combine = jnp.einsum("btk,btke->bte", routing.gates,
                         jax.nn.one_hot(routing.selected, self.num_experts, dtype=jnp.float32))
    act = act * combine.astype(self.dtype)[..., None]
    return jnp.einsum("btef,efd->btd", act, self.down[...].astype(self.dtype))

  def _ragged(self, x: jax.Array, routing: Routing) -> jax.Array:
    """Sort the `N K` assignments by expert, two `ragged_dot`s, unsort, sum over slots."""
    dispatch = functools.partial(_ragged_dispatch, expert_width=self.expert_width,
                                 dtype=self.dtype)
    args = (x, routing.selected, routing.gates, self.gate_up[...], self.down[...])
    if _explicit_axes():
      # Under an Explicit mesh this path cannot be typed: sort refuses an operand split over
      # the sorted axis, the token gather and the scatter have ambiguous output shardings, and
      # ragged_dot has no sharding rule ("specify out_sharding"), which its transpose rule
      # never does, so even an all-gathered input fails in the backward pass. The simple fix:
      # run the dispatch with the mesh axes switched to Auto (the XLA partitioner chooses the
      # intermediate shardings, inserting collectives as needed) and hand y back with x's
      # sharding. Expert parallelism (all-to-all dispatch in shard_map) would be the
      # scalable alternative.
      dispatch = jax.sharding.auto_axes(dispatch, out_sharding=jax.typeof(x).sharding.spec)
    return dispatch(*args)


def _ragged_dispatch(x: jax.Array, selected: jax.Array, gates: jax.Array, gate_up: jax.Array,
                     down: jax.Array, *, expert_width: int, dtype: jnp.dtype) -> jax.Array:
  """Routed experts by sorting: `x [B, T, d]`, `selected, gates [B, T, K]` -> `[B, T, d]`."""
  b, t, d = x.shape
  k, e, f = selected.shape[-1], gate_up.shape[0], expert_width
  n = b * t
  xc = x.reshape(n, d).astype(dtype)
  flat_experts = selected.reshape(n * k)
  order = jnp.argsort(flat_experts, stable=True)              # assignment slots, grouped by expert
  group_sizes = jnp.sum(jax.nn.one_hot(flat_experts, e, dtype=jnp.int32), axis=0)
  tokens = xc[order // k]                                     # [N K, d]
  h = jax.lax.ragged_dot(tokens, gate_up.astype(dtype), group_sizes)
  act = jax.nn.silu(h[:, :f]) * h[:, f:]
  out = jax.lax.ragged_dot(act, down.astype(dtype), group_sizes)                  # [N K, d]
  out = out * gates.reshape(n * k)[order][:, None].astype(dtype)
  inverse = jnp.zeros_like(order).at[order].set(jnp.arange(n * k, dtype=order.dtype))
  return out[inverse].reshape(b, t, k, d).sum(axis=2)


def auxiliary_balance_loss(scores: jax.Array, selected: jax.Array, top_k: int) -> jax.Array:
  """Sequence-wise balance loss of DeepSeek-V3 (arXiv 2412.19437), without the factor `alpha`.

  Per sequence of `T` tokens: `f_i = E / (K T) * sum_t 1[i in S_t]`,
  `P_i = (1/T) sum_t s_{i,t} / sum_j s_{j,t}`, `L = sum_i f_i P_i`; averaged over sequences.
  `f` is a count (no gradient); the gradient flows through `P`. Perfectly uniform scores
  give `L = 1` whatever the selection.

  Args:
    scores: `[B, T, E]` unbiased sigmoid scores (`MoE.route(x).scores`).
    selected: `[B, T, K]` selected expert indices (`MoE.route(x).selected`).
    top_k: `K`.

  Returns:
    The scalar loss (multiply by `alpha`, e.g. 1e-4 in Trinity Large).

  Raises:
    ValueError: shapes or dtypes do not fit (checked at trace time).
  """
  chex.assert_rank([scores, selected], 3, exception_type=ValueError,
                   custom_message="auxiliary_balance_loss: scores [B, T, E], selected [B, T, K]")
  chex.assert_equal_shape_prefix([scores, selected], 2, exception_type=ValueError,
                                 custom_message="auxiliary_balance_loss: scores and selected share [B, T]")
  chex.assert_axis_dimension(selected, 2, top_k, exception_type=ValueError,
                             custom_message=f"auxiliary_balance_loss: selected holds top_k={top_k} experts per token")
  chex.assert_type(scores, float, exception_type=ValueError,
                   custom_message="auxiliary_balance_loss: scores are floating")
  chex.assert_type(selected, int, exception_type=ValueError,
                   custom_message="auxiliary_balance_loss: selected holds integer expert indices")
  _, t, e = scores.shape
  hits = jnp.sum(jax.nn.one_hot(selected, e, dtype=jnp.float32), axis=(1, 2))  # [B, E]
  f = jax.lax.stop_gradient(hits * e / (top_k * t))
  p = jnp.mean(scores / jnp.sum(scores, axis=-1, keepdims=True), axis=1)       # [B, E]
  return jnp.mean(jnp.sum(f * p, axis=-1))
