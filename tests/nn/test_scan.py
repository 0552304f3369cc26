"""Scanned layers (jaxpapers.nn.scan): a scanned model computes what its unscanned twin computes.

Each scanned model gets the parameters of an unscanned one (its layers stacked with
`scan.stack` / `afmoe.stack_layers`); forward outputs, expert loads and gradients must then agree,
for the AFMoE LM (dense prefix, two scanned groups of [local, global] MoE layers, a tail), the
shared tiny LM with attention and the 2Mamba LM. Remat variants give the same loss and
gradients. Router-state writes through `moe_layers()` views land in the stacked rows that
trinity's bias balancing expects.

Speed: each model is built once (cached builders, `nnx.clone`d where a test writes to it) and
each loss-and-gradient program is compiled and run once per model on the shared `TOKENS`.
"""

import dataclasses
import functools

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


@functools.cache
def _afmoe_unscanned() -> AfmoeLM:
  return AfmoeLM(TINY, rngs=nnx.Rngs(0))


def _afmoe_abstract(config: AfmoeConfig = SCANNED) -> AfmoeLM:
  """`AfmoeLM(config)` built abstractly (`nnx.eval_shape`: shapes and names, no values)."""
  return nnx.eval_shape(lambda: AfmoeLM(config, rngs=nnx.Rngs(1)))


@functools.cache
def _afmoe_scanned(remat="none") -> AfmoeLM:
  """A scanned AFMoE holding the parameters of `_afmoe_unscanned()` (built once per remat).

  Every variable is loaded, so it is built abstractly (no eager initialization to compile).
  """
  config = dataclasses.replace(SCANNED, remat=remat)
  scanned = _load(_afmoe_abstract(config),
                  stack_layers(_pure(nnx.state(_afmoe_unscanned())), config))
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(nnx.state(scanned)))
  return scanned


def _afmoe_pair(remat="none"):
  """An unscanned AFMoE and a scanned one holding the same parameters (fresh clones)."""
  return nnx.clone(_afmoe_unscanned()), nnx.clone(_afmoe_scanned(remat))


def _afmoe_loss(model, tokens):
  logits, counts = model(tokens[:, :-1])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
  return loss, (logits, counts)


# The compiled programs of these tiny models are small: XLA's cheapest optimization level saves
# compile time (float results differ by ~1e-7, far inside the tolerances).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_COMPILE)
def _afmoe_grads_of(graphdef, state, tokens):
  return nnx.value_and_grad(_afmoe_loss, has_aux=True)(nnx.merge(graphdef, state), tokens)


def _afmoe_grads(model, tokens):
  """(loss, (logits, counts)), grads in one compiled program."""
  return _afmoe_grads_of(*nnx.split(model), tokens)


TOKENS = _tokens()


@functools.cache
def _afmoe_result(remat: str | None):
  """`_afmoe_grads` on `TOKENS`: the unscanned model (remat None) or the scanned one."""
  model = _afmoe_unscanned() if remat is None else _afmoe_scanned(remat)
  return _afmoe_grads(nnx.clone(model), TOKENS)


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
  model = _afmoe_abstract()  # the layout; the initial post-norm gain compiled on its own below
  assert len(model.layers) == 3 and model.groups.length == 2
  group = model.groups.scanned
  assert [layer.attn.window for layer in group.layers] == [3, None]  # [local, global]
  assert all(isinstance(layer.mlp, MoE) for layer in group.layers)
  assert [layer.attn.window for layer in model.layers] == [3, None, 3]  # layers 0, 1 and 6
  assert group.layers[0].attn.q.shape == (2, 16, 16)
  assert pt.names_of(group.layers[0].attn.q) == ("layers", "embed", "heads")
  assert pt.names_of(group.layers[1].mlp.gate) == ("layers", "expert", "embed", "mlp")
  assert group.layers[0].mlp.expert_bias.shape == (2, 4)
  # Initialization compiled with only this output (the rest of it is dead code to XLA).
  gain = jax.jit(lambda: AfmoeLM(SCANNED, rngs=nnx.Rngs(0)).groups.scanned.layers[0]
                 .attn_out.scale[...])()
  assert gain.shape == (2, 16)
  np.testing.assert_allclose(gain, 1 / np.sqrt(7))


