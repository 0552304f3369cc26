"""modular_addition: model against a numpy reference, data split, warm-up, smoke results."""

import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.core.experiment import reproduce
from jaxpapers.experiments.modular_addition import model as ma
from jaxpapers.experiments.modular_addition.config import PRESETS
from jaxpapers.experiments.modular_addition.run import EXPERIMENT


def test_network_matches_a_numpy_reference():
  net = ma.TwoLayerNet(7, 5, "relu", 0.1, rngs=nnx.Rngs(0))
  x, y = np.array([0, 3, 6, 2]), np.array([1, 3, 5, 6])
  w_in, w_out = np.asarray(net.w_in[...]), np.asarray(net.w_out[...])
  onehot_sum = np.eye(7)[x] + np.eye(7)[y]
  expected = np.maximum(onehot_sum @ w_in.T, 0) @ w_out.T
  np.testing.assert_allclose(net(x, y), expected, rtol=1e-5, atol=1e-7)
  assert w_in.std() == pytest.approx(0.1 / np.sqrt(7), rel=0.5)  # init scale kappa / sqrt(p)
  quad = ma.TwoLayerNet(7, 5, "quad", 0.1, rngs=nnx.Rngs(0))
  np.testing.assert_allclose(quad(x, y), (onehot_sum @ w_in.T) ** 2 @ w_out.T, rtol=1e-5, atol=1e-8)


def test_split_covers_all_pairs_once():
  train, test = ma.split_pairs(23, 0.75, 0)
  assert len(train) == int(0.75 * 529) and len(train) + len(test) == 529
  assert len({tuple(r) for r in np.concatenate([train, test])}) == 529
  full_train, full_test = ma.split_pairs(5, 1.0, 0)
  assert full_test is full_train


def test_first_step_has_learning_rate_zero_then_linear_warm_up():
  config = PRESETS["smoke"]
  tx = ma.make_optimizer(config)
  params = {"w": np.ones(3, np.float32)}
  state = tx.init(params)
  updates, state = tx.update({"w": np.ones(3, np.float32)}, state, params)
  np.testing.assert_array_equal(updates["w"], 0.0)  # LambdaLR factor min(0/10, 1) = 0
  updates, state = tx.update({"w": np.ones(3, np.float32)}, state, params)
  adam_step = optax.adamw(config.lr / 10, b1=0.9, b2=0.98, eps=1e-8, weight_decay=config.weight_decay)
  s = adam_step.init(params)
  _, s = adam_step.update({"w": np.ones(3, np.float32)}, s, params)
  expected, _ = adam_step.update({"w": np.ones(3, np.float32)}, s, params)
  np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-6)


def test_smoke_report_has_the_spec_4_2_claims_and_plots(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed."""
  run = smoke_report("modular_addition")
  ids = {c["id"] for c in run.record["claims"]}
  assert {"smoke_memorization_step", "smoke_grokking_delay", "smoke_final_test_accuracy"} <= ids
  for png in ("grokking_curves.png", "fourier_spectrum.png"):
    assert (run.folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_small_reproduction_meets_spec_4_1_a(tmp_path):
  record = reproduce(EXPERIMENT, "small", tmp_path, overrides=["mesh.data=1"])
  failed = [c for c in record["claims"] if not c["passed"]]
  assert not failed, failed
