"""Muon and K-FAC through stacked (scanned) layers: each layer's and expert's matrix on its own.

A scanned model keeps each parameter of its L layers as one `[L, ...]` leaf under a `scanned`
attribute (`jaxpapers.nn.scan.Scanned`). Muon must orthogonalize every layer's (and expert's)
matrix separately, send stacked vectors (`[L, d]` norm scales, `[L, H]` decay biases) to Adam and
never a stacked matrix to Adam by its rank. References: optax.contrib.muon on the separate
matrices, the labels of the unscanned model, and one Muon step on the unscanned AFMoE LM.
K-FAC factors are per layer: stacked leaves and paths into a stack are refused.

Speed: each model is built once (cached builders; the Muon test trains clones) and the optax
reference step is one module-level compiled function.
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

from jaxpapers.experiments.two_mamba.model import mixer_lm
from jaxpapers.nn import partitioning as pt
from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM, stack_layers
from jaxpapers.nn.mixers import MixerConfig
from jaxpapers.optim import KroneckerFactors, collect_kfac_factors, kfac_projector, muon, muon_labels

L, D, H, E, F = 3, 8, 12, 2, 6
LR, ADAM_LR = 0.05, 0.01


def _normal(seed, *shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _step(tx, grads):
  params = jax.tree.map(jnp.zeros_like, grads)
  return tx.update(grads, tx.init(params), params)[0]


_muon_reference = jax.jit(lambda g: _step(optax.contrib.muon(LR, ns_coeffs="dion"), g),
                          compiler_options={"xla_backend_optimization_level": 0})


@pytest.mark.parametrize("adam_nesterov", [None, False], ids=["optax_split", "partition"])
def test_stacked_matrices_are_orthogonalized_per_layer_and_expert(adam_nesterov):
  grads = {"scanned": {"q": _normal(0, L, D, H), "experts": _normal(1, L, E, D, F),
                       "decay": _normal(2, L, H), "norm": {"scale": _normal(3, L, D)}}}
  ours = jax.jit(lambda g: _step(muon(LR, adam_learning_rate=ADAM_LR,
                                      adam_nesterov=adam_nesterov), g),
                 compiler_options={"xla_backend_optimization_level": 0})(grads)["scanned"]
  # Reference: optax.contrib.muon (every 2-D leaf on Muon, the rest Adam) on separate leaves.
  separate = {f"q{l}": grads["scanned"]["q"][l] for l in range(L)}
  separate |= {f"e{l}{e}": grads["scanned"]["experts"][l, e] for l in range(L) for e in range(E)}
  ref = _muon_reference(separate)
  np.testing.assert_allclose(ours["q"], np.stack([ref[f"q{l}"] for l in range(L)]), atol=1e-6)
  experts = np.stack([np.stack([ref[f"e{l}{e}"] for e in range(E)]) for l in range(L)])
  np.testing.assert_allclose(ours["experts"], experts, atol=1e-6)
  # The stacked vectors went to Adam (elementwise: stacked or not, the same update).
  adam = optax.nadamw if adam_nesterov is None else optax.adamw
  for name, value in [("decay", ours["decay"]), ("scale", ours["norm"]["scale"])]:
    leaf = grads["scanned"]["norm"]["scale"] if name == "scale" else grads["scanned"][name]
    adam_ref = _step(adam(ADAM_LR, eps=1e-8, weight_decay=0.0), leaf)
    np.testing.assert_allclose(value, adam_ref, rtol=1e-6, atol=1e-8, err_msg=name)
  # Not the stacked tensor as one matrix: orthogonalizing [L*D, H] gives another update.
  flat = _step(optax.contrib.muon(LR, ns_coeffs="dion"), {"w": grads["scanned"]["q"].reshape(
      L * D, H)})["w"].reshape(L, D, H)
  assert np.abs(np.asarray(ours["q"]) - np.asarray(flat)).max() > 1e-3


TINY = AfmoeConfig(vocab_size=32, d_model=16, num_layers=7, num_dense_layers=1, num_heads=2,
                   num_kv_heads=1, head_dim=8, dense_width=16, num_experts=4, top_k=2,
                   expert_width=8, window=3, global_every=2)
SCANNED = dataclasses.replace(TINY, scan_layers=True)


# The Muon steps need only stacked groups: 4 MoE layers, all scanned as 2 [local, global] groups
# (TINY's dense prefix and tail are plain layers in both models and would only add compile time).
STEP_TINY = dataclasses.replace(TINY, num_layers=4, num_dense_layers=0)
STEP_SCANNED = dataclasses.replace(STEP_TINY, scan_layers=True)


def _abstract(config: AfmoeConfig) -> AfmoeLM:
  """`AfmoeLM(config)` built abstractly (`nnx.eval_shape`: shapes, names, no values)."""
  return nnx.eval_shape(lambda: AfmoeLM(config, rngs=nnx.Rngs(1)))


@functools.cache
def _two_mamba(scan_layers: bool) -> nnx.Module:
  """The tiny 2Mamba LM, built abstractly once (`nnx.eval_shape`: shapes and names, no values)."""
  mixer = MixerConfig(kind="2mamba", num_heads=2, head_dim=4, conv_size=2, decay_bias=True)
  return nnx.eval_shape(lambda: mixer_lm(32, 8, 2, mixer, 2, scan_layers=scan_layers,
                                         rngs=nnx.Rngs(0)))


def _labels_of(model):
  """Labels of the optimizer's view at init (Variables with names) and at update (arrays)."""
  params = nnx.state(model, nnx.Param)
  at_init = nnx.to_pure_dict(muon_labels(params))
  at_update = muon_labels(nnx.to_pure_dict(params))
  assert at_init == at_update
  return at_update


