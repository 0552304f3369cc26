"""jaxpapers.editing: CrispEdit's edit loop against a plain optax reference, sequential editing.

Tiny MLP (4 -> 16 -> 3), edited layer l1 (`[4, 16]`); every check compares with a loop written
here from optax and the projector's pieces (`kfac_eigenbasis` / `kfac_project`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import optim
from jaxpapers.editing import (
    AUTHORS,
    OURS,
    crisp_edit,
    crispedit,
    edit_bases,
    edit_loss,
    sequential_edit,
    split_edits,
)

LR, STEPS = 3e-2, 40


class _Net(nnx.Module):

  def __init__(self, rngs):
    self.l1 = nnx.Linear(4, 16, rngs=rngs)
    self.l2 = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    return self.l2(jnp.tanh(self.l1(x)))


def logits_fn(m, b):
  return m(b["x"])


@pytest.fixture(scope="module")
def setup():
  model = _Net(nnx.Rngs(0))
  rng = np.random.default_rng(0)
  capability = [{"x": rng.normal(size=(64, 4)).astype(np.float32),
                 "targets": rng.integers(0, 3, 64).astype(np.int32)} for _ in range(2)]
  edit = {"x": rng.normal(size=(6, 4)).astype(np.float32), "targets": np.array([0, 2, 1, 1, 0, 2], np.int32),
          "mask": np.ones(6, np.float32)}
  return model, capability, edit


@functools.partial(jax.jit, static_argnames=("before", "after"))
def _reference_step(kernel, opt_state, basis, params, batch, before, after):
  """One Adam step on l1's kernel of the pure-jnp network, projected before and/or after Adam."""

  def loss_of(k):
    logits = jnp.tanh(batch["x"] @ k + params["b1"]) @ params["w2"] + params["b2"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    return jnp.sum(ce * batch["mask"]) / jnp.sum(batch["mask"])

  loss, g = jax.value_and_grad(loss_of)(kernel)
  if before:
    g = optim.kfac_project(g, basis)
  u, opt_state = optax.adam(LR).update(g, opt_state, kernel)
  if after:
    u = optim.kfac_project(u, basis)
  return kernel + u, opt_state, loss


def _reference(model, batch, basis, project, steps, kernel=None, opt_state=None, target=-1.0):
  """Adam on l1.kernel with the projection before and/or after it, written out step by step."""
  kernel = model.l1.kernel[...] if kernel is None else kernel
  opt_state = optax.adam(LR).init(kernel) if opt_state is None else opt_state
  params = {"b1": model.l1.bias[...], "w2": model.l2.kernel[...], "b2": model.l2.bias[...]}
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  before = basis is not None and project in ("gradient", "both")
  after = basis is not None and project in ("update", "both")
  taken = 0
  for _ in range(steps):
    new = _reference_step(kernel, opt_state, basis, params, batch, before, after)
    if float(new[2]) < target:  # the loss at `kernel`: already below the stop loss
      break
    kernel, opt_state, _ = new
    taken += 1
  return kernel, opt_state, taken


def test_default_is_the_authors_configuration(setup):
  """Defaults: empirical-Fisher factors, gradient projected before Adam (ProjectedAdam)."""
  model, capability, edit = setup
  assert AUTHORS == {"project": "gradient", "label_mode": "empirical"}
  edited, result = crisp_edit(model, edit, capability, layer_paths=[("l1",)], logits_fn=logits_fn,
                              energy=0.5, learning_rate=LR, max_steps=STEPS, target_loss=1e-9)
  factors, n = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn, label_mode="empirical")
  basis = optim.kfac_eigenbasis(factors["l1"], 0.5)
  kernel, _, taken = _reference(model, edit, basis, "gradient", STEPS)
  assert result.steps == taken == STEPS and result.factor_tokens == n == 128
  np.testing.assert_allclose(edited.l1.kernel[...], kernel, rtol=1e-5, atol=1e-6)
  assert result.num_removed == {"l1": int(basis.num_removed)} and 0 < result.num_removed["l1"] < 64
  np.testing.assert_array_equal(edited.l2.kernel[...], model.l2.kernel[...])  # other layers frozen
  np.testing.assert_array_equal(edited.l1.bias[...], model.l1.bias[...])  # biases frozen
  # gradient-only: Adam's scaling moves the applied change out of the subspace
  delta = edited.l1.kernel[...] - model.l1.kernel[...]
  leak = jnp.linalg.norm(delta - optim.kfac_project(delta, basis)) / jnp.linalg.norm(delta)
  assert float(leak) > 1e-2


