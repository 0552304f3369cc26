"""Conformance: every transform of `jaxpapers.optim` behaves as optax's own transforms do.

In the spirit of optax's `optax/contrib/_common_test.py` and `optax/_src/alias_test.py`, each
exported transform (`muon`, both of its code paths; `smebu`; `sign_bias_balancing`;
`kfac_projector`, bare and wrapping Adam in "both" mode) is held to the expectations optax
holds its optimizers to, on tiny trees:

- jit: a jitted update accepts unexpected extra keyword arguments
  (`GradientTransformationExtraArgs`; they change nothing) and is traced once for two calls;
  `kfac_projector` forwards extra arguments to an `inner` that needs them.
- dtypes (float16, bfloat16, float32, float64): updates keep the params' dtype, and the update
  is type-stable (optax's `lax.cond` test: the new state and updates have the types of the old
  state and params). Types are fixed when a step is traced, so this case evaluates `init` and
  the step abstractly (`jax.eval_shape`) instead of compiling 20 programs; the values of the
  float32 steps are checked by every other case; bfloat16 steps are compiled and run under
  MultiSteps.
- `optax.inject_hyperparams`: equal updates and state; a hyperparameter changed in the state at
  run time takes effect (a new learning rate; for `kfac_projector` a new energy recomputes the
  masks) exactly as building the transform with the new value. `muon`'s labels: a labels pytree
  acts as the default callable (plain, injected and under `map_params`); a callable labels that
  is not declared static (inject_hyperparams takes it for a schedule) is refused with a
  ValueError naming `static_args`, instead of sending every leaf to Adam.
- `optax.MultiSteps`: zero updates until the k-th step (bfloat16, float32), then the update of
  the averaged gradient (float32).
- `optax.chain`, `optax.masked` and `optax.partition` (a leaf masked out passes through; the
  others get the transform's update of the sub-tree alone), empty trees.
- `optax.tree.map_params`: a no-op map returns the state, exactly the params-shaped buffers
  (momenta; not K-FAC bases or counters) are mapped, and the state's shardings built from the
  params' shardings (how users shard optimizer states) jit `init` and `update`.
- Sharding: on an Auto mesh (shardings from `map_params`) and on an Explicit mesh (FSDP-split
  matrices) a jitted step gives the unsharded numbers, keeps the state's type (no recompile;
  `lax.scan` over steps).
- Determinism: a second instance, traced and compiled again, gives bitwise-equal results.

`muon`'s second code path (`adam_nesterov=False`: an `optax.partition` around a Muon-only
`optax.contrib.muon`) runs the cases where the state's nesting matters (jit, inject, masked,
empty trees, map_params, both meshes); the dtype, MultiSteps, chain and determinism cases run
once per transform, to keep the file under a minute on two busy cores.

Cases of optax's suites that do not apply:

- Convergence on parabola / Rosenbrock: `smebu` and `sign_bias_balancing` consume load
  excesses, not gradients, and move biases toward balance, not a loss minimum; `kfac_projector`
  removes the curved directions by design, so it cannot reach an unconstrained optimum; Muon's
  convergence run (30,000 steps) is far beyond a unit test, and tests/optim/test_muon.py pins
  our Muon to `optax.contrib.muon` leaf by leaf instead.
- Complex dtypes: router biases, loads and K-FAC factors are real; Trinity's Muon split is
  for real weights.
- Learning-rate schedules as arguments: only `muon` takes an `optax.ScalarOrSchedule`
  (tested); the others take floats and are scheduled with `optax.inject_hyperparams` (tested).
- `mu_dtype` / accumulator-dtype tests: only `muon` has one (optax's own argument, passed
  through); `smebu` keeps its momentum in float32 (float64 for float64 biases) by design.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers import optim

AXES = ("data", "model")


def _psd(seed: int, n: int) -> np.ndarray:
  x = np.random.default_rng(seed).normal(size=(n, 2 * n))
  return (x @ x.T / (2 * n)).astype(np.float32)


_FACTORS = {"w": optim.KroneckerFactors(_psd(0, 8), _psd(1, 4)), "b": None}


@dataclasses.dataclass(frozen=True, eq=False)
class Spec:
  """One transform under test.

  Attributes:
    name: test id.
    factory: the transform's factory (what `inject_hyperparams` wraps).
    kwargs: its arguments.
    leaves: leaf name -> (shape, spec on the (data, model) mesh).
    static_args: arguments `inject_hyperparams` must not inject (optax's own list for Muon).
    hyper: (name, new value) of a hyperparameter changed at run time under inject_hyperparams.
    masked_out: the leaf masked out in the masked / partition case.
    param_buffers: how many params-shaped leaves the state has (momenta of unmasked leaves).
  """

  name: str
  factory: Callable[..., optax.GradientTransformation]
  kwargs: dict[str, Any]
  leaves: dict[str, tuple[tuple[int, ...], P]]
  static_args: tuple[str, ...] = ()
  hyper: tuple[str, float] = ("learning_rate", 0.05)
  masked_out: str = "b"
  param_buffers: int = 0

  def make(self, **overrides) -> optax.GradientTransformation:
    return self.factory(**{**self.kwargs, **overrides})

  def __repr__(self):
    return self.name


_MUON_LEAVES = {"w": ((8, 4), P("data", "model")), "experts": ((2, 8, 4), P(None, "data", "model")),
                "norm": ((4,), P("data"))}
_BIAS_LEAVES = {"w": ((2, 8), P(None, "data")), "b": ((8,), P("model"))}
_KFAC_LEAVES = {"w": ((8, 4), P("data", "model")), "b": ((4,), P("model"))}

SPECS = [
    Spec("muon", optim.muon, {"learning_rate": 0.02, "adam_learning_rate": 0.01},
         _MUON_LEAVES, static_args=("ns_steps",), masked_out="experts", param_buffers=4),
    Spec("muon_adam_nesterov_false", optim.muon,
         {"learning_rate": 0.02, "adam_nesterov": False, "weight_decay": 0.1},
         _MUON_LEAVES, static_args=("ns_steps",), masked_out="norm", param_buffers=4),
    Spec("smebu", optim.smebu, {"learning_rate": 0.01, "momentum": 0.5, "kappa": 2.0},
         _BIAS_LEAVES, param_buffers=2),
    Spec("sign_bias_balancing", optim.sign_bias_balancing, {"learning_rate": 0.01}, _BIAS_LEAVES),
    Spec("kfac_projector", optim.kfac_projector, {"factors": _FACTORS, "energy": 0.8},
         _KFAC_LEAVES, hyper=("energy", 0.5), masked_out="w"),
    Spec("kfac_projector_adam_both", optim.kfac_projector,
         {"factors": _FACTORS, "energy": 0.8, "project": "both", "inner": optax.adam(0.1)},
         _KFAC_LEAVES, hyper=("energy", 0.5), masked_out="w", param_buffers=4),
]


def _tree(spec: Spec, seed: int, dtype=jnp.float32) -> dict[str, jax.Array]:
  rng = np.random.default_rng(seed)
  return {k: jnp.asarray(rng.normal(size=shape), dtype) for k, (shape, _) in spec.leaves.items()}


def _params(spec: Spec, dtype=jnp.float32):
  return _tree(spec, 100, dtype)


def _grads(spec: Spec, count: int, dtype=jnp.float32):
  return [_tree(spec, 200 + i, dtype) for i in range(count)]


def _run(tx, params, grads_list, jit=True):
  """Applies `tx` over `grads_list`; returns (list of updates, final params, final state)."""
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init(params)
  updates_list = []
  for grads in grads_list:
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    updates_list.append(updates)
  return updates_list, params, state


@functools.cache
def _tx(spec: Spec) -> optax.GradientTransformation:
  """One instance per spec: jitting its `update` again reuses the compiled program."""
  return spec.make()


@functools.cache
def _reference(spec: Spec):
  """The unsharded float32 run of three jitted steps (shared by several cases)."""
  return _run(_tx(spec), _params(spec), _grads(spec, 3))


def _close(actual, desired, rtol=1e-5, atol=1e-6):
  chex.assert_trees_all_close(actual, desired, rtol=rtol, atol=atol)


def _types(tree):
  return jax.tree.map(jax.typeof, tree)


def _avals(tree):
  return jax.tree.map(lambda x: (x.shape, jnp.dtype(x.dtype)), tree)


def _is_masked(x):
  return isinstance(x, optax.MaskedNode)


parametrize = pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
# Muon's second code path differs from the first in its state's nesting (module docstring).
_ONE_PER_TRANSFORM = [s for s in SPECS if s.name != "muon_adam_nesterov_false"]
parametrize_once = pytest.mark.parametrize("spec", _ONE_PER_TRANSFORM,
                                           ids=[s.name for s in _ONE_PER_TRANSFORM])


@parametrize
def test_jit_extra_args_and_one_trace(spec):
  tx = spec.make()
  params, grads = _params(spec), _grads(spec, 2)
  traces = []

  @jax.jit
  def step(params, state, grads):
    traces.append(1)
    updates, state = tx.update(grads, state, params,
                               unexpected_extra_args_your_optimizer_doesnt_expect=1)
    return optax.apply_updates(params, updates), state, updates

  state = tx.init(params)
  p1, state, u1 = step(params, state, grads[0])
  _, _, u2 = step(p1, state, grads[1])
  assert len(traces) == 1, "update recompiles on the second call"
  _close([u1, u2], _reference(spec)[0][:2])  # the extra argument changes nothing


@parametrize_once
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_dtype_is_preserved_and_update_is_type_stable(spec, dtype):
  with jax.enable_x64(dtype == "float64"):
    dtype = jnp.dtype(dtype)
    tx = spec.make()
    params, (grads,) = _params(spec, dtype), _grads(spec, 1, dtype)
    state = jax.eval_shape(tx.init, params)

    def step(params, state, grads):
      # As optax's test_state_shape_dtype_shard_stability: lax.cond demands that the updates
      # have the params' types and the new state the old state's.
      cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      return jax.lax.cond(cond, lambda: tx.update(grads, state, params), lambda: (params, state))

    # Types are fixed when the step is traced: abstract evaluation checks them, no compile.
    updates, new_state = jax.eval_shape(step, params, state, grads)
    assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)
    assert _avals(new_state) == _avals(state)


@parametrize
def test_inject_hyperparams(spec):
  tx = _tx(spec)
  injected = optax.inject_hyperparams(spec.factory, static_args=spec.static_args)(**spec.kwargs)
  params, (grads,) = _params(spec), _grads(spec, 1)
  updates, new_state = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
  state = jax.jit(injected.init)(params)
  updates_injected, new_state_injected = jax.jit(injected.update)(grads, state, params)
  _close(updates_injected, updates)
  _close(new_state_injected.inner_state, new_state)

  # A value changed at run time acts as building the transform with it.
  name, value = spec.hyper
  old = state.hyperparams[name]
  changed = state._replace(hyperparams={**state.hyperparams, name: jnp.asarray(value, old.dtype)})
  updates_changed, _ = jax.jit(injected.update)(grads, changed, params)
  rebuilt = spec.make(**{name: value})
  expected, _ = jax.jit(rebuilt.update)(grads, rebuilt.init(params), params)
  _close(updates_changed, expected)
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(updates_changed),
                                                    jax.tree.leaves(updates))), "no effect"


@pytest.mark.parametrize("spec", [SPECS[0]], ids=[SPECS[0].name])
def test_learning_rate_schedule_equals_constant(spec):  # only muon takes a ScalarOrSchedule
  constant = spec.make(learning_rate=1e-3, adam_learning_rate=None)
  scheduled = spec.make(learning_rate=optax.constant_schedule(1e-3), adam_learning_rate=None)
  params, grads = _params(spec), _grads(spec, 2)
  _close(_run(scheduled, params, grads)[0], _run(constant, params, grads)[0])


@parametrize_once
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_multi_steps(spec, dtype):
  dtype = jnp.dtype(dtype)
  tx = optax.MultiSteps(spec.make(), every_k_schedule=4)
  params, grads = _params(spec, dtype), _grads(spec, 4, dtype)
  updates, _, _ = _run(tx, params, grads)
  for u in updates[:3]:
    chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, u))
  if dtype == jnp.float32:  # the k-th step applies the transform to the mean gradient
    mean = jax.tree.map(lambda *g: sum(g) / len(g), *grads)
    expected, _ = jax.jit(_tx(spec).update)(mean, _tx(spec).init(params), params)
    _close(updates[3], expected, rtol=1e-4, atol=1e-5)


@parametrize_once
def test_chain(spec):
  # Wrapped between two other transforms (a no-op clip and scale: the params' trajectory, on
  # which weight decay depends, stays the reference's), extra arguments passed through.
  tx = optax.chain(optax.clip(1e6), spec.make(), optax.scale(1.0))
  update = jax.jit(functools.partial(tx.update, unexpected_extra_arg=1))
  params, state, chained = _params(spec), tx.init(_params(spec)), []
  for grads in _grads(spec, 3):
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    chained.append(updates)
  _close(chained, _reference(spec)[0])


@parametrize
def test_masked_and_partition(spec):
  params, grads = _params(spec), _grads(spec, 2)
  keep = [k for k in params if k != spec.masked_out]
  mask = {k: k != spec.masked_out for k in params}
  alone_tx = spec.make(**({"factors": {k: _FACTORS[k] for k in keep}}
                          if spec.factory is optim.kfac_projector else {}))
  alone, _, _ = _run(alone_tx, {k: params[k] for k in keep}, [{k: g[k] for k in keep} for g in grads])
  masked, _, _ = _run(optax.masked(spec.make(), mask), params, grads)
  labels = {k: "tx" if m else "zero" for k, m in mask.items()}
  parts, _, _ = _run(optax.partition({"tx": spec.make(), "zero": optax.set_to_zero()}, labels),
                     params, grads)
  for step, g in enumerate(grads):
    _close({k: masked[step][k] for k in keep}, alone[step])
    _close({k: parts[step][k] for k in keep}, alone[step])
    chex.assert_trees_all_equal(masked[step][spec.masked_out], g[spec.masked_out])
    chex.assert_trees_all_equal(parts[step][spec.masked_out],
                                jnp.zeros_like(g[spec.masked_out]))


@parametrize
def test_empty_tree(spec):
  overrides = {"factors": {}} if spec.factory is optim.kfac_projector else {}
  tx = spec.make(**overrides)
  state = tx.init({})
  updates, new_state = jax.jit(tx.update)({}, state, {})
  assert updates == {}
  assert jax.tree.structure(new_state) == jax.tree.structure(state)


def _param_shardings(spec: Spec, mesh) -> dict[str, NamedSharding]:
  return {k: NamedSharding(mesh, s) for k, (_, s) in spec.leaves.items()}


def _state_shardings(tx, state, param_shardings, mesh):
  """Shardings of the state from the params' (optax.tree.map_params), the rest replicated."""
  return optax.tree.map_params(
      tx, lambda v, s: v if _is_masked(v) else s, state, param_shardings,
      transform_non_params=lambda _: NamedSharding(mesh, P()),
      is_leaf=lambda x: _is_masked(x) or isinstance(x, NamedSharding))


@parametrize
def test_map_params(spec):
  tx = spec.make()
  state = tx.init(_params(spec))
  chex.assert_trees_all_equal(optax.tree.map_params(tx, lambda v: v, state), state)
  # Exactly the params-shaped buffers (momenta, not K-FAC bases or counters) are mapped.
  marks = optax.tree.map_params(tx, lambda v: v if _is_masked(v) else "param", state,
                                transform_non_params=lambda _: "other", is_leaf=_is_masked)
  assert sum(x == "param" for x in jax.tree.leaves(marks)) == spec.param_buffers, marks


@parametrize
def test_sharding_auto_mesh(spec):
  mesh = jax.make_mesh((4, 2), AXES, axis_types=(AxisType.Auto,) * 2)
  tx = spec.make()
  params_shardings = _param_shardings(spec, mesh)
  params = jax.device_put(_params(spec), params_shardings)
  state_shardings = _state_shardings(tx, tx.init(params), params_shardings, mesh)
  state = jax.jit(tx.init, out_shardings=state_shardings)(params)
  step = jax.jit(tx.update, out_shardings=(params_shardings, state_shardings))
  updates = []
  for grads in jax.device_put(_grads(spec, 3), [params_shardings] * 3):
    u, state = step(grads, state, params)
    params = optax.apply_updates(params, u)
    updates.append(u)
  _close(updates, _reference(spec)[0])
  assert jax.tree.map(lambda x: x.sharding, state) == state_shardings


@parametrize
def test_sharding_explicit_mesh(spec):
  mesh = jax.make_mesh((4, 2), AXES, axis_types=(AxisType.Explicit,) * 2)
  tx = spec.make()
  with jax.set_mesh(mesh):
    params_shardings = _param_shardings(spec, mesh)
    params = jax.device_put(_params(spec), params_shardings)
    grads = jax.device_put(_grads(spec, 3), [params_shardings] * 3)
    state = jax.jit(tx.init)(params)
    traces = []

    @jax.jit
    def step(params, state, grads):
      traces.append(1)
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state, updates

    p, s, updates = params, state, []
    for g in grads:
      p, new_s, u = step(p, s, g)
      assert _types(new_s) == _types(s)  # the state's type (sharding included) is stable
      s = new_s
      updates.append(u)
    assert len(traces) == 1
    assert _types(updates[0]) == _types(params)

    def body(carry, g):
      p, s = carry
      p, s, _ = step(p, s, g)
      return (p, s), None

    stacked = jax.tree.map(lambda *x: jnp.stack(x), *grads)
    (p_scan, _), _ = jax.jit(lambda c, g: jax.lax.scan(body, c, g))((params, state), stacked)
  _close(updates, _reference(spec)[0])
  _close(p_scan, _reference(spec)[1])


@parametrize_once
def test_determinism(spec):
  # A second instance, traced and compiled again, gives the reference's bits.
  chex.assert_trees_all_equal(_run(spec.make(), _params(spec), _grads(spec, 3)), _reference(spec))


def test_kfac_projector_inner_receives_extra_args():
  """An `inner` that needs an extra argument of `update` gets it (here optax.polyak_sgd's value)."""
  spec = SPECS[-1]
  polyak = optax.polyak_sgd(max_learning_rate=1.0)
  tx = optim.kfac_projector(_FACTORS, energy=0.8, project="gradient", inner=polyak)
  params, (grads,) = _params(spec), _grads(spec, 1)
  value = jnp.asarray(3.0)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params, value=value)
  bare = optim.kfac_projector(_FACTORS, energy=0.8)
  projected, _ = bare.update(grads, bare.init(params), params)
  expected, _ = polyak.update(projected, polyak.init(params), params, value=value)
  _close(updates, expected)


@pytest.mark.parametrize("spec", SPECS[:2], ids=[s.name for s in SPECS[:2]])
def test_muon_labels_pytree_or_callable_under_inject_hyperparams(spec):
  """Labels given as a pytree (matched by key path) act as the default callable, also under
  inject_hyperparams and map_params; a callable labels under inject_hyperparams must be declared
  static, else a ValueError says so (it is taken for a schedule: every leaf would go to Adam)."""
  params, (grads,) = _params(spec), _grads(spec, 1)
  pytree = optim.muon_labels(params)
  assert pytree == {"w": "muon", "experts": "muon", "norm": "adam"}
  injected = optax.inject_hyperparams(spec.factory, static_args=spec.static_args)(
      **spec.kwargs, labels=pytree)
  state = injected.init(params)
  chex.assert_trees_all_equal(optax.tree.map_params(injected, lambda v: v, state), state)
  updates, _ = jax.jit(injected.update)(grads, state, params)
  _close(updates, _reference(spec)[0][0])
  with pytest.raises(ValueError, match="static_args=.*'labels'"):
    optax.inject_hyperparams(spec.factory, static_args=spec.static_args)(
        **spec.kwargs, labels=optim.muon_labels).init(params)
