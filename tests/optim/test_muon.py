"""Trinity's Muon/AdamW split (arXiv 2602.17004): labels, orthogonality, per-expert batching, NNX use.

Singular values: after ONE step from a fresh state the Muon momentum is proportional to
the gradient (`μ = (1 − β) G`, bias-corrected Nesterov mix of μ and G), so the transform's
update of a `(in, out)` leaf with learning rate 1 is `−sqrt(max(1, out / in)) · NS(G / ‖G‖_F)`.
Dividing out that width factor gives the orthogonalized matrix our calibration measured (5
Newton–Schulz steps on a 64×256 Gaussian matrix: [0.68, 1.13] standard, [0.98, 1.03] Dion); we
measure it through the transform itself, so the test also covers the dimension numbers and the
width rule.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers.nn.moe import MoE
from jaxpapers.optim import muon, muon_labels

V, D, E, F = 32, 16, 4, 24


def _normal(seed, *shape, scale=1.0):  # numpy draws: no per-shape jax.random compiles
  return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _toy_tree():
  return {"embed": _normal(0, V, D),
          "layers": {"q": _normal(1, D, D), "experts": _normal(2, E, D, F)},
          "head": _normal(3, D, V),
          "norm": jnp.ones((D,)),
          "router": _normal(4, D, E)}


def _one_step(tx, grads, params=None):
  params = jax.tree.map(jnp.zeros_like, grads) if params is None else params
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def test_label_map_follows_trinity():
  labels = muon_labels(_toy_tree())
  assert labels == {"embed": "adam", "layers": {"q": "muon", "experts": "muon"}, "head": "adam",
                    "norm": "adam", "router": "adam"}
  # Overridable: without "router" among the Adam names the router is a Muon matrix.
  names = ("embed", "head", "norm", "bias", "scale")
  assert muon_labels(_toy_tree(), adam_names=names)["router"] == "muon"
  # Rank rule: vectors, scalars and rank-4 leaves go to Adam whatever their name.
  odd = {"w": jnp.zeros(3), "c": jnp.zeros(()), "conv": jnp.zeros((3, 3, 4, 4))}
  assert muon_labels(odd) == {"w": "adam", "c": "adam", "conv": "adam"}


def test_muon_leaves_get_muon_state_and_adam_leaves_adam_state():
  tree = _toy_tree()
  state = muon(1e-2).init(tree)
  muon_state = state.inner_states["muon"].inner_state[0]
  adam_state = state.inner_states["adam"].inner_state[0]
  masked = lambda x: isinstance(x, optax.MaskedNode)
  shape = lambda t: jax.tree.map(lambda x: x if masked(x) else jnp.shape(x), t, is_leaf=masked)
  assert shape(muon_state.mu)["layers"] == {"q": (D, D), "experts": (E, D, F)}
  assert isinstance(muon_state.mu["embed"], optax.MaskedNode)
  assert shape(adam_state.mu)["embed"] == (V, D) and shape(adam_state.mu)["router"] == (D, E)
  assert isinstance(adam_state.mu["layers"]["q"], optax.MaskedNode)


@pytest.mark.parametrize("coeffs, low, high", [("standard", 0.6, 1.2), ("dion", 0.95, 1.05)])
@pytest.mark.parametrize("shape", [(64, 256), (256, 64)])
def test_orthogonalized_update_singular_values(coeffs, low, high, shape):
  g = _normal(5, *shape)
  sv_in = np.linalg.svd(np.asarray(g), compute_uv=False)
  assert sv_in.max() / sv_in.min() > 2.5  # the raw gradient is far from orthogonal
  update = _one_step(muon(1.0, ns_coeffs=coeffs), {"w": g})["w"]
  width = np.sqrt(max(1.0, shape[1] / shape[0]))  # fan_out / fan_in of an (in, out) kernel
  sv = np.linalg.svd(np.asarray(-update) / width, compute_uv=False)
  assert low <= sv.min() and sv.max() <= high, (sv.min(), sv.max())


def test_experts_are_orthogonalized_one_by_one():
  g = _normal(6, E, D, F) * jnp.arange(1.0, E + 1)[:, None, None]
  ours = _one_step(muon(0.1), {"layers": {"experts": g}})["layers"]["experts"]
  # Reference: optax.contrib.muon on E separate (in, out) matrices (its default 2-D rule).
  separate = _one_step(optax.contrib.muon(0.1, ns_coeffs="dion"),
                       {f"e{i}": g[i] for i in range(E)})
  np.testing.assert_allclose(ours, np.stack([separate[f"e{i}"] for i in range(E)]), atol=1e-6)
  # Not the same as orthogonalizing the experts flattened into one [E*in, out] matrix.
  flat = _one_step(optax.contrib.muon(0.1, ns_coeffs="dion"), {"w": g.reshape(E * D, F)})["w"]
  assert np.abs(np.asarray(ours) - np.asarray(flat).reshape(E, D, F)).max() > 1e-2


MOE_D, MOE_F = 8, 12  # F / d = 1.5: the width factor sqrt(F / d) of gate and up is not 1


@jax.jit
def _moe_updates(params, grads):
  """Our Muon on the MoE layer's tree; optax.contrib.muon on each expert's 2-D matrices alone,
  and on the fused `gate_up [d, 2F]` of each expert (learning rate 1, one jitted program)."""
  contrib = optax.contrib.muon(1.0, ns_coeffs="dion")  # every 2-D leaf on Muon
  ours = _one_step(muon(1.0), grads, params)
  separate = {f"{name}{e}": grads[name][e] for name in ("gate", "up", "down") for e in range(E)}
  separate |= {f"shared_{name}": grads["shared"][name]["kernel"] for name in ("gate", "up", "down")}
  fused = {f"gate_up{e}": jnp.concatenate([grads["gate"][e], grads["up"][e]], -1)
           for e in range(E)}
  return ours, _one_step(contrib, separate), _one_step(contrib, fused)


def test_moe_gate_and_up_are_orthogonalized_per_expert_with_their_own_scaling():
  """Trinity's routed experts: `gate` and `up` `[E, d, F]` (jaxpapers.nn.moe stores them apart,
  not as one fused `gate_up [E, d, 2F]`) get one Newton-Schulz per expert and matrix, each with
  its own width factor `sqrt(max(1, F / d))`; `down [E, F, d]` likewise (factor 1)."""
  moe = MoE(MOE_D, E, 1, MOE_F, num_shared=1, rngs=nnx.Rngs(0))
  state = nnx.state(moe, nnx.Param)
  kernels = {"gate": {"kernel": "muon"}, "up": {"kernel": "muon"}, "down": {"kernel": "muon"}}
  assert nnx.to_pure_dict(muon_labels(state)) == {
      "router": "adam", "gate": "muon", "up": "muon", "down": "muon", "shared": kernels}
  params = nnx.to_pure_dict(state)
  leaves, treedef = jax.tree.flatten(params)
  grads = jax.tree.unflatten(treedef, [_normal(20 + i, *x.shape) for i, x in enumerate(leaves)])
  ours, separate, fused = _moe_updates(params, grads)
  for name in ("gate", "up", "down"):
    expected = np.stack([separate[f"{name}{e}"] for e in range(E)])
    np.testing.assert_allclose(ours[name], expected, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(ours["shared"][name]["kernel"], separate[f"shared_{name}"],
                               atol=1e-6, err_msg=f"shared {name}")
  # Each matrix is orthogonal up to its own factor: sqrt(F / d) for gate and up, 1 for down.
  for name, width in [("gate", np.sqrt(MOE_F / MOE_D)), ("up", np.sqrt(MOE_F / MOE_D)),
                      ("down", 1.0)]:
    sv = np.linalg.svd(-np.asarray(ours[name]) / width, compute_uv=False)
    assert 0.95 <= sv.min() and sv.max() <= 1.05, (name, sv.min(), sv.max())
  # A fused gate_up would be orthogonalized as one [d, 2F] matrix with factor sqrt(2F / d).
  split = np.stack([fused[f"gate_up{e}"] for e in range(E)])
  assert np.abs(np.asarray(ours["gate"]) - split[..., :MOE_F]).max() > 0.1
  assert np.abs(np.asarray(ours["up"]) - split[..., MOE_F:]).max() > 0.1


class TinyMoE(nnx.Module):
  """Embedding, one attention-like matrix, a router, [E, in, out] experts, a norm, an LM head."""

  def __init__(self, *, rngs: nnx.Rngs):
    zeros = nnx.initializers.zeros_init()  # values are set below from numpy (fast on CPU)
    self.embed = nnx.Embed(V, D, embedding_init=zeros, rngs=rngs)
    self.q = nnx.Linear(D, D, use_bias=False, kernel_init=zeros, rngs=rngs)
    self.router = nnx.Linear(D, E, use_bias=False, kernel_init=zeros, rngs=rngs)
    self.norm = nnx.RMSNorm(D, rngs=rngs)
    self.head = nnx.Linear(D, V, use_bias=False, kernel_init=zeros, rngs=rngs)
    self.embed.embedding[...] = _normal(10, V, D)
    self.q.kernel[...] = _normal(11, D, D, scale=0.25)
    self.router.kernel[...] = _normal(12, D, E, scale=0.25)
    self.head.kernel[...] = _normal(13, D, V, scale=0.25)
    self.experts_up = nnx.Param(_normal(14, E, D, F, scale=0.2))
    self.experts_down = nnx.Param(_normal(15, E, F, D, scale=0.2))

  def __call__(self, tokens):
    h = self.embed(tokens)
    h = h + jnp.tanh(self.q(h))
    gates = jax.nn.softmax(self.router(h), axis=-1)
    up = jax.nn.silu(jnp.einsum("btd,edf->btef", h, self.experts_up[...]))
    out = jnp.einsum("btef,efd->bted", up, self.experts_down[...])
    h = h + jnp.einsum("bte,bted->btd", gates, out)
    return self.head(self.norm(h))


def _loss(model, tokens):
  logits = model(tokens[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


@nnx.jit
def _nnx_step(model, optimizer, tokens):
  grads = nnx.grad(_loss)(model, tokens)
  optimizer.update(model, grads)
  return grads


def _leaf(tree, path):
  return functools.reduce(lambda t, k: t[k], path, tree)


@jax.jit
def _references(before, grads):
  """The new params each rule alone would give (one jitted program, to keep the test fast)."""
  lr, adam_lr = LR, ADAM_LR
  step = lambda tx, p, g: optax.apply_updates(p, _one_step(tx, g, p))
  adam = optax.nadamw(adam_lr, eps=1e-8, weight_decay=0.0)
  contrib = optax.contrib.muon(lr, ns_coeffs="dion")  # default rule: every 2-D leaf on Muon
  expected = {path: step(adam, _leaf(before, path), _leaf(grads, path)) for path in ADAM_PATHS}
  expected[("q", "kernel")] = step(contrib, before["q"]["kernel"], grads["q"]["kernel"])
  for name in ("experts_up", "experts_down"):  # [E, in, out]: one 2-D Muon per expert
    expected[(name,)] = jnp.stack(step(contrib, list(before[name]), list(grads[name])))
  plain = step(muon(lr, adam_learning_rate=adam_lr), before, grads)
  default = step(optax.contrib.muon(lr, ns_coeffs="dion", adam_learning_rate=adam_lr), before,
                 grads)
  return expected, plain, default


LR, ADAM_LR = 0.05, 0.01
ADAM_PATHS = [("embed", "embedding"), ("router", "kernel"), ("head", "kernel"), ("norm", "scale")]


def test_nnx_optimizer_step_applies_each_rule_to_its_leaves():
  model = TinyMoE(rngs=nnx.Rngs(0))
  before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  optimizer = nnx.Optimizer(model, muon(LR, adam_learning_rate=ADAM_LR), wrt=nnx.Param)
  tokens = jnp.asarray(np.random.default_rng(3).integers(0, V, (2, 9)))
  grads = nnx.to_pure_dict(_nnx_step(model, optimizer, tokens))
  after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  expected, plain, default = _references(before, grads)
  # Adam leaves: a standalone NAdamW step on that leaf alone (optax ties Adam's Nesterov flag to
  # Muon's); Muon leaves: optax.contrib.muon on the (in, out) matrix alone, or on each expert.
  assert set(expected) == {*ADAM_PATHS, ("q", "kernel"), ("experts_up",), ("experts_down",)}
  for path, value in expected.items():
    np.testing.assert_allclose(_leaf(after, path), value, rtol=1e-5, atol=1e-6, err_msg=path)
    assert np.abs(_leaf(after, path) - _leaf(before, path)).max() > 1e-4  # every leaf moved
  # The same transform on a plain dict of the same arrays gives the same new parameters.
  chex.assert_trees_all_close(after, plain, rtol=1e-5, atol=1e-6)
  # optax.contrib.muon's default split would have put the 2-D embedding on Muon.
  assert np.abs(after["embed"]["embedding"] - default["embed"]["embedding"]).max() > 1e-3


def test_adam_nesterov_false_gives_plain_adamw_and_keeps_muon():
  tree = _toy_tree()
  grads = jax.tree.map(lambda x: jnp.cos(3.0 * x), tree)

  @jax.jit
  def run(tree, grads):
    plain = _one_step(muon(LR, adam_learning_rate=ADAM_LR, adam_nesterov=False), grads, tree)
    nesterov = _one_step(muon(LR, adam_learning_rate=ADAM_LR), grads, tree)
    adamw = _one_step(optax.adamw(ADAM_LR, eps=1e-8, weight_decay=0.0), grads["embed"],
                      tree["embed"])
    return plain, nesterov, adamw

  plain, nesterov, adamw = run(tree, grads)
  np.testing.assert_allclose(plain["embed"], adamw, rtol=1e-6, atol=1e-8)
  assert np.abs(plain["embed"] - nesterov["embed"]).max() > 1e-4  # NAdamW differs from AdamW
  for path in [("layers", "q"), ("layers", "experts")]:
    np.testing.assert_allclose(_leaf(plain, path), _leaf(nesterov, path), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("adam_nesterov", [None, False], ids=["optax_split", "partition"])
def test_updates_unlike_params_are_refused_at_trace_time(adam_nesterov):
  tree = _toy_tree()
  tx = muon(LR, adam_nesterov=adam_nesterov)
  state = tx.init(tree)
  short = {**tree, "head": tree["head"][:, :4]}
  with pytest.raises(ValueError, match="muon: updates must have the tree structure and leaf shapes of the params"):
    jax.jit(tx.update)(short, state, tree)
  missing = {k: v for k, v in tree.items() if k != "norm"}
  with pytest.raises(ValueError, match="muon: updates must have the tree structure"):
    tx.update(missing, state, tree)


class _Small(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.q = nnx.Linear(D, 2 * D, rngs=rngs)  # kernel: Muon; bias: Adam (1-D)
    self.norm = nnx.RMSNorm(2 * D, rngs=rngs)

  def __call__(self, x):
    return jnp.sum(jnp.tanh(self.norm(self.q(x))) ** 2)


@pytest.mark.parametrize("adam_nesterov", [None, False], ids=["optax_split", "partition"])
def test_labels_pytree_of_a_pure_dict_works_with_nnx_optimizer(adam_nesterov):
  """A labels dict (built from `nnx.to_pure_dict`) is matched to the `nnx.State` that
  `nnx.Optimizer` passes by key path, and gives the default callable's step."""
  x = _normal(30, 3, D)
  models = [_Small(nnx.Rngs(0)) for _ in range(2)]
  labels = muon_labels(nnx.to_pure_dict(nnx.state(models[0], nnx.Param)))
  assert labels == {"q": {"kernel": "muon", "bias": "adam"}, "norm": {"scale": "adam"}}
  optimizers = [nnx.Optimizer(m, muon(LR, adam_nesterov=adam_nesterov, labels=lab), wrt=nnx.Param)
                for m, lab in zip(models, (labels, None))]

  @nnx.jit
  def step(model, optimizer):
    optimizer.update(model, nnx.grad(lambda m: m(x))(model))

  for model, optimizer in zip(models, optimizers):
    step(model, optimizer)
  with_dict, default = (nnx.to_pure_dict(nnx.state(m, nnx.Param)) for m in models)
  chex.assert_trees_all_equal(with_dict, default)
  assert np.abs(with_dict["q"]["kernel"] - _Small(nnx.Rngs(0)).q.kernel[...]).max() > 1e-3