def test_scanned_afmoe_equals_unscanned_forward_and_gradients():
  (loss_u, (logits_u, counts_u)), grads_u = _afmoe_result(None)
  (loss_s, (logits_s, counts_s)), grads_s = _afmoe_result("none")
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
  plain, checkpointed = _afmoe_scanned("none"), _afmoe_scanned(remat)
  tokens = TOKENS
  (loss, _), grads = _afmoe_result("none")
  (loss_r, _), grads_r = _afmoe_result(remat)
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
  model = _afmoe_scanned("dots")
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tokens = TOKENS

  @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
  def loss_and_grads(params, rest):
    return jax.value_and_grad(
        lambda p: _afmoe_loss(nnx.merge(graphdef, p, rest), tokens)[0])(params)

  loss, grads = loss_and_grads(params, rest)
  (expected, _), expected_grads = _afmoe_result("dots")
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


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_COMPILE)
def _lm_grads_of(graphdef, state, tokens):
  return nnx.value_and_grad(_lm_loss, has_aux=True)(nnx.merge(graphdef, state), tokens)


def _lm_grads(model, tokens):
  return _lm_grads_of(*nnx.split(model), tokens)

BUILDERS = {
    "attention": lambda scan_layers, remat="none", seed=0: _tiny_lm(
        lambda r: CausalSelfAttention(16, 2, rngs=r), scan_layers, remat, seed),
    "2mamba_lm": _two_mamba_lm,
}
LM_TOKENS = _tokens(3)


@functools.cache
def _lm(kind: str, scan_layers: bool, remat="none"):
  """The `kind` LM holding the parameters of its unscanned no-remat build (seed 0).

  The others are built abstractly (`nnx.eval_shape`), then every variable is loaded.
  """
  if not scan_layers and remat == "none":
    return BUILDERS[kind](False)
  pure = _pure(nnx.state(_lm(kind, False)))
  model = nnx.eval_shape(lambda: BUILDERS[kind](scan_layers, remat, seed=1))
  model = _load(model, _stack_tiny(pure, 3) if scan_layers else pure)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(nnx.state(model)))
  return model


@functools.cache
def _lm_result(kind: str, scan_layers: bool, remat="none"):
  """`_lm_grads` of `_lm(...)` on `LM_TOKENS`, compiled and run once."""
  return _lm_grads(nnx.clone(_lm(kind, scan_layers, remat)), LM_TOKENS)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_scanned_tiny_lm_equals_unscanned(kind):
  unscanned, scanned = _lm(kind, False), _lm(kind, True)
  assert scanned.layers.scanned.up.kernel.shape == (3, 16, unscanned.layers[0].up.kernel.shape[1])
  assert pt.names_of(scanned.layers.scanned.up.kernel) == ("layers", "embed", "mlp")
  (loss_u, logits_u), grads_u = _lm_result(kind, False)
  (loss_s, logits_s), grads_s = _lm_result(kind, True)
  np.testing.assert_allclose(logits_s, logits_u, atol=2e-6)
  np.testing.assert_allclose(loss_s, loss_u, rtol=1e-6)
  chex.assert_trees_all_close(_pure(grads_s), _stack_tiny(_pure(grads_u), 3), **GRAD_TOL)


@pytest.mark.parametrize("scan_layers, remat", [(True, "dots"), (False, "full")])
def test_tiny_lm_remat_keeps_loss_and_gradients(scan_layers, remat):
  # Both models hold the unscanned 2Mamba LM's parameters (stacked when scanned).
  ((loss, _), grads), ((loss_r, _), grads_r) = (_lm_result("2mamba_lm", scan_layers),
                                                _lm_result("2mamba_lm", scan_layers, remat))
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
    scan.layer_view(_afmoe_abstract().groups, 2)
