"""CrispEdit experiment: smoke results, the LM's edit forward and the claims' aggregation.

The editing API itself is tested in tests/editing/test_crispedit.py.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers import optim
from jaxpapers.experiments.crispedit import lm
from jaxpapers.experiments.crispedit.run import EXPERIMENT


def test_smoke_study_shows_fine_tuning_damage_and_crispedit_locality(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed."""
  run = smoke_report("crispedit")
  ids = {c["id"] for c in run.record["claims"]}
  assert ids == {"mlp_crispedit_edit_success", "mlp_drop_ratio", "lm_crispedit_ours_subspace_leak"}
  study = json.loads((run.folder / "study.json").read_text())
  seed = study["mlp"]["0"]
  # calibration figures (FT drop 20.8-24.6 pts, CrispEdit 2.7-3.6 pts): fine-tuning really damages
  assert seed["ft"]["drop_points"] > 10 and seed["ft"]["edit_success"] == 1.0
  assert seed["a_only"]["drop_points"] > seed["crispedit"]["drop_points"]
  assert (seed["crispedit"]["project"], seed["crispedit"]["label_mode"]) == ("gradient", "empirical")
  ours = study["lm"]["0"]["crispedit_ours"]  # ours runs in the LM study (its subspace check)
  assert (ours["project"], ours["label_mode"]) == ("both", "sampled")
  assert ours["subspace_leak"] < 1e-3 and study["lm_sequential"] is None
  assert (run.folder / "crispedit.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def smoke_lm():
  """(config, facts, model): the smoke preset's LM, built once for the tests below (eagerly: the
  initializers' compiled ops are then shared with the TokenMLP test's two models of the same
  shapes; a jitted build is one more program of about the same cost)."""
  config = EXPERIMENT.config("smoke").lm
  facts = lm.make_facts(config)
  model = lm.fact_lm(config, facts.vocab_size, rngs=nnx.Rngs(1))
  return config, facts, model


@nnx.jit
def _forward(model, tokens):
  return model(tokens)


def test_factors_of_attention_and_mlp_projections_in_the_lm(smoke_lm):
  """Taps work on the LM's attention (qkv) and MLP (down) projections: A from their inputs."""
  from jaxpapers.nn.embedding import embed_lookup  # pylint: disable=g-import-not-at-top
  config, facts, model = smoke_lm
  items = [(s, r, 1, facts.objects[s, r]) for s in range(3) for r in range(2)]
  batch = lm.fact_rows(facts, items, config.seq_len, "all")
  paths = [("layers", 0, "mixer", "qkv"), ("layers", 1, "mlp", "down")]
  factors, n = optim.collect_kfac_factors(model, paths, [batch], lm.logits_fn, label_mode="empirical")
  assert n == batch["mask"].sum()
  block = model.layers[0]
  a = np.asarray(block.mixer_norm(embed_lookup(model.embed[...], jnp.asarray(batch["inputs"]))))
  a = a.reshape(-1, a.shape[-1])
  w = batch["mask"].reshape(-1)
  qkv, down = factors["layers/0/mixer/qkv"], factors["layers/1/mlp/down"]
  np.testing.assert_allclose(qkv.a, (a * w[:, None]).T @ a / n, rtol=1e-4, atol=1e-6)
  d, width = config.d_model, config.mlp_width
  assert qkv.g.shape == (3 * d, 3 * d)
  assert down.a.shape == (width, width) and down.g.shape == (d, d)
  assert np.linalg.eigvalsh(np.asarray(down.g, np.float64)).min() > -1e-6
  assert float(np.trace(down.g)) > 0


def test_token_mlp_is_tiny_lms_gelu_mlp():
  """The LM's flattened MLP: same parameters (same draws) and outputs as TinyLM's own GELU MLP."""
  from jaxpapers.nn.attention import CausalSelfAttention  # pylint: disable=g-import-not-at-top
  from jaxpapers.nn.tiny_lm import TinyLM  # pylint: disable=g-import-not-at-top
  config = EXPERIMENT.config("smoke").lm
  facts = lm.make_facts(config)
  ours = lm.fact_lm(config, facts.vocab_size, rngs=nnx.Rngs(3))
  plain = TinyLM(facts.vocab_size, config.d_model, config.num_layers,
                 mixer=lambda r: CausalSelfAttention(config.d_model, config.num_heads, rngs=r),
                 mlp_hidden=config.mlp_width, mlp_bias=False, embed_std=1.0, head_bias=False,
                 rngs=nnx.Rngs(3))
  for layer in range(config.num_layers):
    for name in ("up", "down"):
      np.testing.assert_array_equal(getattr(ours.layers[layer].mlp, name).kernel[...],
                                    getattr(plain.layers[layer], name).kernel[...])
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, facts.vocab_size, (3, 16)))
  np.testing.assert_allclose(_forward(ours, tokens), _forward(plain, tokens), rtol=1e-6, atol=1e-6)