def test_scanned_afmoe_labels_match_the_unscanned_layers():
  # Labels depend on shapes and names only: abstract models.
  unscanned, scanned = _labels_of(_abstract(TINY)), _labels_of(_abstract(SCANNED))
  start, _ = SCANNED.scan_plan()
  for j in range(SCANNED.global_every):  # group position j holds layers start + 2g + j
    assert scanned["groups"]["scanned"]["layers"][j] == unscanned["layers"][start + j]
  assert scanned["layers"] == {0: unscanned["layers"][0], 1: unscanned["layers"][1],
                               2: unscanned["layers"][6]}
  group = scanned["groups"]["scanned"]["layers"][1]
  assert group["attn"]["q"] == group["mlp"]["gate"] == "muon"  # [G, d, h], [G, E, d, F]
  assert group["attn_in"]["scale"] == group["mlp"]["router"] == "adam"  # [G, d], [G, d, E]


def test_scanned_two_mamba_lm_sends_stacked_vectors_to_adam():
  unscanned, scanned = _labels_of(_two_mamba(False)), _labels_of(_two_mamba(True))
  assert scanned["layers"]["scanned"] == unscanned["layers"][0]
  mixer_labels = scanned["layers"]["scanned"]["mixer"]
  assert mixer_labels["b_decay"] == "adam"  # [L, H]: 2-D, but a stacked vector
  assert mixer_labels["w_decay"] == mixer_labels["qkv"] == "muon"  # [L, d, H], [L, d, 3hd]


def test_logical_layers_axes_must_match_the_path():
  class Unmarked(nnx.Module):  # stacked names, but not under a `scanned` attribute
    def __init__(self):
      self.w = pt.param(jnp.zeros((L, D, H)), (pt.LAYERS, pt.EMBED, pt.MLP))

  with pytest.raises(ValueError, match="stacked axes by its path"):
    muon(LR).init(nnx.state(Unmarked(), nnx.Param))


def _loss(model, tokens):
  logits, _ = model(tokens[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


# XLA's cheapest optimization level: these tiny programs compile faster (float results differ
# by ~1e-7, far inside the tolerances; both models compiled alike).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.partial(jax.jit, static_argnums=0, compiler_options=FAST_COMPILE)
def _train_step_of(graphdef, state, tokens):
  model, optimizer = nnx.merge(graphdef, state)
  optimizer.update(model, nnx.grad(_loss)(model, tokens))
  return nnx.state((model, optimizer))


def _train_step(model, optimizer, tokens):
  """One Muon step of `optimizer` on `model` (both updated in place)."""
  graphdef, state = nnx.split((model, optimizer))
  nnx.update((model, optimizer), _train_step_of(graphdef, state, tokens))


def test_muon_on_the_scanned_model_equals_muon_on_the_unscanned_one():
  assert STEP_SCANNED.scan_plan() == (0, 2)
  unscanned = AfmoeLM(STEP_TINY, rngs=nnx.Rngs(0))
  scanned = _abstract(STEP_SCANNED)  # every variable is replaced by the unscanned values
  state = nnx.state(scanned)
  nnx.replace_by_pure_dict(state, stack_layers(nnx.to_pure_dict(nnx.state(unscanned)),
                                               STEP_SCANNED))
  nnx.update(scanned, state)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(nnx.state(scanned)))
  before = nnx.to_pure_dict(nnx.state(scanned, nnx.Param))
  tx = lambda: muon(LR, adam_learning_rate=ADAM_LR, weight_decay=0.01)
  optimizers = [nnx.Optimizer(m, tx(), wrt=nnx.Param) for m in (unscanned, scanned)]
  for step in range(2):  # the second step uses the momentum
    tokens = jnp.asarray(np.random.default_rng(step).integers(0, 32, (2, 10)))
    for model, optimizer in zip((unscanned, scanned), optimizers):
      _train_step(model, optimizer, tokens)
  after = nnx.to_pure_dict(nnx.state(scanned, nnx.Param))
  expected = stack_layers(nnx.to_pure_dict(nnx.state(unscanned, nnx.Param)), STEP_SCANNED)
  assert expected.pop("layers") == {}  # every layer is in the groups
  # Newton-Schulz amplifies the float32 regrouping of the scanned gradients (~1e-7) on small
  # singular directions: 2e-6 seen after two steps; one stacked Muon would be off by ~1e-2.
  chex.assert_trees_all_close(after, expected, rtol=1e-4, atol=1e-5)
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), after, before)
  assert min(jax.tree.leaves(moved)) > 1e-3  # every leaf took a step


def test_kfac_refuses_stacked_layers():
  factors = {"w": KroneckerFactors(jnp.eye(D), jnp.eye(H))}
  with pytest.raises(ValueError, match="stacked layers"):
    kfac_projector(factors, 0.5, inner=optax.sgd(0.1)).init({"w": jnp.zeros((L, D, H))})
  model = _two_mamba(True)
  with pytest.raises(ValueError, match="scanned layers"):
    collect_kfac_factors(model, [("layers", "scanned", "up")], [], lambda m, b: m(b["inputs"]))
