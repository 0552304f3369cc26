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
with the batch sharded over devices that sum is the global load. `MoE.call_with_stats` adds the
two router losses the Trinity report trains with beside the bias balancing (its coefficients
belong to the caller): the sequence-wise balance loss of DeepSeek-V3 (arXiv 2412.19437,
eqs. 17-20; `auxiliary_balance_loss`) and the router z-loss of ST-MoE (arXiv 2202.08906,
eq. 5; `router_z_loss`), `mean_t (log sum_i exp(logits_{i,t}))^2`. The trainer turns loads into
bias updates (SMEBU or the sign rule) outside autodiff: `expert_bias` and `bias_momentum` are `RouterState`
variables, not `nnx.Param`, so `nnx.Optimizer(model, tx, wrt=nnx.Param)` never sees them.

Four dispatch paths compute the same function:

- `"dense"`: every expert runs on every token (one `[N, d] @ [d, E F]` matmul per projection)
  and a one-hot gate matrix combines them. `E / K` times the useful FLOPs; for tiny shapes.
- `"ragged"`: the `N * K` (token, slot) assignments are sorted by expert, their tokens
  gathered, both expert matmuls done with `jax.lax.ragged_dot` (group sizes = loads), the
  results scaled by the gates, unsorted and summed over the `K` slots. Static shapes, jit-able
  and differentiable. On CPU, jax lowers `ragged_dot` to a masked dense contraction (K times
  the dense path's FLOPs), so this path only pays off where XLA has a ragged kernel (GPU, TPU).
  Under an Explicit mesh it runs with the mesh axes switched to Auto (see `MoE._sorted`; `"blocked"` likewise).
- `"blocked"`: the dropless block-sparse formulation of MegaBlocks (Gale et al., arXiv
  2211.15841, section 5): the sorted assignments of each expert are padded to a multiple of
  `block_size` rows, so every block of rows belongs to one expert; the block's expert kernels are
  gathered and the experts run as batched `[block, d] @ [d, F]` matmuls over the
  `ceil((N K + E (block - 1)) / block)` blocks (a static bound), then unsorted and summed over
  the slots (per batch shard under a mesh that splits the batch: `MoE._blocked`). At most
  `E (block - 1)` padding rows of work per shard beyond the useful FLOPs, with plain
  batched matmuls that every backend compiles well. On CPU, at the tiny Trinity LM's shapes, one
  layer's forward and backward took 22-26 ms against dense's 75-126 ms in a one-off timing under
  load (experiments/trinity/README.md); `jaxpapers bench trinity` times the three paths.
- `"expert_parallel"`: tokens travel to the devices that hold their experts and back, the
  all-to-all dispatch of GShard (arXiv 2006.16668, section 2; MaxText's MoE does the same in
  `shard_map`). Under a mesh whose `expert` axis has `P > 1` devices, inside `jax.shard_map`
  over the batch axes (`data`, `fsdp`, `expert`; `tensor` stays Auto, so the compiler still
  splits the experts' hidden width): device `p` holds experts `p E / P ... (p + 1) E / P - 1`
  (the kernels' leading axis split over `expert`) and its share of the batch. It sorts its
  `A = b t K` local assignments by expert (hence by destination), sends them with
  `jax.lax.all_to_all` over `expert` in a `[P, A, d]` buffer (capacity `A` per destination:
  no token is ever dropped, so the result is exact; `ragged_all_to_all` does not lower on
  CPU), runs its local experts on what it received (sort + `ragged_dot`), and the inverse
  all-to-all brings the outputs back, which are gated, unsorted and summed over the slots.
  The received buffer is `P A` rows: memory is traded for exactness (a capacity factor would
  shrink it by dropping overflow). Routing and the loads stay outside the map, on the global
  batch, so `counts` (what SMEBU balances) are the global loads. With no mesh in context or an
  `expert` axis of size 1 this path is `"ragged"`; `"dense"` and `"ragged"` keep their meaning
  under any mesh (they replicate the kernels).
"""

from __future__ import annotations

import functools
import math
from typing import Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from jaxpapers.core.mesh import BATCH_AXES
from jaxpapers.nn import partitioning

Dispatch = Literal["dense", "ragged", "blocked", "expert_parallel"]
DISPATCHES: tuple[str, ...] = ("dense", "ragged", "blocked", "expert_parallel")
EXPERT_AXIS = "expert"  # the mesh axis that splits the routed experts

_GATE_EPS = 1e-20
ROUTER_INITS: tuple[str, ...] = ("normal", "zeros")


class RouterState(nnx.Variable):
  """Non-trainable router state (expert bias, bias momentum); float32, no gradient."""


class Routing(NamedTuple):
  """The router's decisions for a `[B, T, d]` input.

  Attributes:
    scores: `[B, T, E]` float32 sigmoid scores `s_t` (unbiased).
    selected: `[B, T, K]` int32 expert indices, chosen on `s_t + b` (best first).
    gates: `[B, T, K]` float32 gate values from the unbiased scores, times `route_scale`.
    logits: `[B, T, E]` float32 router logits `u_t W_r` (what the z-loss reads).
  """

  scores: jax.Array
  selected: jax.Array
  gates: jax.Array
  logits: jax.Array


class RouterStats(NamedTuple):
  """What one MoE layer reports besides its output (`MoE.call_with_stats`).

  Attributes:
    counts: `[E]` float32 expert loads over the real tokens (no gradient).
    balance_loss: `[]` the sequence-wise balance loss `auxiliary_balance_loss` (no `alpha`).
    z_loss: `[]` the router z-loss `router_z_loss` (no coefficient).
  """

  counts: jax.Array
  balance_loss: jax.Array
  z_loss: jax.Array


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
    into = partitioning.metadata((partitioning.EMBED, partitioning.MLP))
    self.gate = nnx.Linear(d_model, width, kernel_metadata=into, **kwargs)
    self.up = nnx.Linear(d_model, width, kernel_metadata=into, **kwargs)
    self.down = nnx.Linear(width, d_model, **kwargs, kernel_metadata=partitioning.metadata(
        (partitioning.MLP, partitioning.EMBED)))

  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the MLP to the last axis of `x` (`[..., d] -> [..., d]`)."""
    return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


def _expert_axis_size() -> int:
  """Size of the `expert` axis of the mesh in context (1 outside `jax.set_mesh` or without it)."""
  mesh = jax.sharding.get_abstract_mesh()
  return 1 if mesh.empty else dict(mesh.shape).get(EXPERT_AXIS, 1)


def _explicit_axes() -> tuple[str, ...]:
  """Names of the Explicit axes of the mesh in context (empty outside `jax.set_mesh`)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty:
    return ()
  return tuple(name for name, kind in zip(mesh.axis_names, mesh.axis_types)
               if kind == AxisType.Explicit)


def _top_k_indices(values: jax.Array, k: int) -> jax.Array:
  """`jax.lax.top_k(values, k)[1]`, per shard when `values` is split over Explicit mesh axes.

  XLA's SPMD partitioner all-gathers the operand of its TopK custom call (seen on CPU, jax
  0.10): the whole `[B, T, E]` scores of the global batch on every device. The selection is
  per token, so under a batch-split Explicit type it runs inside `shard_map` instead.
  """
  spec = tuple(jax.typeof(values).sharding.spec)
  spec += (None,) * (values.ndim - len(spec))
  axes = {a for entry in spec if entry is not None
          for a in (entry if isinstance(entry, tuple) else (entry,))}
  if not axes or spec[-1] is not None:
    return jax.lax.top_k(values, k)[1]
  return jax.shard_map(lambda v: jax.lax.top_k(v, k)[1], in_specs=P(*spec), out_specs=P(*spec),
                       axis_names=axes)(values)


class MoE(nnx.Module):
  """Routed SwiGLU experts with a sigmoid top-k router, expert bias and shared experts.

  Parameters (`nnx.Param`, logical axes in brackets): `router [d, E]` (embed, -),
  `gate [E, d, F]` and `up [E, d, F]` (expert, embed, mlp), `down [E, F, d]` (expert, mlp,
  embed), and the shared expert `shared` (a `SwiGLU` of width `F * num_shared`, absent when `num_shared=0`).
  Router state (`RouterState`, float32 zeros): `expert_bias [E]`, `bias_momentum [E]`.

  Calling the layer on `x [B, T, d]` returns `(y [B, T, d], counts [E] float32)`.
  """

  def __init__(self, d_model: int, num_experts: int, top_k: int, expert_width: int, *,
               num_shared: int = 1, route_scale: float = 1.0, dispatch: Dispatch = "dense",
               block_size: int = 64, router_init: str = "normal", router_init_std: float = 0.02,
               init_std: float = 0.02,
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
      dispatch: `"dense"` (all experts on all tokens), `"ragged"` (sort + ragged_dot),
        `"blocked"` (sort, pad each expert's rows to whole blocks, batched matmuls per block) or
        `"expert_parallel"` (all-to-all to the devices of the mesh's `expert` axis that hold
        the experts; the ragged path without such an axis). See the module docstring.
      block_size: rows per block of the `"blocked"` dispatch.
      router_init: `"normal"` (`N(0, router_init_std^2)`, the default) or `"zeros"` (the
        Hugging Face AFMoE reference's `_init_weights`: every score starts at 0.5, ties broken
        by index, so the bias alone spreads the first steps' tokens). The report (arXiv
        2602.17004) does not state the router's init in what we could read of it (spec 1.1
        quotes only the HF code); the HF `_init_weights` is the Transformers library's
        from-scratch init, not necessarily the pretraining code's. We keep the normal init
        as the default (spec 1.1's choice for the toy runs: non-degenerate routing from step 0,
        and the figures of experiments/trinity/README.md). Both draw the same random key, so
        the other parameters do not depend on this choice.
      router_init_std: standard deviation of the router's normal init.
      init_std: standard deviation of the normal init of the expert kernels.
      dtype: computation dtype of the experts (the router always computes in float32 and
        parameters are stored in float32).
      rngs: random streams for the initialisation.

    Raises:
      ValueError: on an unknown `dispatch` or `router_init`, or a `top_k` outside
        `[1, num_experts]`.
    """
    if dispatch not in DISPATCHES:
      raise ValueError(f"dispatch={dispatch!r} is invalid: use one of {DISPATCHES}")
    if router_init not in ROUTER_INITS:
      raise ValueError(f"router_init={router_init!r} is invalid: use one of {ROUTER_INITS}")
    if not 1 <= top_k <= num_experts:
      raise ValueError(f"top_k={top_k} is invalid: must be in [1, num_experts={num_experts}]")
    if num_shared < 0:
      raise ValueError(f"num_shared={num_shared} is invalid: must be >= 0")
    if block_size < 1:
      raise ValueError(f"block_size={block_size} is invalid: must be >= 1")
    self.d_model, self.num_experts, self.top_k = d_model, num_experts, top_k
    self.expert_width, self.num_shared = expert_width, num_shared
    self.route_scale, self.dispatch, self.dtype = route_scale, dispatch, dtype
    self.block_size = block_size
    e, d, f = num_experts, d_model, expert_width
    router = nnx.initializers.normal(router_init_std)(rngs.params(), (d, e), jnp.float32)
    if router_init == "zeros":
      router = jnp.zeros_like(router)
    self.router = partitioning.param(router, (partitioning.EMBED, None))
    expert_init = nnx.initializers.normal(init_std)
    gate_up = expert_init(rngs.params(), (e, d, 2 * f), jnp.float32)  # one draw: gate, then up
    expert_in = (partitioning.EXPERT, partitioning.EMBED, partitioning.MLP)
    self.gate = partitioning.param(gate_up[..., :f], expert_in)
    self.up = partitioning.param(gate_up[..., f:], expert_in)
    self.down = partitioning.param(expert_init(rngs.params(), (e, f, d), jnp.float32),
                                   (partitioning.EXPERT, partitioning.MLP, partitioning.EMBED))
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
    selected = _top_k_indices(biased, self.top_k)
    chosen = jnp.take_along_axis(scores, selected, axis=-1)
    gates = chosen / (jnp.sum(chosen, axis=-1, keepdims=True) + _GATE_EPS) * self.route_scale
    return Routing(scores, selected.astype(jnp.int32), gates, logits)

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
    y, stats = self.call_with_stats(x, mask)
    return y, stats.counts

  def call_with_stats(self, x: jax.Array, mask: jax.Array | None = None
                      ) -> tuple[jax.Array, RouterStats]:
    """`__call__` that also returns the router losses of this input.

    Args:
      x: `[B, T, d]` tokens.
      mask: optional `[B, T]` real-token mask, as in `__call__`; padded tokens are left out of
        the counts and of both losses.

    Returns:
      `y [B, T, d]` and `RouterStats(counts, balance_loss, z_loss)`; the losses are
      differentiable with respect to the router weight (under jit, unused ones cost nothing).
    """
    routing = self.route(x)
    counts = self._counts(routing.selected, mask)
    stats = RouterStats(counts,
                        auxiliary_balance_loss(routing.scores, routing.selected, self.top_k, mask),
                        router_z_loss(routing.logits, mask))
    if self.dispatch == "dense":
      routed = self._dense(x, routing)
    elif self.dispatch == "expert_parallel" and _expert_axis_size() > 1:
      routed = self._expert_parallel(x, routing)
    elif self.dispatch == "blocked":
      routed = self._blocked(x, routing)
    else:
      routed = self._sorted(x, routing, _ragged_dispatch)
    y = routed if self.shared is None else routed + self.shared(x.astype(self.dtype))
    return y, stats

  def _counts(self, selected: jax.Array, mask: jax.Array | None) -> jax.Array:
    hits = jax.nn.one_hot(selected, self.num_experts, dtype=jnp.float32)  # [B, T, K, E]
    if mask is not None:
      hits = hits * mask.astype(jnp.float32)[:, :, None, None]
    # A sum over the (possibly sharded) batch axis: XLA all-reduces it, so this is global.
    return jax.lax.stop_gradient(jnp.sum(hits, axis=(0, 1, 2)))

  def _dense(self, x: jax.Array, routing: Routing) -> jax.Array:
    """All experts on all tokens, combined with a `[N, E]` gate matrix (zero off `S_t`).

    Each projection is one plain 2-D matmul over the `N = B T` tokens: `[N, d] @ [d, E F]`
    for gate and up (the kernels' expert and width axes side by side), `[N, E F] @ [E F, d]`
    for down. The gates scale the hidden activations before the down projection (it is
    linear), so that projection is one contraction over (expert, width) and no `[N, E, d]`
    array of per-expert outputs is formed. The same contractions written as batched einsums
    (`btd,edf->btef`) compute the same values, but XLA's CPU backend runs their backward pass
    about 2x slower (measured at the small preset's shapes, experiments/trinity/README.md).
    """
    b, t, d = x.shape
    e, f = self.num_experts, self.expert_width
    n = b * t
    xc = x.reshape(n, d).astype(self.dtype)
    gate, up, down = (partitioning.unsplit(w[...]).astype(self.dtype)
                      for w in (self.gate, self.up, self.down))
    side_by_side = lambda w: jnp.transpose(w, (1, 0, 2)).reshape(d, e * f)  # [E, d, F] -> [d, E F]
    act = (jax.nn.silu((xc @ side_by_side(gate)).reshape(n, e, f))
           * (xc @ side_by_side(up)).reshape(n, e, f))
    combine = jnp.einsum("nk,nke->ne", routing.gates.reshape(n, -1),
                         jax.nn.one_hot(routing.selected.reshape(n, -1), e, dtype=jnp.float32))
    act = act * combine.astype(self.dtype)[..., None]
    y = act.reshape(n, e * f) @ down.reshape(e * f, d)
    # Under an Explicit mesh, splitting the batch-sharded token axis back into [B, T] needs the
    # output sharding spelled out (the default rule would move part of it onto T).
    out_sharding = jax.typeof(x).sharding if _explicit_axes() else None
    return y.reshape(b, t, d, out_sharding=out_sharding)

  def _sorted(self, x: jax.Array, routing: Routing, dispatch) -> jax.Array:
    """A dispatch that sorts the `N K` assignments by expert (`_ragged_dispatch` or
    `_blocked_dispatch`), on the replicated kernels."""
    dispatch = functools.partial(dispatch, dtype=self.dtype)
    args = (x, routing.selected, routing.gates,
            *(partitioning.unsplit(w[...]) for w in (self.gate, self.up, self.down)))
    if _explicit_axes():
      # Under an Explicit mesh these paths cannot be typed: sort refuses an operand split over
      # the sorted axis, the token gather and the scatter have ambiguous output shardings, and
      # ragged_dot has no sharding rule ("specify out_sharding"), which its transpose rule
      # never does, so even an all-gathered input fails in the backward pass. The simple fix:
      # run the dispatch with the mesh axes switched to Auto (the XLA partitioner chooses the
      # intermediate shardings, inserting collectives as needed) and hand y back with x's
      # sharding. `dispatch="expert_parallel"` is the scalable alternative.
      dispatch = jax.sharding.auto_axes(dispatch, out_sharding=jax.typeof(x).sharding.spec)
    return dispatch(*args)

  def _blocked(self, x: jax.Array, routing: Routing) -> jax.Array:
    """The blocked dispatch, per batch shard under a mesh that splits the batch.

    Each device sorts and runs its own tokens (`jax.shard_map` over the mesh's batch axes, the
    kernels gathered whole, as FSDP gathers them for any layer); without it the partitioner
    would replicate the sort and every block's matmul on every device. Without such a mesh, or
    with a batch the shards do not divide, it runs on the whole batch (`MoE._sorted`).
    """
    dispatch = functools.partial(_blocked_dispatch, block=self.block_size)
    mesh = jax.sharding.get_abstract_mesh()
    sizes = {} if mesh.empty else dict(mesh.shape)
    batch_axes = tuple(a for a in BATCH_AXES if a in sizes)
    shards = math.prod(sizes[a] for a in batch_axes)
    if shards == 1 or x.shape[0] % shards:
      return self._sorted(x, routing, dispatch)
    batch = P(batch_axes)
    per_shard = jax.shard_map(functools.partial(dispatch, dtype=self.dtype), mesh=mesh,
                              in_specs=(batch, batch, batch, P(), P(), P()), out_specs=batch,
                              axis_names=set(batch_axes))
    y = per_shard(x, routing.selected, routing.gates,
                  *(partitioning.unsplit(w[...]) for w in (self.gate, self.up, self.down)))
    if _explicit_axes():  # hand y back with x's sharding
      y = jax.sharding.reshard(y, jax.typeof(x).sharding.spec)
    return y

  def _expert_parallel(self, x: jax.Array, routing: Routing) -> jax.Array:
    """Expert-parallel dispatch: all-to-all over `expert` inside `jax.shard_map`.

    The batch is split over the mesh's batch axes (`data`, `fsdp`, `expert`, those present),
    the expert kernels over `expert` on their leading axis, and every other mesh axis
    (`tensor`) stays Auto inside the map. Routing (and so `counts`) was computed outside it,
    on the global batch.
    """
    mesh = jax.sharding.get_abstract_mesh()
    sizes = dict(mesh.shape)
    ep, e = sizes[EXPERT_AXIS], self.num_experts
    if e % ep:
      raise ValueError(f"dispatch='expert_parallel': num_experts={e} is not divisible by the "
                       f"mesh's expert axis ({ep} devices)")
    batch_axes = tuple(a for a in BATCH_AXES if a in sizes)
    shards = math.prod(sizes[a] for a in batch_axes)
    if x.shape[0] % shards:
      raise ValueError(f"dispatch='expert_parallel': batch {x.shape[0]} is not divisible by the "
                       f"{shards} devices of the mesh axes {batch_axes}")
    batch, experts = P(batch_axes), P(EXPERT_AXIS)
    dispatch = jax.shard_map(
        functools.partial(_expert_parallel_dispatch, axis=EXPERT_AXIS, dtype=self.dtype),
        mesh=mesh, in_specs=(batch, batch, batch, experts, experts, experts), out_specs=batch,
        axis_names=set(batch_axes))
    y = dispatch(x, routing.selected, routing.gates, self.gate[...], self.up[...],
                 self.down[...])
    if _explicit_axes():  # hand y back with x's sharding (a no-op for a batch-split x)
      y = jax.sharding.reshard(y, jax.typeof(x).sharding.spec)
    return y

def _ragged_dispatch(x: jax.Array, selected: jax.Array, gates: jax.Array, gate: jax.Array,
                     up: jax.Array, down: jax.Array, *, dtype: jnp.dtype) -> jax.Array:
  """Routed experts by sorting: `x [B, T, d]`, `selected, gates [B, T, K]` -> `[B, T, d]`."""
  b, t, d = x.shape
  k, e = selected.shape[-1], gate.shape[0]
  n = b * t
  xc = x.reshape(n, d).astype(dtype)
  flat_experts = selected.reshape(n * k)
  order = jnp.argsort(flat_experts, stable=True)              # assignment slots, grouped by expert
  group_sizes = jnp.sum(jax.nn.one_hot(flat_experts, e, dtype=jnp.int32), axis=0)
  tokens = xc[order // k]                                     # [N K, d]
  act = (jax.nn.silu(jax.lax.ragged_dot(tokens, gate.astype(dtype), group_sizes))
         * jax.lax.ragged_dot(tokens, up.astype(dtype), group_sizes))
  out = jax.lax.ragged_dot(act, down.astype(dtype), group_sizes)                  # [N K, d]
  out = out * gates.reshape(n * k)[order][:, None].astype(dtype)
  inverse = jnp.zeros_like(order).at[order].set(jnp.arange(n * k, dtype=order.dtype))
  return out[inverse].reshape(b, t, k, d).sum(axis=2)


def _blocked_dispatch(x: jax.Array, selected: jax.Array, gates: jax.Array, gate: jax.Array,
                      up: jax.Array, down: jax.Array, *, block: int, dtype: jnp.dtype) -> jax.Array:
  """Routed experts in whole blocks (MegaBlocks, arXiv 2211.15841, section 5).

  `x [B, T, d]`, `selected, gates [B, T, K]` -> `[B, T, d]`. The assignments sorted by expert
  are placed in a `[R, d]` buffer where expert `i`'s rows start at a multiple of `block`
  (`R = ceil((N K + E (block - 1)) / block) block` bounds every routing); block `j` runs the
  expert whose rows it holds (blocks past the last expert's hold zeros and are never read).
  """
  b, t, d = x.shape
  k, e = selected.shape[-1], gate.shape[0]
  n, a = b * t, b * t * selected.shape[-1]
  flat = selected.reshape(a)
  order = jnp.argsort(flat, stable=True)
  expert = flat[order]
  sizes = jnp.sum(jax.nn.one_hot(flat, e, dtype=jnp.int32), axis=0)            # loads [E]
  padded = (sizes + block - 1) // block * block
  ends = jnp.cumsum(padded)                                                     # in the buffer
  row = (ends - padded)[expert] + jnp.arange(a, dtype=jnp.int32) - (jnp.cumsum(sizes) - sizes)[expert]
  blocks = -(-(a + e * (block - 1)) // block)
  rows = jnp.zeros((blocks * block, d), dtype).at[row].set(
      x.reshape(n, d).astype(dtype)[order // k], unique_indices=True)
  starts = jnp.arange(blocks, dtype=ends.dtype) * block
  # The expert whose rows block j holds: how many experts' rows end at or before its start
  # (a comparison, not searchsorted, which fails inside shard_map in jax 0.10).
  owner = jnp.minimum(jnp.sum(ends[None, :] <= starts[:, None], axis=1), e - 1)  # [blocks]
  tiles = rows.reshape(blocks, block, d)
  act = (jax.nn.silu(jnp.einsum("nbd,ndf->nbf", tiles, gate.astype(dtype)[owner]))
         * jnp.einsum("nbd,ndf->nbf", tiles, up.astype(dtype)[owner]))
  out = jnp.einsum("nbf,nfd->nbd", act, down.astype(dtype)[owner]).reshape(blocks * block, d)
  out = out[row] * gates.reshape(a)[order][:, None].astype(dtype)              # [N K, d], sorted
  out = jnp.zeros_like(out).at[order].set(out, unique_indices=True)
  return out.reshape(b, t, k, d).sum(axis=2)


def _local_experts(rows: jax.Array, ids: jax.Array, gate: jax.Array, up: jax.Array,
                   down: jax.Array, *, dtype: jnp.dtype) -> jax.Array:
  """SwiGLU expert `ids[r]` on `rows[r]` (`[R, d]`), by sort + `ragged_dot`; `ids[r] = E_l`
  (the local expert count) marks a padding row, whose output is 0."""
  e_local = gate.shape[0]
  order = jnp.argsort(ids, stable=True)                 # padding (id E_l) sorts last
  group_sizes = jnp.sum(jax.nn.one_hot(ids, e_local, dtype=jnp.int32), axis=0)
  sorted_rows = rows[order]
  act = (jax.nn.silu(jax.lax.ragged_dot(sorted_rows, gate.astype(dtype), group_sizes))
         * jax.lax.ragged_dot(sorted_rows, up.astype(dtype), group_sizes))
  out = jax.lax.ragged_dot(act, down.astype(dtype), group_sizes)
  out = jnp.where((ids[order] < e_local)[:, None], out, 0)
  return jnp.zeros_like(out).at[order].set(out, unique_indices=True)


def _expert_parallel_dispatch(x: jax.Array, selected: jax.Array, gates: jax.Array,
                              gate: jax.Array, up: jax.Array, down: jax.Array, *, axis: str,
                              dtype: jnp.dtype) -> jax.Array:
  """One device's part of the expert-parallel dispatch (inside `shard_map`).

  `x [b, t, d]`, `selected, gates [b, t, K]`: this device's tokens and their global expert
  indices; `gate, up [E_l, d, F]`, `down [E_l, F, d]`: this device's `E_l = E / P` experts
  (device `p` of the `P` along `axis` holds experts `p E_l ... (p + 1) E_l - 1`). Each
  device sends every one of its `A = b t K` assignments to the device of its expert, in a
  `[P, A, d]` buffer (capacity `A` per destination: nothing is dropped), computes its experts
  on the `[P, A, d]` it receives, and the inverse all-to-all brings the results back.
  """
  b, t, d = x.shape
  k, e_local = selected.shape[-1], gate.shape[0]
  p = jax.lax.axis_size(axis)
  a = b * t * k
  flat = selected.reshape(a)
  order = jnp.argsort(flat, stable=True)                # by expert, hence by destination
  expert = flat[order]
  dest = expert // e_local
  sent = jnp.sum(jax.nn.one_hot(dest, p, dtype=jnp.int32), axis=0)           # [P]
  slot = jnp.arange(a, dtype=jnp.int32) - (jnp.cumsum(sent) - sent)[dest]   # row in dest's block
  tokens = x.reshape(b * t, d).astype(dtype)[order // k]                     # [A, d]
  send = jnp.zeros((p, a, d), dtype).at[dest, slot].set(tokens, unique_indices=True)
  ids = jnp.full((p, a), e_local, jnp.int32).at[dest, slot].set(
      expert % e_local, unique_indices=True)
  recv = jax.lax.all_to_all(send, axis, 0, 0)          # recv[q]: what device q sent here
  recv_ids = jax.lax.all_to_all(ids, axis, 0, 0)
  out = _local_experts(recv.reshape(p * a, d), recv_ids.reshape(p * a), gate, up, down,
                       dtype=dtype)
  back = jax.lax.all_to_all(out.reshape(p, a, d), axis, 0, 0)  # back[q]: q's results for us
  out = back[dest, slot] * gates.reshape(a)[order][:, None].astype(dtype)   # [A, d], sorted
  out = jnp.zeros_like(out).at[order].set(out, unique_indices=True)
  return out.reshape(b, t, k, d).sum(axis=2)


def auxiliary_balance_loss(scores: jax.Array, selected: jax.Array, top_k: int,
                           mask: jax.Array | None = None) -> jax.Array:
  """Sequence-wise balance loss of DeepSeek-V3 (arXiv 2412.19437, eqs. 17-20), without `alpha`.

  Per sequence of `T` tokens: `f_i = E / (K T) * sum_t 1[i in S_t]`,
  `P_i = (1/T) sum_t s_{i,t} / sum_j s_{j,t}`, `L = sum_i f_i P_i`; averaged over sequences.
  `f` is a count (no gradient); the gradient flows through `P`. Perfectly uniform scores
  give `L = 1` whatever the selection. With a `mask`, `T` is each sequence's number of real
  tokens and the sums run over those; a sequence with none contributes 0 (and is still counted
  in the mean over the `B` sequences).

  Args:
    scores: `[B, T, E]` unbiased sigmoid scores (`MoE.route(x).scores`).
    selected: `[B, T, K]` selected expert indices (`MoE.route(x).selected`).
    top_k: `K`.
    mask: optional `[B, T]`, 1 (or True) for real tokens, 0 for padding.

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
  b, t, e = scores.shape
  real = (jnp.ones((b, t), jnp.float32) if mask is None
          else jnp.broadcast_to(mask, (b, t)).astype(jnp.float32))
  tokens = jnp.maximum(jnp.sum(real, axis=1, keepdims=True), 1.0)                  # [B, 1]
  hits = jnp.einsum("btke,bt->be", jax.nn.one_hot(selected, e, dtype=jnp.float32), real)
  f = jax.lax.stop_gradient(hits * e / (top_k * tokens))                         # [B, E]
  normalized = scores.astype(jnp.float32) / jnp.sum(scores, axis=-1, keepdims=True)
  p = jnp.einsum("bte,bt->be", normalized, real) / tokens                        # [B, E]
  return jnp.mean(jnp.sum(f * p, axis=-1))


def router_z_loss(logits: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Router z-loss of ST-MoE (Zoph et al., arXiv 2202.08906, eq. 5), without its coefficient.

  `L_z = (1/N) sum_t (log sum_i exp(logits_{i,t}))^2` over the `N` real tokens: it keeps the
  router logits small (the Trinity report adds it with coefficient 1e-4, then 1e-6).

  Args:
    logits: `[..., E]` router logits (`MoE.route(x).logits`).
    mask: optional `logits.shape[:-1]` real-token mask; padding is left out of the mean.

  Returns:
    The scalar loss (0 when no token is real).
  """
  lse = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
  if mask is None:
    return jnp.mean(lse ** 2)
  real = jnp.broadcast_to(mask, lse.shape).astype(jnp.float32)
  return jnp.sum(lse ** 2 * real) / jnp.maximum(jnp.sum(real), 1.0)
