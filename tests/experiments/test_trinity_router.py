"""Trinity router-only simulation: smoke claims, an independent MaxVio check, plots."""

import jax
import numpy as np
import pytest

from jaxpapers.experiments.trinity import router_sim


@pytest.fixture(scope="module")
def smoke_results():
  return router_sim.router_results("smoke")


def test_smoke_claims_pass(smoke_results):
  claims = router_sim.router_claims("smoke", smoke_results)
  ids = [c.id for c in claims]
  assert len(claims) == 5 and all("router" in i for i in ids)
  failed = [c for c in claims if not c.passed]
  assert not failed, failed
  res = smoke_results["configs"]["E16_K2"]
  # Our calibration's figures for this run: tail MaxVio sign ~0.19, SMEBU ~0.113.
  assert 0.15 < res["sign"]["tail_max_vio"] < 0.23 and 0.09 < res["smebu"]["tail_max_vio"] < 0.14


def test_plot_router_writes_a_png(smoke_results, tmp_path):
  path = router_sim.plot_router(tmp_path / "router.png", smoke_results)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_zero_step_size_keeps_the_router_natural_imbalance():
  experts, top_k, tokens, steps = 16, 2, 512, 4
  res = router_sim.simulate(experts, top_k, tokens, steps, 0.0, "smebu", seed=3)
  np.testing.assert_array_equal(res["bias"], 0.0)
  assert res["max_vio"].min() > 0.5 and not res["reached_threshold"]
  # Independent recomputation of step 2's MaxVio: same random stream, numpy top-k and counts.
  key_w, key_x = jax.random.split(jax.random.key(3))
  w = np.asarray(jax.random.normal(key_w, (16, experts))) / 4.0
  x = np.asarray(jax.random.normal(jax.random.fold_in(key_x, 2), (tokens, 16)))
  scores = 1.0 / (1.0 + np.exp(-(x @ w + np.linspace(-1.5, 1.5, experts))))
  chosen = np.argsort(-scores, axis=1)[:, :top_k]
  counts = np.bincount(chosen.ravel(), minlength=experts)
  mean = top_k * tokens / experts
  assert res["max_vio"][2] == pytest.approx((counts.max() - mean) / mean, abs=1e-6)


@pytest.mark.slow
def test_small_protocol_claims_pass():
  claims = router_sim.router_claims("small")
  failed = [c for c in claims if not c.passed]
  assert len(claims) == 8 and not failed, failed
