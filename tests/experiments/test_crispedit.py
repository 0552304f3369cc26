"""CrispEdit experiment: smoke reproduction (spec 4.2) and the editing API on a tiny problem."""

import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.crispedit.run import EXPERIMENT
from jaxpapers import optim
from jaxpapers.core import experiment as experiment_lib
from jaxpapers.editing import crisp_edit


def test_smoke_reproduction_passes(tmp_path):
  record = experiment_lib.reproduce(EXPERIMENT, "smoke", tmp_path, overrides=["mesh.data=1"])
  assert record["passed"], [c for c in record["claims"] if not c["passed"]]
  ids = {c["id"] for c in record["claims"]}
  assert ids == {"mlp_crispedit_edit_success", "mlp_drop_ratio", "lm_crispedit_subspace_leak"}
  study = json.loads((tmp_path / "crispedit" / "study.json").read_text())
  seed = study["mlp"]["0"]
  # spec 4.2 figures (FT drop 20.8-24.6 pts, CrispEdit 2.7-3.6 pts): fine-tuning really damages
  assert seed["ft"]["drop_points"] > 10 and seed["ft"]["edit_success"] == 1.0
  assert seed["a_only"]["drop_points"] > seed["crispedit"]["drop_points"]
  assert (tmp_path / "crispedit" / "crispedit.png").read_bytes()[:4] == b"\x89PNG"


class _Net(nnx.Module):

  def __init__(self, rngs):
    self.l1 = nnx.Linear(4, 16, rngs=rngs)
    self.l2 = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    return self.l2(jnp.tanh(self.l1(x)))


def test_crisp_edit_moves_only_the_layer_inside_the_subspace():
  model = _Net(nnx.Rngs(0))
  rng = np.random.default_rng(0)
  capability = [{"x": rng.normal(size=(64, 4)).astype(np.float32)} for _ in range(2)]
  edit = {"x": rng.normal(size=(2, 4)).astype(np.float32), "targets": np.array([0, 2], np.int32)}
  logits_fn = lambda m, b: m(b["x"])
  edited, result = crisp_edit(model, edit, capability, layer_paths=[("l1",)], logits_fn=logits_fn,
                              energy=0.3, learning_rate=3e-2, max_steps=300, target_loss=0.1)
  assert result.converged and result.edit_loss < 0.1 and 0 < result.steps <= 300
  np.testing.assert_array_equal(edited.l2.kernel[...], model.l2.kernel[...])  # other layers frozen
  np.testing.assert_array_equal(edited.l1.bias[...], model.l1.bias[...])  # biases frozen
  factors, _ = optim.collect_kfac_factors(model, [("l1",)], capability, logits_fn)
  basis = optim.kfac_eigenbasis(factors["l1"], 0.3)
  assert result.num_removed == {"l1": int(basis.num_removed)}
  delta = edited.l1.kernel[...] - model.l1.kernel[...]
  np.testing.assert_allclose(optim.kfac_project(delta, basis), delta, atol=1e-5)
  ft, ft_result = crisp_edit(model, edit, layer_paths=[("l1",)], logits_fn=logits_fn, method="finetune",
                             learning_rate=3e-2, max_steps=300, target_loss=0.1)
  ft_delta = ft.l1.kernel[...] - model.l1.kernel[...]
  leak = jnp.linalg.norm(ft_delta - optim.kfac_project(ft_delta, basis)) / jnp.linalg.norm(ft_delta)
  assert ft_result.converged and float(leak) > 0.1  # unconstrained: leaves the subspace