def test_ours_keeps_the_update_in_the_subspace_and_shares_the_compiled_loop(setup):
  model, capability, edit = setup
  factors, _ = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn,
                                          label_mode=OURS["label_mode"], rng=jax.random.key(3))
  bases = edit_bases(factors, 0.5)
  edited, result = crisp_edit(model, edit, layer_paths=[("l1",)], logits_fn=logits_fn, bases=bases,
                              project=OURS["project"], learning_rate=LR, max_steps=STEPS, target_loss=1e-9)
  kernel, _, _ = _reference(model, edit, bases["l1"], "both", STEPS)
  np.testing.assert_allclose(edited.l1.kernel[...], kernel, rtol=1e-5, atol=1e-6)
  delta = edited.l1.kernel[...] - model.l1.kernel[...]
  np.testing.assert_allclose(optim.kfac_project(delta, bases["l1"]), delta, rtol=1e-5, atol=1e-6)
  # a second edit with other bases, budget and stop loss reuses the compiled loop
  size = crispedit._edit_loop._cache_size()
  other = edit_bases(factors, 0.8)
  _, again = crisp_edit(model, edit, layer_paths=[("l1",)], logits_fn=logits_fn, bases=other,
                        project="both", learning_rate=1e-2, max_steps=7, target_loss=1e-9)
  assert again.steps == 7 and crispedit._edit_loop._cache_size() == size


def test_bases_reusing_a_equal_fresh_ones(setup):
  model, capability, _ = setup
  empirical, _ = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn, label_mode="empirical")
  sampled, _ = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn, label_mode="sampled")
  np.testing.assert_array_equal(empirical["l1"].a, sampled["l1"].a)  # A does not see the labels
  first = edit_bases(empirical, 0.7)
  for method in ("crispedit", "null_space"):
    fresh, reused = edit_bases(sampled, 0.7, method), edit_bases(sampled, 0.7, method, reuse_a=first)
    assert int(reused["l1"].num_removed) == int(fresh["l1"].num_removed) > 0
    x = jax.random.normal(jax.random.key(1), (4, 16))
    np.testing.assert_allclose(optim.kfac_project(x, reused["l1"]), optim.kfac_project(x, fresh["l1"]),
                               atol=1e-5)


def test_null_space_and_finetune_match_the_reference(setup):
  model, capability, edit = setup
  factors, _ = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn, label_mode="empirical")
  a_only = edit_bases(factors, 0.5, "null_space")
  assert a_only["l1"].u_g is None
  edited, _ = crisp_edit(model, edit, layer_paths=[("l1",)], logits_fn=logits_fn, method="null_space",
                         bases=a_only, learning_rate=LR, max_steps=STEPS, target_loss=1e-9)
  np.testing.assert_allclose(edited.l1.kernel[...], _reference(model, edit, a_only["l1"], "gradient", STEPS)[0],
                             rtol=1e-5, atol=1e-6)
  ft, _ = crisp_edit(model, edit, layer_paths=[("l1",)], logits_fn=logits_fn, method="finetune",
                     learning_rate=LR, max_steps=STEPS, target_loss=1e-9)
  np.testing.assert_allclose(ft.l1.kernel[...], _reference(model, edit, None, "gradient", STEPS)[0],
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="not for method='crispedit'"):
    crisp_edit(model, edit, layer_paths=[("l1",)], logits_fn=logits_fn, bases=a_only)