def test_tail_logits_equal_the_full_forward_at_the_objects(smoke_lm):
  """The edit loop's forward (cached prefix, logits at the object only) is TinyLM's, either layer."""
  config, facts, model = smoke_lm
  tail = nnx.jit(lambda m, b, layer: lm.tail_logits_fn(layer)(m, b), static_argnames="layer")
  items = [(s, r, t, facts.objects[(s + 1) % 12, r]) for s in range(4) for r in range(2) for t in (0, 2)]
  rows = lm.fact_rows(facts, items, config.seq_len, "object")
  length = lm.object_span(rows)
  pos = rows["mask"].argmax(-1)
  assert pos.max() < length <= config.seq_len and length % 8 == 0
  for layer in (0, 1):
    edited = nnx.clone(model)  # a changed kernel flows through the tail
    edited.layers[layer].mlp.down.kernel[...] = edited.layers[layer].mlp.down.kernel[...] * 1.5 + 0.01
    batch = lm.edit_inputs(model, rows, layer, length)  # prefix of the base model: kernel-free
    full = np.asarray(_forward(edited, jnp.asarray(rows["inputs"])))[np.arange(len(pos)), pos]
    np.testing.assert_allclose(tail(edited, batch, layer=layer), full, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(batch["targets"], rows["targets"][np.arange(len(pos)), pos])
  assert lm.tail_logits_fn(0) is lm.tail_logits_fn(0)  # one function: one compiled edit loop
  # the study's evaluation from the cached prefix = the full forward's accuracy and text loss
  text = {k: v[:6] for k, v in lm.fact_rows(facts, items, config.seq_len, "all").items()}
  evaluation = lm.Evaluation(model, 0, {"rows": rows}, text)
  edited = nnx.clone(model)
  edited.layers[0].mlp.down.kernel[...] = edited.layers[0].mlp.down.kernel[...] * 3.0
  logits = _forward(edited, jnp.asarray(rows["inputs"]))
  full_correct = np.asarray(jnp.argmax(logits, -1))[np.arange(len(pos)), pos] == batch["targets"]
  np.testing.assert_array_equal(evaluation.correct(edited, "rows"), full_correct)
  assert evaluation.accuracy(edited, "rows") == pytest.approx(full_correct.mean())
  full_text = lm._masked_ce(_forward(edited, jnp.asarray(text["inputs"])),
                            {k: jnp.asarray(v) for k, v in text.items()})
  assert evaluation.text_loss(edited) == pytest.approx(float(full_text), rel=1e-5)
  with pytest.raises(ValueError, match="do not fit"):
    lm.edit_inputs(model, rows, 0, int(pos.max()))


def test_lm_claims_take_the_worst_edit_set_and_the_mean_locality():
  """Small-preset LM claims over edit sets: worst set, except locality (mean), floors on the ratio;
  CrispEdit's claims on the authors' configuration, the subspace claim on ours."""
  from jaxpapers.experiments.crispedit.run import lm_claims  # pylint: disable=g-import-not-at-top

  def study(crisp_drop, crisp_text, crisp_success, ft_drop, ft_text):
    editor = lambda drop, text, success, leak=0.3: {
        "locality_drop_points": drop, "text_loss_increase_pct": text, "edit_success": success,
        "subspace_leak": leak}
    return {"base": {"locality": 1.0}, "crispedit": editor(crisp_drop, crisp_text, crisp_success),
            "crispedit_ours": editor(9.0, 9.0, 0.0, 1e-6),
            "ft": editor(ft_drop, ft_text, 1.0), "a_only": editor(0.0, 0.0, 1.0)}

  studies = {0: study(1.0, 0.2, 1.0, 40.0, 3.0), 1: study(2.9, 0.9, 0.95, 20.0, 1.5),
             2: study(1.6, 0.05, 1.0, 30.0, 2.0)}
  claims = {c.id: c for c in lm_claims(studies, "small")}
  assert claims["lm_crispedit_ours_subspace_leak"].measured == pytest.approx(1e-6)
  assert claims["lm_crispedit_locality_drop"].measured == pytest.approx((1.0 + 2.9 + 1.6) / 3)
  assert claims["lm_crispedit_locality_drop"].passed  # mean 1.83 <= 2 although set 1 is 2.9
  assert claims["lm_crispedit_text_loss_increase"].measured == pytest.approx(0.9)
  assert claims["lm_crispedit_edit_success"].measured == pytest.approx(0.95)
  assert claims["lm_ft_edit_success_matches"].measured == pytest.approx(0.0)  # min(0, 0.05, 0)
  # per set: max(40/1, 3/0.2) = 40, max(20/2.9, 1.5/0.9) = 6.9, max(30/1.6, 2/0.1 (floor)) = 20
  assert claims["lm_ft_cost_ratio"].measured == pytest.approx(20.0 / 2.9)
  assert claims["lm_crispedit_ours_locality_drop"].measured == pytest.approx(9.0)  # ours' own figures
  assert not claims["lm_crispedit_ours_text_loss_increase"].passed
  assert not any(c.startswith("lm_seq") for c in claims)
  studies[1]["crispedit"]["text_loss_increase_pct"] = 1.2
  assert not {c.id: c for c in lm_claims(studies, "small")}["lm_crispedit_text_loss_increase"].passed
  # sequential: the claims read the record after the last batch
  record = lambda drop, text, success: {"facts_edited": 100, "edit_success": success,
                                        "locality_drop_points": drop, "text_loss_increase_pct": text}
  sequential = {"base": {"locality_facts": 140}, "batches": [32, 32, 32, 4],
                "crispedit": [record(9.0, 9.0, 0.1), record(1.5, 0.05, 0.92)],
                "ft": [record(1.0, 1.0, 1.0), record(30.0, 4.0, 0.8)]}
  seq = {c.id: c for c in lm_claims(studies, "small", sequential) if c.id.startswith("lm_seq")}
  assert seq["lm_seq_crispedit_edit_success"].measured == pytest.approx(0.92)
  assert seq["lm_seq_crispedit_locality_drop"].measured == pytest.approx(1.5)
  assert seq["lm_seq_crispedit_text_loss_increase"].measured == pytest.approx(0.05)
  assert seq["lm_seq_ft_cost_ratio"].measured == pytest.approx(max(30.0 / 1.5, 4.0 / 0.1))
  assert all(c.passed for c in seq.values()) and "32/32/32/4" in seq["lm_seq_crispedit_edit_success"].statement


def test_mlp_claims_gate_on_the_authors_configuration():
  from jaxpapers.experiments.crispedit.run import mlp_claims  # pylint: disable=g-import-not-at-top
  editor = lambda drop, success=1.0, gen=1.0: {"drop_points": drop, "edit_success": success,
                                               "generalization": gen}
  results = {s: {"ft": editor(12.0), "crispedit": editor(d), "crispedit_ours": editor(o),
                 "a_only": editor(7.0)} for s, d, o in ((0, 2.0, 1.0), (1, 2.5, 1.4), (2, 1.9, 0.7))}
  claims = {c.id: c for c in mlp_claims(results, "small")}
  assert claims["mlp_crispedit_mean_drop"].measured == pytest.approx(6.4 / 3)
  assert not claims["mlp_crispedit_mean_drop"].passed  # the authors' figures decide, not ours
  assert claims["mlp_ours_drop_below_authors"].measured == pytest.approx(1.0)  # min(1.0, 1.1, 1.2)
  assert claims["mlp_crispedit_ours_mean_drop"].measured == pytest.approx(3.1 / 3)
  assert claims["mlp_drop_ratio"].measured == pytest.approx(2.5 / 12.0)


def test_edit_loop_gradient_through_the_stored_transpose(smoke_lm):
  """`with_transposed_hidden`: the edit loss and its kernel gradient are those of the plain tail."""
  from jaxpapers.editing import edit_loss  # pylint: disable=g-import-not-at-top
  config, facts, model = smoke_lm
  items = [(s, r, 0, facts.objects[(s + 3) % 12, r]) for s in range(5) for r in range(2)]
  rows = lm.fact_rows(facts, items, config.seq_len, "object")
  plain = lm.edit_inputs(model, rows, 1, lm.object_span(rows))
  fast = lm.with_transposed_hidden(plain)
  graphdef, state = nnx.split(model)

  def loss(kernel, batch):
    flat = [(k, v.replace(kernel) if k == ("layers", 1, "mlp", "down", "kernel") else v)
            for k, v in nnx.to_flat_state(state)]
    m = nnx.merge(graphdef, nnx.from_flat_state(flat))
    return edit_loss(lm.tail_logits_fn(1)(m, batch), batch)

  kernel = model.layers[1].mlp.down.kernel[...]
  value_and_grad = jax.jit(jax.value_and_grad(loss))  # one compile per batch structure
  (l0, g0), (l1, g1) = (value_and_grad(kernel, b) for b in (plain, fast))
  assert float(l1) == pytest.approx(float(l0), rel=1e-6)
  np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-7)
  assert float(jnp.abs(g0).max()) > 0


