"""2Mamba experiment (arXiv 2602.17363): smoke results, recall data, memory
figures against the closed form, the LM's seed ensemble against single runs, the LM claims,
the benchmark's blocked quadratic form, and the GPU script's logic at a tiny size (slow)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import data as data_lib
from jaxpapers.core import bench
from jaxpapers.core import experiment as experiment_lib
from jaxpapers.experiments.two_mamba import checks, gpu_bench
from jaxpapers.experiments.two_mamba import model as model_lib
from jaxpapers.experiments.two_mamba import run as run_lib
from jaxpapers.experiments.two_mamba.bench import quadratic_blocked
from jaxpapers.experiments.two_mamba.model import KEY_HIGH, KEY_LOW, VALUE_LOW, recall_batch
from kernels_pallas.second_order_attention import reference


def test_smoke_report_covers_forms_kernels_recall_memory_and_decode(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed."""
  run = smoke_report("two_mamba")
  claims = {c["id"]: c for c in run.record["claims"]}
  assert {"forms_square_chunked", "forms_square_recurrent", "kernel_grads_square",
          "kernel_grads_exp", "feature_map_identity", "recall_smoke_loss_cut",
          "memory_crossover_d64", "decode_vs_parallel"} <= set(claims)
  assert claims["memory_crossover_d64"]["measured"] == 1058
  assert (run.folder / "two_mamba.png").read_bytes()[:4] == b"\x89PNG"


def test_recall_batch_pairs_values_with_their_keys():
  batch = recall_batch(np.random.default_rng(0), 4, pairs=6, queries=5)
  inputs, targets, weights = batch["inputs"], batch["targets"], batch["weights"]
  assert inputs.shape == (4, 17) and weights.sum() == 4 * 5
  for row in range(4):
    keys, values = inputs[row, 0:12:2], inputs[row, 1:12:2]
    assert len(set(keys)) == 6 and keys.min() >= KEY_LOW and keys.max() < KEY_HIGH
    assert values.min() >= VALUE_LOW
    lookup = dict(zip(keys, values))
    for t in range(12, 17):
      assert targets[row, t] == lookup[inputs[row, t]]


def test_memory_matches_the_closed_form():
  mem = checks.memory(dims=(16,))  # d = 64 (crossover 1,058) is a claim of the smoke run
  for d, m in mem.items():
    features = d * (d + 1) // 2
    assert m["state_bytes"] == 4 * (d * features + features + 3 * d)  # paper Sec. 5.1
    assert m["kv_bytes_per_token"] == 4 * 2 * d
  assert mem[16]["crossover"] == 74  # floor(17^2 / 4 + 1.5) + 1


@pytest.mark.slow  # ~20-50 s of interpret-mode compiles
def test_gpu_script_logic_runs_tiny_on_cpu(tmp_path, monkeypatch):
  monkeypatch.setitem(gpu_bench.TINY, "repeats", 1)
  monkeypatch.setitem(gpu_bench.TINY, "seq", (64,))
  monkeypatch.setitem(gpu_bench.TINY, "chunked_seq", (64,))
  monkeypatch.setitem(gpu_bench.TINY, "decode_ctx", (64,))
  out = tmp_path / "gpu.json"
  assert gpu_bench.main(["--tiny", "--out", str(out)]) == 0
  record = json.loads(out.read_text())
  bench.check_record(record, "two_mamba_gpu")  # the shared bench_*.json schema
  impls = {r["impl"]: r for r in record["results"]["kernels"]}
  assert set(impls) == {"square", "exp", "pallas_flash"}
  assert all("median_s" in r["fwd"] and "median_s" in r["fwd_bwd"] for r in impls.values())
  assert impls["square"]["fwd_over_pallas_flash"] > 0
  assert record["results"]["decode"]["state_bytes"] == 4 * (2 * 136 * 16 + 2 * 136)  # H = 2, d = 16


def test_bench_blocked_quadratic_matches_reference():
  ks = jax.random.split(jax.random.key(0), 4)
  q, k, v = (jax.random.normal(ks[i], (1, 1024, 1, 8)) for i in range(3))
  a = -jax.nn.softplus(jax.random.normal(ks[3], (1, 1024, 1)))
  np.testing.assert_allclose(quadratic_blocked(q, k, v, a), reference.squared_attention(q, k, v, a),
                             atol=1e-5, rtol=1e-4)


