"""K-FAC low-curvature projection as an Optax transform (CrispEdit, arXiv 2602.15823).

For a Dense layer `y = a W` (Flax layout, `W` is `[d_in, d_out]`) K-FAC approximates the
Gauss-Newton curvature of the capability loss by `A ⊗ G` (the paper's Gauss-Newton Hessian of its
Bregman-divergence capability constraint, made tractable with K-FAC), with
`A = E[a aᵀ]` (`[d_in, d_in]`, layer inputs) and `G = E[g gᵀ]` (`[d_out, d_out]`, output
gradients). Its quadratic form is `q(ΔW) = tr(ΔWᵀ A ΔW G)`.

Energy rule (the authors' code, `easyeditor/models/crispedit/utils.py`). With
`A = U_A diag(λ_A) U_Aᵀ` and `G = U_G diag(λ_G) U_Gᵀ`, the Kronecker eigenvalues are the products
`M_ij = λ_A[i] λ_G[j]`. They are removed in decreasing order until the removed ones hold at least
`energy` of `Σ M_ij`, and removing one fewer would not
(`r* = 1 + searchsorted(cumsum(sorted M) / Σ M, energy)`). The kept set is a mask `K`.

Matrix-free projector (the paper's Kronecker-eigenbasis projector)::

  P(ΔW) = U_A [(U_Aᵀ ΔW U_G) ⊙ K] U_Gᵀ

an orthogonal projector under the Frobenius inner product, never forming the
`(d_in d_out)²` matrix. Every kept direction has curvature at most the threshold `m_(r*)`, so
`q(P ΔW) ≤ m_(r*) ‖P ΔW‖²_F`: the paper's low-curvature subspace, a γ-approximate null space of
the capability curvature.

With `g_identity=True` the output factor is replaced by the identity: the projector keeps the
low-energy eigen-directions of `A` only (the AlphaEdit / Adam-NSCL null space that CrispEdit
generalizes), `P(ΔW) = U_A [(U_Aᵀ ΔW) ⊙ k] ` with a row mask `k`.

Scanned layers: factors are per layer, and a layer of a model whose layers are stacked on a
leading axis (`jaxpapers.nn.scan`, `[L, d_in, d_out]` leaves) is neither tapped
(`collect_kfac_factors` refuses paths through a `scanned` stack) nor projected (a ValueError
names the stacked leaf): edit the unscanned model (`scan_layers=False`, as CrispEdit's LM is).

Example::

  factors = {"w2": KroneckerFactors(a, g), "b2": None}
  tx = kfac_projector(factors, energy=0.9, project="both", inner=optax.adam(1e-3))
  state = tx.init(params)            # eigendecomposes A and G once
  updates, state = tx.update(grads, state, params)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxpapers.optim import _checks, _sharding, _trees

PROJECT_MODES = ("gradient", "update", "both")


class KroneckerFactors(NamedTuple):
  """K-FAC factors of one Dense layer `y = a W`, `W: [d_in, d_out]`.

  Attributes:
    a: input second moment `E[a aᵀ]`, `[d_in, d_in]` (uncentered).
    g: output-gradient second moment `E[g gᵀ]`, `[d_out, d_out]`.
  """

  a: jax.Array
  g: jax.Array


class KroneckerEigenbasis(NamedTuple):
  """The eigenbases and kept-direction mask of one layer's projector.

  Attributes:
    u_a: eigenvectors of `A`, `[d_in, d_in]` (columns).
    u_g: eigenvectors of `G`, `[d_out, d_out]`, or None for the A-only projector.
    keep: float mask of kept directions: `[d_in, d_out]` over Kronecker eigen-pairs, or
      `[d_in, 1]` (A eigen-directions) for the A-only projector.
    threshold: the smallest removed eigenvalue (product); kept ones are at most this.
    num_removed: number of removed directions (Kronecker pairs, or A directions x d_out).
    eig_a: eigenvalues of `A`, `[d_in]` (with `u_a`'s order), or None.
    eig_g: eigenvalues of `G`, `[d_out]` (all ones for the A-only projector, `G = I`), or None.
    energy: the energy τ (float32 scalar) that `keep` was computed for, or None. With the
      eigenvalues it lets :func:`kfac_projector` recompute the mask when a scheduled `energy`
      (`optax.inject_hyperparams`) changes.
  """

  u_a: jax.Array
  u_g: jax.Array | None
  keep: jax.Array
  threshold: jax.Array
  num_removed: jax.Array
  eig_a: jax.Array | None = None
  eig_g: jax.Array | None = None
  energy: jax.Array | None = None


class KfacProjectorState(NamedTuple):
  """State of :func:`kfac_projector`: per-leaf eigenbases (None: pass-through) and `inner`'s state."""

  bases: Any
  inner_state: optax.OptState


def _is_factor_leaf(x: Any) -> bool:
  return x is None or isinstance(x, (KroneckerFactors, KroneckerEigenbasis))


def _check_energy(energy: Any) -> None:
  """Raises ValueError unless `energy` is in [0, 1]; a traced energy is not checked."""
  try:
    value = float(energy)
  except (TypeError, jax.errors.ConcretizationTypeError):
    return  # traced (e.g. scheduled by optax.inject_hyperparams): the rule clips it to [0, 1]
  if not 0.0 <= value <= 1.0:
    raise ValueError(f"energy must be in [0, 1], got {energy}")


def _removed_count(descending: jax.Array, energy: Any) -> jax.Array:
  """Smallest r with (sum of the r largest) >= energy * total (0 when energy or total is 0)."""
  total = jnp.sum(descending)
  fraction = jnp.cumsum(descending) / jnp.where(total > 0, total, 1.0)
  energy = jnp.asarray(energy, jnp.float32)
  count = jnp.searchsorted(fraction, energy, side="left") + 1
  count = jnp.minimum(count, descending.size)
  return jnp.where((energy <= 0) | (total <= 0), 0, count)


def energy_mask(eig_a: jax.Array, eig_g: jax.Array, energy: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The kept-pair mask of the energy rule on `λ_A[i] λ_G[j]` (authors' code, `energy_threshold`).

  Ties are broken by sort order, so exactly `r*` pairs are removed.

  Args:
    eig_a: eigenvalues of A, `[d_in]` (negative round-off is clipped to 0).
    eig_g: eigenvalues of G, `[d_out]`.
    energy: fraction τ in [0, 1] of the curvature trace to remove.

  Returns:
    (keep float32 `[d_in, d_out]`, threshold `m_(r*)` (0 when nothing is removed), r*).
  """
  products = (jnp.maximum(eig_a, 0.0)[:, None] * jnp.maximum(eig_g, 0.0)[None, :]).ravel()
  order = jnp.argsort(-products)
  descending = products[order]
  removed = _removed_count(descending, energy)
  rank = jnp.zeros(products.size, jnp.int32).at[order].set(jnp.arange(products.size, dtype=jnp.int32))
  keep = (rank >= removed).astype(jnp.float32).reshape(eig_a.size, eig_g.size)
  threshold = jnp.where(removed > 0, descending[jnp.maximum(removed - 1, 0)], 0.0)
  return keep, threshold, removed


def _a_only_mask(eig_a: jax.Array, d_out: int, energy: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The energy rule on the eigenvalues of A alone (G = I): whole A directions are removed."""
  eig_a = jnp.maximum(eig_a, 0.0)
  order = jnp.argsort(-eig_a)
  removed = _removed_count(eig_a[order], energy)
  rank = jnp.zeros(eig_a.size, jnp.int32).at[order].set(jnp.arange(eig_a.size, dtype=jnp.int32))
  keep = (rank >= removed).astype(jnp.float32)[:, None]
  threshold = jnp.where(removed > 0, eig_a[order][jnp.maximum(removed - 1, 0)], 0.0)
  return keep, threshold, removed * d_out


def kfac_eigenbasis(factors: KroneckerFactors, energy: float = 0.9,
                    g_identity: bool = False) -> KroneckerEigenbasis:
  """Eigendecomposes one layer's factors and applies the energy rule.

  Args:
    factors: `A [d_in, d_in]` and `G [d_out, d_out]`, symmetric PSD.
    energy: fraction τ of the curvature trace held by the removed directions (in [0, 1]; a
      traced value is not checked and acts as its clip to [0, 1]).
    g_identity: replace G by the identity (A-only null space; removes whole A directions).

  Returns:
    The layer's eigenbasis and mask.
  """
  a, g = jnp.asarray(factors.a, jnp.float32), jnp.asarray(factors.g, jnp.float32)
  if a.ndim != 2 or a.shape[0] != a.shape[1] or g.ndim != 2 or g.shape[0] != g.shape[1]:
    raise ValueError(f"KroneckerFactors need square a and g, got a{a.shape} and g{g.shape}")
  _check_energy(energy)
  eig_a, u_a = jnp.linalg.eigh(a)
  stored_energy = jnp.asarray(energy, jnp.float32)
  if g_identity:
    keep, threshold, removed = _a_only_mask(eig_a, g.shape[0], energy)
    return KroneckerEigenbasis(u_a, None, keep, threshold, removed, eig_a,
                               jnp.ones(g.shape[0], jnp.float32), stored_energy)
  eig_g, u_g = jnp.linalg.eigh(g)
  keep, threshold, removed = energy_mask(eig_a, eig_g, energy)
  return KroneckerEigenbasis(u_a, u_g, keep, threshold, removed, eig_a, eig_g, stored_energy)


def _with_energy(basis: KroneckerEigenbasis, energy: Any) -> KroneckerEigenbasis:
  """`basis` with its mask recomputed for `energy` from its stored eigenvalues."""
  if basis.u_g is None:
    keep, threshold, removed = _a_only_mask(basis.eig_a, basis.eig_g.size, energy)
  else:
    keep, threshold, removed = energy_mask(basis.eig_a, basis.eig_g, energy)
  return basis._replace(keep=keep, threshold=threshold, num_removed=removed,
                        energy=jnp.asarray(energy, jnp.float32))


def _refreshed(basis: KroneckerEigenbasis | None, energy: Any) -> KroneckerEigenbasis | None:
  """`basis`, its mask recomputed (inside `lax.cond`) when `energy` is not the one it has."""
  if basis is None or basis.energy is None or basis.eig_a is None or basis.eig_g is None:
    return basis
  energy = jnp.asarray(energy, jnp.float32)
  return jax.lax.cond(energy == basis.energy, lambda b: b, lambda b: _with_energy(b, energy),
                      basis)


def kfac_project(delta: jax.Array, basis: KroneckerEigenbasis) -> jax.Array:
  """`P(ΔW) = U_A [(U_Aᵀ ΔW U_G) ⊙ K] U_Gᵀ`, matrix-free (CrispEdit's projector).

  On an Explicit mesh a `delta` split over mesh axes is gathered for the projection (its split
  axes are contracted) and the result gets `delta`'s sharding back; elsewhere nothing is added.

  Args:
    delta: `[d_in, d_out]`, or any shape `[d_in, ...]` whose trailing axes flatten to d_out.
    basis: from :func:`kfac_eigenbasis`.

  Returns:
    The projection, same shape and dtype as `delta`.
  """
  d_in = basis.u_a.shape[0]
  if delta.ndim < 2 or delta.shape[0] != d_in or (
      basis.u_g is not None and delta.size != d_in * basis.u_g.shape[0]):
    d_out = "any" if basis.u_g is None else basis.u_g.shape[0]
    raise ValueError(f"kfac_project: update of shape {delta.shape} does not fit factors for "
                     f"W [d_in={d_in}, d_out={d_out}] (Flax layout y = a W; a torch-layout "
                     "[d_out, d_in] weight needs the factors swapped)")
  # On an Explicit mesh a split d_in or d_out is a sharded contracting dimension: project the
  # gathered matrix and give the result the sharding of `delta` (no-op elsewhere).
  x = _sharding.gather(delta).reshape(d_in, -1).astype(jnp.float32)
  rotated = basis.u_a.T @ x
  if basis.u_g is None:
    out = basis.u_a @ (rotated * basis.keep)
  else:
    out = basis.u_a @ (((rotated @ basis.u_g) * basis.keep) @ basis.u_g.T)
  return _sharding.restore_like(out.reshape(delta.shape).astype(delta.dtype), delta)


def _project_tree(updates: Any, bases: Any) -> Any:
  def one(b, u):
    if b is None or _trees.is_masked(u):  # masked out (optax.masked / partition)
      return u
    return kfac_project(u, b)

  return jax.tree.map(one, bases, updates, is_leaf=_is_factor_leaf)


def kfac_projector(factors: Any, energy: float = 0.9, project: str = "update",
                   g_identity: bool = False,
                   inner: optax.GradientTransformation | None = None
                   ) -> optax.GradientTransformationExtraArgs:
  """Projects updates onto each layer's K-FAC low-curvature subspace (CrispEdit).

  Works as optax's own transforms do: under `jax.jit`, `optax.inject_hyperparams` (a scheduled
  or changed `energy` recomputes the masks from the stored eigenvalues, inside `lax.cond`, on
  the step it changes), `optax.masked` / `optax.partition` (a masked-out factored leaf is
  passed through; its basis is still computed, so the state's structure is the factors'),
  `optax.tree.map_params` (the bases are not params; on its placeholder they are only shaped),
  extra keyword arguments of `update` (forwarded to `inner`) and Explicit-mesh shardings (see
  :func:`kfac_project`).

  Args:
    factors: a pytree with the structure of the params, whose leaves are
      :class:`KroneckerFactors` (projected leaves, shape `[d_in, d_out]`) or None (passed
      through unchanged).
    energy: fraction τ of each layer's curvature trace removed (energy rule above).
    project: where the projection acts relative to `inner`: "gradient" (before it, the
      authors' ProjectedAdam), "update" (after it: the applied step stays in the subspace), or
      "both". With `inner=None` the three coincide (P is idempotent): the transform projects
      its input, so it can be placed anywhere in an `optax.chain`.
    g_identity: use G = I (A-only / AlphaEdit-style null space).
    inner: the optimizer wrapped by the projection (e.g. `optax.adam(lr)`); default identity.
      Extra keyword arguments of `update` reach it (`optax.with_extra_args_support`).

  Returns:
    An `optax.GradientTransformationExtraArgs`; `init` eigendecomposes every factor pair once
    and keeps the eigenbases in the state (`KfacProjectorState`).
  """
  if project not in PROJECT_MODES:
    raise ValueError(f"project must be one of {PROJECT_MODES}, got {project!r}")
  _check_energy(energy)
  inner = optax.with_extra_args_support(optax.identity() if inner is None else inner)
  before, after = project in ("gradient", "both"), project in ("update", "both")
  static_energy = isinstance(energy, (int, float))  # else a jax value (inject_hyperparams)

  def init_fn(params):
    if _trees.is_params_placeholder(params):  # optax.tree.map_params: only the structure is used
      bases = jax.tree.map(
          lambda f: None if f is None else jax.eval_shape(
              lambda f: kfac_eigenbasis(f, energy, g_identity), f),
          factors, is_leaf=_is_factor_leaf)
      return KfacProjectorState(bases, inner.init(params))

    def basis(f, p):
      if f is None:
        return None
      d_in, d_out = f.a.shape[0], f.g.shape[0]
      masked = _trees.is_masked(p)  # masked out: kept, never applied
      if not masked and p.ndim == 3 and p.shape[1:] == (d_in, d_out):
        raise ValueError(f"kfac_projector: parameter of shape {p.shape} looks like {p.shape[0]} "
                         "stacked layers (scanned, jaxpapers.nn.scan) under one layer's factors; "
                         "K-FAC factors are per layer: use the unscanned model "
                         "(scan_layers=False)")
      if not masked and (p.ndim < 2 or p.shape[0] != d_in or p.size != d_in * d_out):
        raise ValueError(f"kfac_projector: parameter of shape {p.shape} does not fit factors for "
                         f"W [d_in={d_in}, d_out={d_out}] (Flax layout y = a W)")
      return kfac_eigenbasis(f, energy, g_identity)
    bases = jax.tree.map(basis, factors, params, is_leaf=_is_factor_leaf)
    return KfacProjectorState(bases, inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    _checks.check_like("kfac_projector", updates, params)
    bases = state.bases
    if not static_energy:
      bases = jax.tree.map(lambda b: _refreshed(b, energy), bases, is_leaf=_is_factor_leaf)
    if before:
      updates = _project_tree(updates, bases)
    updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    if after:
      updates = _project_tree(updates, bases)
    return updates, KfacProjectorState(bases, inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
