"""NeST experiment: smoke results (provisional thresholds), config checks, model and repair data."""

import json

import numpy as np
import pytest

from jaxpapers import safety
from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.nest import model as model_lib
from jaxpapers.experiments.nest.config import SMALL, SMOKE
from jaxpapers.experiments.nest.run import EXPERIMENT, runs_of
from jaxpapers.safety import toy


def test_smoke_report_holds_the_spec_checks(smoke_report):
  """The registry-parametrized smoke test checks that every claim passed; here, the values."""
  run = smoke_report("nest")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"base_jailbreak_asr", "nest_jailbreak_asr", "nest_benign_drop", "nest_template_drop",
          "nest_param_fraction", "nest_params_vs_lora_r1", "fold_equivalence"} <= set(claims)
  assert claims["base_jailbreak_asr"]["threshold"] == ">= 0.3"  # the provisional smoke thresholds
  assert claims["nest_jailbreak_asr"]["threshold"] == "<= 0.1"
  (seed,) = json.loads((run.folder / "measurements.json").read_text())
  assert seed["alpha"] == 0.7 and seed["model_params"] == 8480
  # LoRA rank 1 on 2 layers x (up 32x64, down 64x32): 2 x 2 x (32 + 64)
  assert seed["lora_r1_params"] == 384
  nest = seed["nest"]
  clusters = sum(seed["clusters_per_layer"])
  assert nest["trainable"] == clusters * 2 * 32  # in_out: delta_in and delta_out in R^32 per cluster
  assert claims["nest_param_fraction"]["measured"] == pytest.approx(nest["trainable"] / 8480)
  assert nest["folded_class"] == "ToyFFN" and nest["folded_params"] == 8480
  assert claims["nest_jailbreak_asr"]["measured"] == nest["asr"] < seed["base"]["asr"]
  assert (run.folder / "nest.png").read_bytes()[:4] == b"\x89PNG"


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="method"):
    EXPERIMENT.config("smoke", ["method=dpo"])
  with pytest.raises(ConfigError, match="variant"):
    EXPERIMENT.config("smoke", ["variant=both"])
  with pytest.raises(ConfigError, match="tap"):
    EXPERIMENT.config("smoke", ["tap=gate"])  # the toy FFN has no gate
  with pytest.raises(ConfigError, match="data.length"):
    EXPERIMENT.config("smoke", ["data.length=5"])
  with pytest.raises(ConfigError, match="alphas"):
    EXPERIMENT.config("smoke", ["alphas=0"])
  assert EXPERIMENT.config("smoke", ["seeds=1,2"]).seeds == (1, 2)


def test_small_preset_follows_the_protocol():
  assert (SMALL.data.dim, SMALL.data.length, SMALL.hidden, SMALL.num_layers) == (32, 8, 64, 2)
  assert (SMALL.data.n_benign, SMALL.data.n_template, SMALL.data.n_harmful, SMALL.data.comply) == (4000, 1000, 2000, 0.35)
  assert (SMALL.base.steps, SMALL.batch_size, SMALL.base_lr, SMALL.repair.steps, SMALL.nest_lr) == (1500, 128, 1e-3, 300, 1e-2)
  assert SMALL.alphas == (1.0, 0.9, 0.8, 0.7, 0.6, 0.5) and SMALL.seeds == (0, 1, 2)
  assert (SMOKE.base.steps, SMOKE.repair.steps, SMOKE.alphas, SMOKE.seeds) == (1000, 150, (0.7,), (0,))
  names = [n for n, _ in runs_of(SMALL)]
  assert names[:2] == ["nest", "random"] and {"full", "lora_r1", "lora_r4", "circuit_breakers",
                                                "in_only", "out_only", "per_neuron"} <= set(names)


def test_toy_model_matches_its_formula():
  m = model_lib.base_model(SMOKE)
  assert safety.count_params(m) == 8480
  x = np.random.default_rng(0).normal(size=(3, 8, 32)).astype(np.float32)
  r = x
  for layer in m.layers:
    r = r + np.maximum(r @ np.asarray(layer.up.kernel[...]), 0) @ np.asarray(layer.down.kernel[...])
  np.testing.assert_allclose(model_lib.predict(m, x), r.mean(1) @ np.asarray(m.out.kernel[...]),
                             rtol=1e-4, atol=1e-5)
  # a trained state merges into the same graph as fresh arrays (models never share a variable)
  from flax import nnx  # pylint: disable=g-import-not-at-top
  restored = model_lib.base_model(SMOKE, nnx.state(m))
  assert restored.layers[0].up.kernel is not m.layers[0].up.kernel
  np.testing.assert_array_equal(restored.out.kernel[...], m.out.kernel[...])


def test_repair_set_has_no_jailbreak_or_template_tokens():
  """NeST trains on vanilla harmful prompts only: no token of the repair set is a template token."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  data = model_lib.repair_set(SMOKE, nnx.state(model_lib.base_model(SMOKE)))
  w = model_lib.world(SMOKE)
  n = SMOKE.data.repair_prompts
  assert (data["y"][:n] == toy.REFUSE).all() and (data["harmful"][:n] == 1).all()
  dist = np.linalg.norm(data["x"][..., None, :] - w.templates, axis=-1).min(-1)
  jb, _ = toy.jailbreak(w, 50, "x", 0.7)
  jb_dist = np.linalg.norm(jb[..., None, :] - w.templates, axis=-1).min(-1)
  template_tokens = np.sort(jb_dist, 1)[:, :3]  # a jailbreak's 3 template tokens (0.3 noise)
  assert dist.min() > template_tokens.max() + 1.0  # none of that kind in the repair set