def test_early_stop_and_skip(setup):
  model, _, edit = setup
  _, result = crisp_edit(model, edit, layer_paths=[("l1",)], logits_fn=logits_fn, method="finetune",
                         learning_rate=LR, max_steps=300, target_loss=0.3)
  _, _, taken = _reference(model, edit, None, "gradient", 300, target=0.3)
  assert result.converged and 0 < result.steps == taken < 300
  assert result.edit_loss < 0.3 <= result.initial_loss
  already, skipped = crisp_edit(model, edit, layer_paths=[("l1",)], logits_fn=logits_fn, method="finetune",
                                learning_rate=LR, max_steps=500, target_loss=100.0)
  assert skipped.skipped and skipped.steps == 0
  np.testing.assert_array_equal(already.l1.kernel[...], model.l1.kernel[...])


def test_split_edits_pads_with_masked_rows(setup):
  _, _, edit = setup
  parts = split_edits(edit, 4)
  assert [len(p["x"]) for p in parts] == [4, 4]
  np.testing.assert_array_equal(parts[1]["mask"], [1, 1, 0, 0])
  np.testing.assert_array_equal(parts[1]["x"][:2], edit["x"][4:])
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)), jnp.float32)
  unpadded = {k: v[:2] for k, v in parts[1].items()}
  np.testing.assert_allclose(edit_loss(logits, parts[1]), edit_loss(logits[:2], unpadded), rtol=1e-6)
  assert [len(p["x"]) for p in split_edits(edit, 4, pad=False)] == [4, 2]


def test_sequential_edit_carries_adam_over_the_batches(setup):
  """Batches one after another from the same factors; one Adam state over the stream."""
  model, capability, edit = setup
  factors, _ = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn, label_mode="empirical")
  bases = edit_bases(factors, 0.5)
  batches = split_edits(edit, 4)
  seen = []
  edited, results, records = sequential_edit(
      model, batches, layer_paths=[("l1",)], logits_fn=logits_fn, bases=bases, learning_rate=LR,
      max_steps=15, target_loss=1e-9,
      after_batch=lambda m, i, r: seen.append(i) or {"loss": float(edit_loss(logits_fn(m, edit), edit))})
  kernel, state = None, None
  for b in batches:
    kernel, state, _ = _reference(model, b, bases["l1"], "gradient", 15, kernel, state)
  np.testing.assert_allclose(edited.l1.kernel[...], kernel, rtol=1e-5, atol=1e-6)
  assert [r.steps for r in results] == [15, 15] and seen == [0, 1]
  assert records[1]["loss"] == pytest.approx(float(edit_loss(logits_fn(edited, edit), edit)), rel=1e-6)
  # a batch already learned is skipped: the second pass over the same batch at a loose stop loss
  _, again, _ = sequential_edit(model, [batches[0], batches[0]], layer_paths=[("l1",)], logits_fn=logits_fn,
                                bases=bases, learning_rate=LR, max_steps=200, target_loss=0.3)
  assert again[0].steps > 0 and again[1].skipped


@pytest.mark.parametrize("explicit", [False, True])
def test_sequential_edit_compiles_its_loop_once(setup, explicit):
  """Every batch of a stream reuses the first batch's compiled loop (Adam's state handed back
  by the loop is placed as the fresh state is), on one device and on an Explicit mesh."""
  model, capability, edit = setup
  model = nnx.clone(model)
  if explicit:
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    nnx.update(model, jax.device_put(nnx.state(model), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())))
  factors, _ = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn, label_mode="empirical")
  bases = edit_bases(factors, 0.5)
  batches = split_edits(edit, 2)
  size = crispedit._edit_loop._cache_size()
  edited, results, _ = sequential_edit(model, batches, layer_paths=[("l1",)], logits_fn=logits_fn,
                                       bases=bases, project="both", learning_rate=LR, max_steps=5,
                                       target_loss=1e-9)
  assert [r.steps for r in results] == [5, 5, 5] and crispedit._edit_loop._cache_size() <= size + 1
  kernel, state = None, None
  for b in batches:
    kernel, state, _ = _reference(model, b, bases["l1"], "both", 5, kernel, state)
  np.testing.assert_allclose(edited.l1.kernel[...], kernel, rtol=1e-5, atol=1e-6)


