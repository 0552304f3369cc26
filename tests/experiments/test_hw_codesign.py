"""Hardware co-design experiment: smoke results (spec 4.2), presets, configs, model sizes."""

import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.hw_codesign import model as model_lib
from jaxpapers.experiments.hw_codesign.config import SMALL, SMOKE, DataConfig, ModelConfig
from jaxpapers.experiments.hw_codesign.run import EXPERIMENT
from jaxpapers.nn.afmoe import AfmoeLM
from jaxpapers.roofline import arch


def test_smoke_report_covers_the_ci_checks(smoke_report):
  run = smoke_report("hw_codesign")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"qwen_tpot", "qwen_prefill_tflop_head_all", "qwen_prefill_tflop_head_last",
          "design_space_size", "decode_intensity_max", "prefill_qkvo_d640_below_ridge",
          "prefill_moe_below_ridge", "bandwidth_doubling", "moe_k_equals_e", "toy_pareto",
          "known_law_exponent_a", "known_law_exponent_b", "decode_step_vs_forward", "sweep_learns"} <= set(claims)
  assert claims["qwen_tpot"]["measured"] == pytest.approx(4.8238, abs=1e-3)
  assert claims["design_space_size"]["measured"] == 23_312
  m = json.loads((run.folder / "measurements.json").read_text())
  assert len(m["sweep"]) == 2 and {r["E"] for r in m["sweep"]} == {1, 4}
  assert max(r["loss"] for r in m["sweep"]) == claims["sweep_learns"]["measured"]
  assert claims["sweep_learns"]["measured"] < math.log(SMOKE.data.vocab_size)
  assert (run.folder / "hw_codesign.png").read_bytes()[:4] == b"\x89PNG"


def test_small_sweep_is_the_specs_grid_cut_to_16():
  models = SMALL.sweep.models(SMALL.model)
  assert len(models) == 16  # the 16-24 runs, at the low end to fit ~4 minutes
  dense = [m for m in models if m.num_experts == 1]
  assert {(m.d_model, m.num_layers) for m in dense} == {(d, l) for d in (32, 48, 64, 96)
                                                         for l in (1, 2, 4)}
  assert {(m.d_model, m.num_experts, m.top_k) for m in models if m.num_experts > 1} == {
      (32, 4, 1), (32, 8, 1), (64, 4, 1), (64, 8, 1)}
  # one epoch of distinct windows: 400 steps x 16 windows x 64 tokens = 409,600 tokens per run
  assert SMALL.train.steps * SMALL.batch_size == SMALL.data.train_sequences == 6400
  assert SMALL.train.steps % SMALL.train.steps_per_dispatch == 0
  assert SMALL.train.eval_every % SMALL.train.steps_per_dispatch == 0  # one compiled chunk


@pytest.mark.parametrize("experts,top_k", [(1, 1), (8, 2)])
def test_arch_of_counts_the_trained_model(experts, top_k):
  data = DataConfig(vocab_size=64, seq_len=16)
  m = ModelConfig(d_model=32, num_layers=2, num_experts=experts, top_k=top_k, head_dim=8)
  model = AfmoeLM(model_lib.afmoe_config(m, data), rngs=nnx.Rngs(0))
  n = sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  counts = arch.param_counts(model_lib.arch_of(m, data))
  assert counts.total == n
  if experts > 1:  # 2 layers x (E - K) unused experts of 3 d f_e (f_e = 4 d / 4)
    assert counts.total - counts.active == 2 * (experts - top_k) * 3 * 32 * 32
  assert model_lib.afmoe_config(m, data).is_global(1) is False  # all causal RoPE layers


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="codesign.device"):
    EXPERIMENT.config("smoke", ["codesign.device=jetson"])
  with pytest.raises(ConfigError, match="sweep.law"):
    EXPERIMENT.config("smoke", ["sweep.law=chinchilla"])
  with pytest.raises(ConfigError, match="model.top_k"):
    EXPERIMENT.config("smoke", ["model.num_experts=2", "model.top_k=3"])
  with pytest.raises(ConfigError, match="calibration.fit_on"):
    EXPERIMENT.config("small", ["calibration.fit_on=3"])
  assert EXPERIMENT.config("small", ["codesign.device=orin_nx"]).codesign.device == "orin_nx"


