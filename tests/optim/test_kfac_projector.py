"""K-FAC low-curvature projector (CrispEdit, arXiv 2602.15823): projector algebra, energy rule, Optax use."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers import optim
from jaxpapers.optim import KroneckerFactors

D_IN, D_OUT = 6, 5


def _psd(rng, n, rank=None):
  x = rng.normal(size=(n, rank or 2 * n)) * rng.uniform(0.2, 2.0, size=(1, rank or 2 * n))
  return (x @ x.T / x.shape[1]).astype(np.float32)


@pytest.fixture(scope="module")
def example():
  rng = np.random.default_rng(0)
  factors = KroneckerFactors(jnp.asarray(_psd(rng, D_IN)), jnp.asarray(_psd(rng, D_OUT)))
  basis = optim.kfac_eigenbasis(factors, energy=0.8)
  x, y = rng.normal(size=(2, D_IN, D_OUT)).astype(np.float32)
  return factors, basis, jnp.asarray(x), jnp.asarray(y)


def _q(x, factors):
  """tr(Xᵀ A X G), the K-FAC quadratic form."""
  return float(jnp.trace(x.T @ factors.a @ x @ factors.g))


def test_idempotent_and_self_adjoint(example):
  _, basis, x, y = example
  px = optim.kfac_project(x, basis)
  np.testing.assert_allclose(optim.kfac_project(px, basis), px, atol=1e-5)
  lhs = float(jnp.sum(px * y))
  rhs = float(jnp.sum(x * optim.kfac_project(y, basis)))
  np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-5)
  # a non-trivial projector: some but not all of x is removed
  assert 0.05 < float(jnp.linalg.norm(px) / jnp.linalg.norm(x)) < 0.99


def test_equals_dense_kronecker_projector(example):
  factors, basis, x, _ = example
  ua, ug, keep = (np.asarray(v, np.float64) for v in (basis.u_a, basis.u_g, basis.keep))
  # row-major vec: vec(U_A Y U_Gᵀ) = (U_A ⊗ U_G) vec(Y)
  big = np.kron(ua, ug)
  dense = big @ np.diag(keep.ravel()) @ big.T
  expected = (dense @ np.asarray(x, np.float64).ravel()).reshape(D_IN, D_OUT)
  np.testing.assert_allclose(optim.kfac_project(x, basis), expected, atol=1e-5)
  # and the quadratic form tr(Xᵀ A X G) is vec(X)ᵀ (A ⊗ G) vec(X)
  xv = np.asarray(x, np.float64).ravel()
  np.testing.assert_allclose(_q(x, factors), xv @ np.kron(factors.a, factors.g) @ xv, rtol=1e-4)


def test_curvature_bound(example):
  factors, basis, _, _ = example
  thr = float(basis.threshold)
  assert thr > 0
  xs = jax.random.normal(jax.random.key(1), (20, D_IN, D_OUT))
  for x in xs:
    px = optim.kfac_project(x, basis)
    assert _q(px, factors) <= thr * float(jnp.sum(px**2)) * (1 + 1e-4) + 1e-7
  # the unprojected direction of largest curvature is far above the bound
  top = jnp.outer(basis.u_a[:, -1], basis.u_g[:, -1])
  assert _q(top, factors) > 2 * thr


@pytest.mark.parametrize("energy", [0.3, 0.8, 0.9, 0.99])
def test_energy_rule(example, energy):
  factors, _, _, _ = example
  basis = optim.kfac_eigenbasis(factors, energy=energy)
  la = np.clip(np.linalg.eigvalsh(np.asarray(factors.a, np.float64)), 0, None)
  lg = np.clip(np.linalg.eigvalsh(np.asarray(factors.g, np.float64)), 0, None)
  products = np.sort(np.outer(la, lg).ravel())[::-1]
  r = int(basis.num_removed)
  assert r == int(np.sum(1 - np.asarray(basis.keep)))
  total = products.sum()
  assert products[:r].sum() >= energy * total * (1 - 1e-5)
  assert products[:r - 1].sum() < energy * total
  # kept products are the smallest ones: all at most the threshold
  eig_a, _ = np.linalg.eigh(np.asarray(factors.a))
  eig_g, _ = np.linalg.eigh(np.asarray(factors.g))
  kept = np.outer(eig_a, eig_g)[np.asarray(basis.keep) > 0]
  np.testing.assert_allclose(float(basis.threshold), products[r - 1], rtol=1e-4)
  assert kept.max() <= float(basis.threshold) * (1 + 1e-5)


def test_energy_zero_keeps_everything(example):
  factors, _, x, _ = example
  basis = optim.kfac_eigenbasis(factors, energy=0.0)
  assert int(basis.num_removed) == 0
  np.testing.assert_allclose(optim.kfac_project(x, basis), x, atol=1e-5)


def test_orientation_rank_one_token():
  """One token: A = a aᵀ, G = g gᵀ; the exact per-token gradient a gᵀ is the only curved direction.

  The right orientation removes it exactly; swapping A and G (the authors' repo has a dead helper
  that does so) leaves most of it in the 'safe' subspace.
  """
  rng = np.random.default_rng(3)
  a, g = rng.normal(size=6).astype(np.float32), rng.normal(size=6).astype(np.float32)
  ridge = 1e-3 * np.eye(6, dtype=np.float32)
  right = optim.kfac_eigenbasis(KroneckerFactors(np.outer(a, a) + ridge, np.outer(g, g) + ridge), 0.5)
  swapped = optim.kfac_eigenbasis(KroneckerFactors(np.outer(g, g) + ridge, np.outer(a, a) + ridge), 0.5)
  grad = jnp.asarray(np.outer(a, g))
  assert float(jnp.linalg.norm(optim.kfac_project(grad, right))) < 1e-3 * float(jnp.linalg.norm(grad))
  assert float(jnp.linalg.norm(optim.kfac_project(grad, swapped))) > 0.1 * float(jnp.linalg.norm(grad))


def test_g_identity_is_a_null_space_projector(example):
  factors, _, x, _ = example
  basis = optim.kfac_eigenbasis(factors, energy=0.8, g_identity=True)
  la, ua = np.linalg.eigh(np.asarray(factors.a, np.float64))
  order = np.argsort(-la)
  frac = np.cumsum(la[order]) / la.sum()
  r = int(np.searchsorted(frac, 0.8) + 1)
  low = ua[:, order[r:]]
  np.testing.assert_allclose(optim.kfac_project(x, basis), low @ low.T @ np.asarray(x), atol=1e-5)
  assert int(basis.num_removed) == r * D_OUT


def test_torch_layout_is_refused(example):
  _, basis, x, _ = example
  with pytest.raises(ValueError, match="torch-layout"):
    optim.kfac_project(x.T, basis)
  tx = optim.kfac_projector({"w": KroneckerFactors(jnp.eye(D_IN), jnp.eye(D_OUT))})
  with pytest.raises(ValueError, match="does not fit"):
    tx.init({"w": jnp.zeros((D_OUT, D_IN))})


def test_optax_transform_modes(example):
  factors, basis, x, y = example
  params = {"w": jnp.zeros((D_IN, D_OUT)), "b": jnp.zeros((D_OUT,))}
  grads = {"w": x, "b": jnp.ones((D_OUT,))}
  tree = {"w": factors, "b": None}
  p = lambda u: optim.kfac_project(u, basis)
  bare = optim.kfac_projector(tree, energy=0.8)
  out, _ = bare.update(grads, bare.init(params), params)
  np.testing.assert_allclose(out["w"], p(x), atol=1e-6)
  np.testing.assert_allclose(out["b"], grads["b"])  # None factor: passed through
  adam = optax.adam(0.1)
  for mode in ("gradient", "update", "both"):
    tx = optim.kfac_projector(tree, energy=0.8, project=mode, inner=adam)
    state = tx.init(params)
    out, state = tx.update(grads, state, params)
    out2, _ = tx.update({"w": y, "b": grads["b"]}, state, params)
    ref_state = adam.init(params)
    g1 = {"w": p(x) if mode != "update" else x, "b": grads["b"]}
    ref, ref_state = adam.update(g1, ref_state, params)
    if mode != "gradient":
      ref = {"w": p(ref["w"]), "b": ref["b"]}
    np.testing.assert_allclose(out["w"], ref["w"], atol=1e-5)
    np.testing.assert_allclose(out["b"], ref["b"], atol=1e-6)
    leak = float(jnp.linalg.norm(out2["w"] - p(out2["w"])) / jnp.linalg.norm(out2["w"]))
    if mode == "gradient":  # Adam's per-coordinate scaling leaves the subspace
      assert leak > 1e-2
    else:
      assert leak < 1e-4
  with pytest.raises(ValueError, match="project"):
    optim.kfac_projector(tree, project="params")


def test_updates_unlike_params_are_refused_at_trace_time(example):
  factors, _, x, _ = example
  params = {"w": jnp.zeros((D_IN, D_OUT)), "b": jnp.zeros((D_OUT,))}
  tx = optim.kfac_projector({"w": factors, "b": None}, energy=0.8, inner=optax.adam(0.1))
  state = tx.init(params)
  message = "kfac_projector: updates must have the tree structure and leaf shapes of the params"
  with pytest.raises(ValueError, match=message):
    jax.jit(tx.update)({"w": x, "b": jnp.ones((D_OUT + 1,))}, state, params)
  with pytest.raises(ValueError, match=message):
    tx.update({"w": x}, state, params)


@pytest.mark.parametrize("g_identity", [False, True], ids=["kronecker", "a_only"])
def test_energy_changed_at_run_time_recomputes_the_masks(example, g_identity):
  """Under optax.inject_hyperparams a new energy acts as building the projector with it."""
  factors, _, x, _ = example
  params = {"w": jnp.zeros((D_IN, D_OUT))}
  tree = {"w": factors}
  tx = optax.inject_hyperparams(optim.kfac_projector)(tree, energy=0.8, g_identity=g_identity)
  state = tx.init(params)
  state = state._replace(hyperparams={**state.hyperparams, "energy": jnp.float32(0.3)})
  out, new_state = jax.jit(tx.update)({"w": x}, state, params)
  rebuilt = optim.kfac_projector(tree, energy=0.3, g_identity=g_identity)
  expected, expected_state = rebuilt.update({"w": x}, rebuilt.init(params), params)
  np.testing.assert_allclose(out["w"], expected["w"], atol=1e-6)
  basis, expected_basis = new_state.inner_state.bases["w"], expected_state.bases["w"]
  np.testing.assert_array_equal(basis.keep, expected_basis.keep)
  assert int(basis.num_removed) == int(expected_basis.num_removed) > 0
  assert float(basis.energy) == pytest.approx(0.3)


def test_energy_out_of_range_is_refused():
  tree = {"w": KroneckerFactors(jnp.eye(D_IN), jnp.eye(D_OUT))}
  with pytest.raises(ValueError, match="energy must be in"):
    optim.kfac_projector(tree, energy=1.5)
  with pytest.raises(ValueError, match="energy must be in"):
    optim.kfac_eigenbasis(tree["w"], energy=-0.1)
