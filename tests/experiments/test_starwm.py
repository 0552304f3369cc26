"""StarWM experiment: smoke results (the spec's CI list), the ensemble's independence, config checks."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.errors import ConfigError
from jaxpapers.envs import toy_rts
from jaxpapers.experiments.starwm import model
from jaxpapers.experiments.starwm.config import SMALL
from jaxpapers.experiments.starwm.run import EXPERIMENT


def test_smoke_report_covers_the_ci_checks(smoke_report):
  run = smoke_report("starwm")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"toy_rts_transitions", "smape_edge_cases", "unit_set_wasserstein_cases", "text_round_trip",
          "wm_beats_persistence", "smoke_refine_not_more_blocks", "text_round_trip_starts"} == set(claims)
  assert claims["toy_rts_transitions"]["measured"] == 0 and claims["text_round_trip"]["measured"] == 0
  figures = json.loads((run.folder / "figures.json").read_text())
  v = figures["variants"]
  # the true-simulator look-ahead never blocks more than the reactive base policy
  assert v["refine_true_sim"]["block_rate"] <= v["base"]["block_rate"]
  assert v["refine_true_sim"]["workers"] >= v["base"]["workers"]
  # per-seed figures average to the reported means (5 seeds x 4 episodes)
  per_seed = figures["per_seed"]["base"]["block_rate"]
  assert len(per_seed) == 5 and np.mean(per_seed) == pytest.approx(v["base"]["block_rate"], abs=1e-5)
  assert toy_rts.from_text(figures["example_observation"]).supply_cap.dtype == jnp.int32


def test_ensemble_members_are_independent():
  ens = model.WMEnsemble(3, 8, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (5, 3, 9))
  y = ens(x)
  params = model.member_params(nnx.state(ens))
  for m in range(3):  # member m's own MLP on its own column, as member_wm computes it
    h = x[:, m]
    for i in range(3):
      h = h @ params["kernels"][i][m] + params["biases"][i][m]
      h = jnp.tanh(h) if i < 2 else h
    np.testing.assert_allclose(y[:, m], h, rtol=1e-5, atol=1e-6)
  # the summed loss: member 0's gradient does not see member 1's data
  def loss(e, x):
    return (e(x) ** 2).sum()
  g1 = nnx.grad(loss)(ens, x)
  g2 = nnx.grad(loss)(ens, x.at[:, 1].set(0.0))
  k1, k2 = g1["kernels"][0][...], g2["kernels"][0][...]
  np.testing.assert_allclose(k1[0], k2[0], rtol=1e-6)
  assert not np.allclose(k1[1], k2[1])


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="quality_steps"):
    EXPERIMENT.config("smoke", ["quality_steps=(500,)"])
  with pytest.raises(ConfigError, match="epsilon"):
    EXPERIMENT.config("smoke", ["epsilon=1.5"])


def test_small_preset_follows_the_spec():
  c = SMALL
  assert (c.seeds, c.transitions, c.episode_ticks, c.epsilon, c.horizon, c.hidden) == (5, 45_000, 200, 0.3, 5, 128)
  assert (c.train.steps, c.quality_steps) == (3000, (200, 1000))