def test_entropy_floor_is_below_the_uniform_loss():
  floor = model_lib.entropy_floor(SMOKE.data)
  assert 0 < floor < math.log(SMOKE.data.branching) + 0.5 < math.log(SMOKE.data.vocab_size)
  train, held = model_lib.sources(SMOKE.data)
  assert len(train) == SMOKE.data.train_sequences and len(held) == SMOKE.data.eval_sequences
  assert not np.array_equal(train.tokens[:len(held)], held.tokens)


def _rows(loss):
  shapes = [(32, 1, 1, 1), (32, 2, 1, 1), (48, 2, 1, 1), (64, 2, 1, 1), (32, 2, 4, 1), (64, 2, 8, 2)]
  out = []
  for (d, l, e, k), y in zip(shapes, loss):
    active = l * (4 * d * d + 3 * d * (4 * d if e == 1 else k * d))
    total = l * (4 * d * d + 3 * d * (4 * d if e == 1 else e * d))
    out.append({"tag": f"d{d}_l{l}_e{e}", "d": d, "l": l, "E": e, "K": k, "n_active": float(active),
                "n_total": float(total), "loss": y})
  return out


def test_law_study_moe_vs_dense_and_bounds():
  from jaxpapers.experiments.hw_codesign import law_study
  from jaxpapers.roofline import loss_law
  rows = _rows([4.0, 3.5, 3.2, 3.0, 3.6, 2.9])
  diff = {r["tag"]: r for r in law_study.moe_vs_dense(rows)}
  assert set(diff) == {"d32_l2_e4", "d64_l2_e8"}
  assert diff["d32_l2_e4"]["minus_dense"] == pytest.approx(0.1)
  assert diff["d64_l2_e8"]["minus_dense"] == pytest.approx(-0.1)
  # d 32: dense FFN 3 d 4d vs 1 of 4 experts 3 d d: active (4 + 3) / (4 + 12), total (4 + 12) / 16
  assert diff["d32_l2_e4"]["n_active_over_dense"] == pytest.approx(7 / 16)
  assert diff["d32_l2_e4"]["n_total_over_dense"] == pytest.approx(1.0)
  law = loss_law.REDUCED
  theta = np.array([law.lower[0], 1.0, law.upper[2], 1.0, 0.5])
  fit = loss_law.Fit(law, theta, 0.0, 1.0)
  assert law_study.at_bounds(fit) == ["E", "a"]


def test_law_study_leave_one_out_against_a_manual_loop():
  from sklearn.metrics import r2_score

  from jaxpapers.experiments.hw_codesign import law_study
  from jaxpapers.roofline import loss_law
  law = loss_law.power_law(("d",), (64.0,))
  d = np.array([32.0, 48, 64, 96, 128, 192])
  clean = 1.1 + 0.9 * (d / 64) ** -0.7
  rows = _rows(list(clean))
  for r, dd in zip(rows, d):
    r["d"] = dd
  x = law_study.inputs(rows)
  assert law_study.leave_one_out_r2(law, x, clean, 1e-2) == pytest.approx(1.0, abs=1e-6)
  noisy = clean * (1 + 0.02 * np.random.default_rng(0).standard_normal(d.size))
  pred = []
  for i in range(d.size):
    keep = np.arange(d.size) != i
    fit = loss_law.fit(law, {k: v[keep] for k, v in x.items()}, noisy[keep])
    pred.append(fit.predict({k: v[i:i + 1] for k, v in x.items()})[0])
  assert law_study.leave_one_out_r2(law, x, noisy, 1e-2) == pytest.approx(r2_score(noisy, pred))