def test_mlp_training_batches_permute_each_epoch_and_resume():
  """`mlp.ShuffledBatches`: every epoch visits each row once (remainder dropped), epochs differ,
  and a restored state continues with the same batches."""
  from jaxpapers.experiments.crispedit import mlp  # pylint: disable=g-import-not-at-top
  x = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
  it = mlp.ShuffledBatches({"x": x, "y": np.arange(10)}, 3, seed=5)
  epochs = [np.concatenate([next(it)["y"] for _ in range(3)]) for _ in range(2)]
  for e, seen in enumerate(epochs):
    np.testing.assert_array_equal(seen, np.random.default_rng([5, e]).permutation(10)[:9])
  assert not np.array_equal(epochs[0], epochs[1])
  batch = it.batch(4)
  np.testing.assert_array_equal(batch["x"][:, 0], batch["y"])
  np.testing.assert_array_equal(batch["mask"], np.ones(3, np.float32))
  state = it.get_state()
  expected = [next(it)["y"] for _ in range(4)]
  again = mlp.ShuffledBatches({"x": x, "y": np.arange(10)}, 3, seed=5)
  again.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(again)["y"], want)
  with pytest.raises(ValueError, match="batch_size must be in"):
    mlp.ShuffledBatches({"x": x}, 11, seed=0)
