"""ArXiv-to-Model experiment: smoke results (spec's CI version), config checks, parameter counts,
the LLaMA-style model against a numpy forward pass, the unigram baseline."""

import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.errors import ConfigError
from jaxpapers.experiments.arxiv_to_model import data as corpus_lib
from jaxpapers.experiments.arxiv_to_model import model
from jaxpapers.experiments.arxiv_to_model.config import PAPER, SMALL, ModelConfig
from jaxpapers.experiments.arxiv_to_model.run import EXPERIMENT


def test_smoke_report_covers_the_ci_checks(smoke_report):
  run = smoke_report("arxiv_to_model")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"rules_hand_made", "A_synth_counters", "A_synth_counters_other_match", "A_synth_invariants",
          "A_math_preserved", "A_input_order", "A_dedup_exact", "A_validation_split", "B_digits_one_token_each",
          "B_seeded_commands_one_token", "param_count_paper_blocks", "param_count_paper_model",
          "param_count_trained_model", "smoke_loss_finite"} <= set(claims)
  assert not any(k.startswith("A_real") for k in claims)  # smoke runs without real TeX files
  m = json.loads((run.folder / "measurements.json").read_text())
  s = m["synth"]
  assert {k: s["stats"][k] for k in s["expected"]} == s["expected"] and s["mismatches"] == {}
  assert s["expected"]["records"] == 50 and s["stats"]["duplicate"] == s["expected"]["duplicate"] >= 1
  assert claims["A_synth_yield"]["measured"] == pytest.approx(s["stats"]["written"] / 50)
  assert m["paper_params"]["counted"] == m["paper_params"]["total"] == 1_633_781_760
  assert math.isfinite(m["lm"]["train_loss"])
  assert (run.folder / "arxiv_to_model.png").read_bytes()[:4] == b"\x89PNG"


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="tokenizer"):
    EXPERIMENT.config("smoke", ["tokenizer=wordpiece"])
  with pytest.raises(ConfigError, match="match"):
    EXPERIMENT.config("smoke", ["match=regex"])
  with pytest.raises(ConfigError, match="model.num_heads"):
    EXPERIMENT.config("smoke", ["model.num_heads=3"])
  with pytest.raises(ConfigError, match="records"):
    EXPERIMENT.config("smoke", ["records=10"])
  assert EXPERIMENT.config("smoke", ["match=substring"]).match == "substring"


def test_presets_follow_the_spec():
  m = SMALL.model
  assert (m.d_model, m.num_layers, m.num_heads, m.ffn, m.norm_eps, m.context) == (128, 4, 4, 344, 1e-6, 128)
  assert (SMALL.lr, SMALL.b1, SMALL.b2, SMALL.weight_decay, SMALL.warmup_steps, SMALL.clip) == (1e-3, 0.9, 0.95, 0.1,
                                                                                                100, 1.0)
  assert (SMALL.records, SMALL.vocab_size, SMALL.validation_every) == (2000, 8000, 100)
  p = PAPER.model
  assert (p.d_model, p.num_layers, p.num_heads, p.ffn, p.context, p.vocab_size) == (2048, 24, 16, 5504, 768, 102_400)
  assert (PAPER.lr, PAPER.warmup_steps, PAPER.batch_size) == (2e-4, 500, 2048)


@pytest.fixture(scope="module")
def toy():
  """A tiny decoder (built once: eager initialization compiles each shape's random draw)."""
  cfg = ModelConfig(d_model=16, num_layers=2, num_heads=2, ffn=24, norm_eps=1e-6)
  return cfg, model.build_model(cfg, 30, nnx.Rngs(1))


def test_parameter_count_formula(toy):
  counts = model.param_count(PAPER.model, 102_400)
  assert counts["blocks"] == 24 * 50_597_888 == 1_214_349_312
  assert counts["total"] == 1_214_349_312 + 2048 + 419_430_400
  assert model.param_count(PAPER.model, 32_000)["total"] == 1_345_423_360  # the paper's ~1.36B
  cfg, built = toy
  assert sum(x.size for x in jax.tree.leaves(nnx.state(built, nnx.Param))) == \
      model.param_count(cfg, 30)["total"] == 2 * (4 * 256 + 3 * 16 * 24 + 32) + 16 + 2 * 30 * 16


def _rms(x, scale, eps):
  return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + eps) * scale


def _rope(x, theta):
  t, half = x.shape[1], x.shape[-1] // 2
  freq = theta ** (-np.arange(half) / half)
  ang = np.arange(t)[None, :, None, None] * freq
  x1, x2 = x[..., :half], x[..., half:]
  return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang), x2 * np.cos(ang) + x1 * np.sin(ang)], -1)


def test_model_matches_a_numpy_llama_forward(toy):
  _, m = toy
  tokens = np.array([[1, 5, 7, 2, 9, 3], [4, 4, 0, 29, 8, 1]])
  got = np.asarray(m(tokens))
  f = lambda v: np.asarray(v[...], np.float64)  # noqa: E731
  x = f(m.embed)[tokens]
  b, t, d, h = *tokens.shape, 16, 2
  causal = np.tril(np.ones((t, t), bool))
  for layer in m.layers:
    a = _rms(x, f(layer.mixer_norm.scale), 1e-6) @ f(layer.mixer.qkv.kernel)
    q, k, v = np.split(a.reshape(b, t, 3 * h, d // h), 3, 2)
    q, k = _rope(q, 1e4), _rope(k, 1e4)
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d // h)
    s = np.where(causal, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    x = x + np.einsum("bhqk,bkhd->bqhd", p, v).reshape(b, t, d) @ f(layer.mixer.out.kernel)
    u = _rms(x, f(layer.mlp_norm.scale), 1e-6)
    gate = u @ f(layer.mlp.gate.kernel)
    x = x + (gate / (1 + np.exp(-gate)) * (u @ f(layer.mlp.up.kernel))) @ f(layer.mlp.down.kernel)
  want = _rms(x, f(m.norm.scale), 1e-6) @ f(m.head.kernel)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  assert m.head.bias is None
  kernels = np.concatenate([f(layer.mixer.qkv.kernel).ravel() for layer in m.layers])
  assert abs(kernels.std() - 0.02) < 0.002  # N(0, 0.02) init, as HF LLaMA's initializer_range


def test_unigram_perplexity_by_hand():
  pad = 9
  ids = np.array([[0, 1, 1, 2, pad], [0, 3, pad, pad, pad]])  # targets 1, 1, 2, 3
  assert corpus_lib.unigram_perplexity(ids, pad) == pytest.approx(2 * math.sqrt(2))
