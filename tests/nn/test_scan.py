"""Scanned layers (jaxpapers.nn.scan): a scanned model computes what its unscanned twin computes.

Each scanned model gets the parameters of an unscanned one (its layers stacked with
`scan.stack` / `afmoe.stack_layers`); forward outputs, expert loads and gradients must then agree,
for the AFMoE LM (dense prefix, two scanned groups of [local, global] MoE layers, a tail), the
shared tiny LM with attention and the 2Mamba LM. Remat variants give the same loss and
gradients. Router-state writes through `moe_layers()` views land in the stacked rows that
trinity's bias balancing expects.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.experiments.trinity.config import TrinityConfig
from jaxpapers.experiments.trinity.model import balance, run_constants
from jaxpapers.experiments.two_mamba.model import mixer_lm
from jaxpapers.nn import partitioning as pt
from jaxpapers.nn import scan
from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM, stack_layers
from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.mixers import MixerConfig
from jaxpapers.nn.moe import MoE
from jaxpapers.nn.tiny_lm import TinyLM

V = 32
# 7 layers, 1 dense, global_every 2: layers 0-1 unscanned (dense local, global MoE), 2-5 as two
# scanned [local, global] groups, layer 6 an unscanned tail.
TINY = AfmoeConfig(vocab_size=V, d_model=16, num_layers=7, num_dense_layers=1, num_heads=2,
                   num_kv_heads=1, head_dim=8, dense_width=16, num_experts=4, top_k=2,
                   expert_width=8, window=3, global_every=2)
SCANNED = dataclasses.replace(TINY, scan_layers=True)
GRAD_TOL = {"rtol": 1e-4, "atol": 1e-6}  # float32 sums regrouped by the scan (seen: 2e-7)


def _tokens(seed=0, shape=(2, 10)):
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, shape))


def _load(model: nnx.Module, pure: dict) -> nnx.Module:
  state = nnx.state(model)
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)
  return model


def _pure(tree) -> dict:
  return nnx.to_pure_dict(tree)


def _afmoe_pair(remat="none"):
  """An unscanned AFMoE and a scanned one holding the same parameters."""
  unscanned = AfmoeLM(TINY, rngs=nnx.Rngs(0))
  config = dataclasses.replace(SCANNED, remat=remat)
  scanned = AfmoeLM(config, rngs=nnx.Rngs(1))  # other draws: all values come from `unscanned`
  return unscanned, _load(scanned, stack_layers(_pure(nnx.state(unscanned)), config))


def _afmoe_loss(model, tokens):
  logits, counts = model(tokens[:, :-1])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
  return loss, (logits, counts)


@nnx.jit
def _afmoe_grads(model, tokens):
  """(loss, (logits, counts)), grads in one compiled program."""
  return nnx.value_and_grad(_afmoe_loss, has_aux=True)(model, tokens)


@pytest.mark.parametrize("num_layers, dense, every, scan_layers, plan", [
    (7, 1, 2, True, (2, 2)),      # prefix 0-1, groups 2-3 and 4-5, tail 6
    (32, 1, 4, True, (4, 7)),     # the paper preset: layers 4-31 scanned
    (8, 0, 4, True, (0, 2)),      # no dense prefix: everything scanned
    (4, 1, 4, True, (4, 0)),      # no whole aligned group: nothing scanned
    (32, 1, 4, False, (32, 0)),   # scanning off
])
def test_scan_plan_groups_aligned_moe_layers(num_layers, dense, every, scan_layers, plan):
  config = AfmoeConfig(num_layers=num_layers, num_dense_layers=dense, global_every=every,
                       scan_layers=scan_layers)
  assert config.scan_plan() == plan


def test_scanned_afmoe_layout_names_and_pattern():
  model = AfmoeLM(SCANNED, rngs=nnx.Rngs(0))
  assert len(model.layers) == 3 and model.groups.length == 2
  group = model.groups.scanned
  assert [layer.attn.window for layer in group.layers] == [3, None]  # [local, global]
  assert all(isinstance(layer.mlp, MoE) for layer in group.layers)
  assert [layer.attn.window for layer in model.layers] == [3, None, 3]  # layers 0, 1 and 6
  assert group.layers[0].attn.q.shape == (2, 16, 16)
  assert pt.names_of(group.layers[0].attn.q) == ("layers", "embed", "heads")
  assert pt.names_of(group.layers[1].mlp.gate) == ("layers", "expert", "embed", "mlp")
  assert group.layers[0].mlp.expert_bias.shape == (2, 4)
  np.testing.assert_allclose(group.layers[0].attn_out.scale[...], 1 / np.sqrt(7))


def test_scanned_afmoe_equals_unscanned_forward_and_gradients():
  unscanned, scanned = _afmoe_pair()
  tokens = _tokens()
  (loss_u, (logits_u, counts_u)), grads_u = _afmoe_grads(unscanned, tokens)
  (loss_s, (logits_s, counts_s)), grads_s = _afmoe_grads(scanned, tokens)
  assert counts_s.shape == (TINY.num_moe_layers, TINY.num_experts)
  np.testing.assert_array_equal(counts_s, counts_u)  # same routing, in layer order
  np.testing.assert_allclose(logits_s, logits_u, atol=2e-6)
  np.testing.assert_allclose(loss_s, loss_u, rtol=1e-6)
  expected = stack_layers(_pure(grads_u), SCANNED)
  chex.assert_trees_all_close(_pure(grads_s), expected, **GRAD_TOL)
  assert np.abs(expected["groups"]["scanned"]["layers"][1]["mlp"]["down"]).max() > 1e-6


def test_moe_layers_views_write_the_stacked_rows_trinity_balances():
  unscanned, scanned = _afmoe_pair()
  tokens = _tokens(1)
  views = scanned.moe_layers()
  assert len(views) == TINY.num_moe_layers == len(unscanned.moe_layers())
  # Layer order: layer 1 (unscanned), 2 and 3 (group 0), 4 and 5 (group 1), 6 (tail).
  views[3].expert_bias[...] = jnp.arange(4.0)  # layer 4: group 1, position 0
  np.testing.assert_array_equal(scanned.groups.scanned.layers[0].mlp.expert_bias[...],
                                [[0, 0, 0, 0], [0, 1, 2, 3]])
  views[3].expert_bias[...] = jnp.zeros(4)
  # Two SMEBU steps of trinity's `balance` on each model: the same biases, layer by layer.
  config = TrinityConfig(balancing="smebu", balance_lr=0.1, balance_momentum=0.5,
                         balance_kappa=2.0)
  rule = {k: jnp.asarray(v) for k, v in run_constants(config).items()}
  for _ in range(2):
    metrics = [balance(model, {"counts": _afmoe_grads(model, tokens)[0][1][1], **rule}, config)
               for model in (unscanned, scanned)]
    chex.assert_trees_all_close(metrics[0], metrics[1], rtol=1e-6)
  for name in ("expert_bias", "bias_momentum"):
    rows = [np.stack([np.asarray(getattr(m, name)[...]) for m in model.moe_layers()])
            for model in (unscanned, scanned)]
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-6, err_msg=name)
    assert np.abs(rows[0]).max() > 1e-3, name  # SMEBU moved the bias and its momentum


@pytest.mark.parametrize("remat", [pytest.param("full", marks=pytest.mark.slow), "dots"])
def test_remat_gives_the_same_loss_and_gradients(remat):
  _, plain = _afmoe_pair("none")
  _, checkpointed = _afmoe_pair(remat)
  tokens = _tokens(2)
  (loss, _), grads = _afmoe_grads(plain, tokens)
  (loss_r, _), grads_r = _afmoe_grads(checkpointed, tokens)
  np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
  chex.assert_trees_all_close(_pure(grads_r), _pure(grads), **GRAD_TOL)
  # The policy is wired in: the differentiated program holds remat regions with that policy
  # (and the plain one none).
  jaxpr = lambda model: str(jax.make_jaxpr(
      lambda m: nnx.grad(lambda m: _afmoe_loss(m, tokens)[0])(m))(model))
  policy = {"full": "policy=None", "dots": "policy=DotsSaveable(only_if_no_batch_dims=True)"}
  assert policy[remat] in jaxpr(checkpointed) and "remat" not in jaxpr(plain)


def test_scanned_remat_model_merged_inside_jax_value_and_grad():
  """The trainer's pattern: params merged inside `jax.value_and_grad`, the router state from
  the outer trace (nnx.scan and nnx.remat refuse such variables)."""
  _, model = _afmoe_pair("dots")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tokens = _tokens(5)

  @jax.jit
  def loss_and_grads(params, rest):
    return jax.value_and_grad(
        lambda p: _afmoe_loss(nnx.merge(graphdef, p, rest), tokens)[0])(params)

  loss, grads = loss_and_grads(params, rest)
  (expected, _), expected_grads = _afmoe_grads(model, tokens)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  chex.assert_trees_all_close(_pure(grads), _pure(expected_grads), **GRAD_TOL)


def _tiny_lm(mixer, scan_layers, remat="none", seed=0):
  return TinyLM(V, 16, 3, mixer=mixer, mlp_hidden=24, scan_layers=scan_layers, remat=remat,
                rngs=nnx.Rngs(seed))


def _two_mamba_lm(scan_layers, remat="none", seed=0):
  mixer = MixerConfig(kind="2mamba", num_heads=2, head_dim=8, conv_size=2, decay_bias=True)
  return mixer_lm(V, 16, 3, mixer, 2, scan_layers=scan_layers, remat=remat, rngs=nnx.Rngs(seed))


def _stack_tiny(pure: dict, num_layers: int) -> dict:
  layers = scan.stack([pure["layers"][i] for i in range(num_layers)])
  return {**pure, "layers": {scan.STACKED: layers}}


def _lm_loss(model, tokens):
  logits = model(tokens[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean(), logits


_lm_grads = nnx.jit(nnx.value_and_grad(_lm_loss, has_aux=True))

BUILDERS = {
    "attention": lambda scan_layers, remat="none", seed=0: _tiny_lm(
        lambda r: CausalSelfAttention(16, 2, rngs=r), scan_layers, remat, seed),
    "2mamba_lm": _two_mamba_lm,
}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_scanned_tiny_lm_equals_unscanned(kind):
  build = BUILDERS[kind]
  unscanned = build(False)
  scanned = _load(build(True, seed=1), _stack_tiny(_pure(nnx.state(unscanned)), 3))
  assert scanned.layers.scanned.up.kernel.shape == (3, 16, unscanned.layers[0].up.kernel.shape[1])
  assert pt.names_of(scanned.layers.scanned.up.kernel) == ("layers", "embed", "mlp")
  tokens = _tokens(3)
  (loss_u, logits_u), grads_u = _lm_grads(unscanned, tokens)
  (loss_s, logits_s), grads_s = _lm_grads(scanned, tokens)
  np.testing.assert_allclose(logits_s, logits_u, atol=2e-6)
  np.testing.assert_allclose(loss_s, loss_u, rtol=1e-6)
  chex.assert_trees_all_close(_pure(grads_s), _stack_tiny(_pure(grads_u), 3), **GRAD_TOL)


@pytest.mark.parametrize("scan_layers, remat", [(True, "dots"), (False, "full")])
def test_tiny_lm_remat_keeps_loss_and_gradients(scan_layers, remat):
  build = BUILDERS["2mamba_lm"]
  plain = build(scan_layers)
  checkpointed = _load(build(scan_layers, remat, seed=1), _pure(nnx.state(plain)))
  tokens = _tokens(4)
  ((loss, _), grads), ((loss_r, _), grads_r) = (_lm_grads(plain, tokens),
                                                _lm_grads(checkpointed, tokens))
  np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
  chex.assert_trees_all_close(_pure(grads_r), _pure(grads), **GRAD_TOL)


def test_invalid_settings_are_refused():
  with pytest.raises(ValueError, match="remat"):
    AfmoeConfig(remat="some")
  with pytest.raises(ValueError, match="remat"):
    _tiny_lm(lambda r: CausalSelfAttention(16, 2, rngs=r), True, remat="all")
  with pytest.raises(ValueError, match="length"):
    scan.Scanned(lambda r: nnx.Linear(2, 2, rngs=r), 0, rngs=nnx.Rngs(0))
  with pytest.raises(IndexError):
    scan.layer_view(AfmoeLM(SCANNED, rngs=nnx.Rngs(0)).groups, 2)