_TINY_LM = ["task=lm", "mixer=mamba2s", "lm.d_model=16", "lm.num_layers=1", "lm.num_heads=2",
            "lm.head_dim=8", "lm.mlp_ratio=2", "lm.seq_len=16", "lm.batch_size=2", "lm.seeds=2",
            "lm.train_bytes=20000", "lm.test_bytes=2000", "lm.eval_windows=4", "lm.warmup_steps=1",
            "lm.train.steps=3", "lm.train.eval_every=3", "lm.train.log_every=1",
            "lm.train.checkpoint_every=0", "clip=0.05"]  # clip 0.05: every step is clipped


def test_lm_ensemble_members_train_like_single_runs():
  config = run_lib.EXPERIMENT.config("small", _TINY_LM)
  trainer = experiment_lib.build_trainer(run_lib.EXPERIMENT, config, None)
  history = trainer.run().history
  ensemble = trainer.model
  assert isinstance(ensemble, model_lib.SeedEnsemble) and ensemble.size == 2
  assert set(run_lib.lm_seed_losses(history)) == {0, 1}

  # Seed 1 trained alone: its own init, data order, global-norm clipping and AdamW.
  lm = config.lm
  make = lambda: model_lib.mixer_lm(256, lm.d_model, lm.num_layers, model_lib.mixer_config(config),
                                    lm.mlp_ratio, rngs=nnx.Rngs(1))
  schedule = optax.warmup_cosine_decay_schedule(0.0, lm.lr, 1, 3, end_value=0.0)
  optimizer = optax.chain(optax.clip_by_global_norm(0.05),
                          optax.adamw(schedule, weight_decay=config.weight_decay))
  graphdef = nnx.graphdef(nnx.eval_shape(make))
  # Built in one jitted call (the values of an eager build, one compile instead of one per op).
  params, opt_state = jax.jit(lambda: (lambda p: (p, optimizer.init(p)))(nnx.state(make())))()
  train, _ = model_lib.lm_sources(config)
  batches = data_lib.iterator(data_lib.batch_dataset(train, lm.batch_size, seed=1).map(
      model_lib._token_weights))

  @jax.jit
  def step(params, opt_state, batch):
    def loss(params):
      logits = nnx.merge(graphdef, params)(batch["inputs"])
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
      return jnp.sum(losses * batch["weights"]) / jnp.sum(batch["weights"])
    updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(3):
    params, opt_state = step(params, opt_state, next(batches))
  member = jax.tree.map(lambda x: np.asarray(x)[1], nnx.to_pure_dict(nnx.state(ensemble.members)))
  alone = nnx.to_pure_dict(params)
  for path, got in jax.tree_util.tree_leaves_with_path(member):
    want = alone
    for key in path:
      want = want[key.key]
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-5,
                               err_msg=jax.tree_util.keystr(path))


def test_member_clipping_equals_global_norm_clipping_per_member():
  ks = jax.random.split(jax.random.key(0), 2)
  grads = {"a": jax.random.normal(ks[0], (3, 4, 5)), "b": 0.01 * jax.random.normal(ks[1], (3, 7))}
  got, _ = model_lib.clip_by_member_norm(1.0).update(grads, optax.EmptyState())
  clip = optax.clip_by_global_norm(1.0)
  for m in range(3):
    want, _ = clip.update(jax.tree.map(lambda g: g[m], grads), clip.init(None))
    for k in grads:
      np.testing.assert_allclose(got[k][m], want[k], rtol=1e-6)
  assert float(jnp.abs(got["b"][0] - grads["b"][0]).max()) > 0  # member 0 was clipped


def _lm_history(per_seed):
  return [{"kind": "eval", "step": 10, **{f"test_loss_seed{s}": v for s, v in enumerate(per_seed)}}]


def test_lm_claims_pair_seeds_and_measure_spreads():
  runs = {"softmax": _lm_history([2.00, 2.01, 2.02]), "2mamba": _lm_history([2.03, 2.05, 2.04]),
          "mamba2s": _lm_history([2.10, 2.04, 2.06]), "mamba2": _lm_history([2.3, 2.3, 2.3]),
          "2mamba_e": _lm_history([2.0, 2.0, 2.0])}
  claims, summary = run_lib.lm_claims(runs)
  by_id = {c.id: c for c in claims}
  assert by_id["lm_2mamba_vs_softmax"].measured == pytest.approx(0.03)
  assert by_id["lm_2mamba_vs_softmax"].passed
  # Seed 1: 2.05 > 2.04 although the means are ordered: "every seed" fails.
  assert by_id["lm_2mamba_vs_mamba2s"].measured == pytest.approx(0.01)
  assert not by_id["lm_2mamba_vs_mamba2s"].passed
  assert by_id["lm_spread_softmax_2mamba_mamba2s"].measured == pytest.approx(0.06)
  assert by_id["lm_2mamba_vs_mamba2"].passed and summary["spread"]["mamba2"] == 0