def test_compact_forms_of_the_projector_are_the_projector():
  """The loop projects on the A directions it needs (kept or removed rows): same P as kfac_project."""
  rng = np.random.default_rng(2)
  q, _ = np.linalg.qr(rng.normal(size=(256, 256)))
  g = jnp.asarray(np.cov(rng.normal(size=(8, 64))), jnp.float32)
  x = jnp.asarray(rng.normal(size=(256, 8)), jnp.float32)
  steep = jnp.asarray((q * np.geomspace(1e3, 1e-3, 256)) @ q.T, jnp.float32)  # energy in few directions
  cases = [(steep, 0.99, "crispedit", crispedit._RemovedDirections),
           (steep, 0.99, "null_space", crispedit._RemovedDirections),
           (steep, 0.999999, "null_space", crispedit._KeptDirections),  # almost everything removed
           (steep, 1 - 1e-9, "crispedit", crispedit._KeptDirections),
           (jnp.eye(256) + 0.01 * steep / 1e3, 0.5, "crispedit", optim.KroneckerEigenbasis)]  # flat
  for a, tau, method, form in cases:
    basis = edit_bases({"w": optim.KroneckerFactors(a, g)}, tau, method)["w"]
    compact = crispedit._projector(basis)
    assert isinstance(compact, form), (tau, method, type(compact))
    if form is not optim.KroneckerEigenbasis:
      assert compact.u_a.shape[1] % 128 == 0 and compact.u_a.shape[1] < 256
    np.testing.assert_allclose(crispedit._project(x, compact), optim.kfac_project(x, basis), atol=2e-5)


def test_sequential_edit_factors_once_skip_is_bit_identical_metrics_after_each_batch(setup, monkeypatch):
  """Factors collected once for the whole stream; a batch already below the stop loss leaves the
  weights (and Adam's state) bit-identical; `after_batch` sees the model after every batch."""
  model, capability, edit = setup
  calls, passes = [], []
  real = crispedit.collect_kfac_factors
  monkeypatch.setattr(crispedit, "collect_kfac_factors",
                      lambda *a, **k: calls.append(k.get("label_mode")) or real(*a, **k))

  class Capability:  # counts the passes over the capability data
    def __iter__(self):
      passes.append(1)
      return iter(capability)

  first, second = split_edits(edit, 4)
  kernels = []

  def after_batch(m, i, r):
    kernels.append(np.asarray(m.l1.kernel[...]))
    return {"index": i, "loss": float(edit_loss(logits_fn(m, edit), edit)), "steps": r.steps}

  edited, results, records = sequential_edit(
      model, [first, first, second], Capability(), layer_paths=[("l1",)], logits_fn=logits_fn,
      energy=0.5, learning_rate=LR, max_steps=200, target_loss=0.3, after_batch=after_batch)
  assert calls == ["empirical"] and len(passes) == 1  # once, on the authors' empirical labels
  assert [r.factor_tokens for r in results] == [128.0, 0.0, 0.0]
  assert results[0].steps > 0 and results[1].skipped and results[2].steps > 0
  np.testing.assert_array_equal(kernels[1], kernels[0])  # the skipped batch: bit-identical
  # the reference: the same factors, batch 0, (batch 0 again: no step), then batch 1 from there
  factors, _ = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn, label_mode="empirical")
  basis = optim.kfac_eigenbasis(factors["l1"], 0.5)
  k0, s0, t0 = _reference(model, first, basis, "gradient", 200, target=0.3)
  _, _, t1 = _reference(model, first, basis, "gradient", 200, k0, s0, target=0.3)
  k2, _, t2 = _reference(model, second, basis, "gradient", 200, k0, s0, target=0.3)
  assert [r.steps for r in results] == [t0, t1, t2] and t1 == 0
  np.testing.assert_allclose(kernels[0], k0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(kernels[2], k2, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(edited.l1.kernel[...], kernels[2])
  assert [r["index"] for r in records] == [0, 1, 2] and [r["steps"] for r in records] == [t0, 0, t2]
  for rec, k in zip(records, (k0, k0, k2)):  # metrics of the model after that batch
    m = nnx.clone(model)
    m.l1.kernel[...] = jnp.asarray(k)
    assert rec["loss"] == pytest.approx(float(edit_loss(logits_fn(m, edit), edit)), rel=1e-4)
