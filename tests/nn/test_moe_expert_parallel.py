"""Expert-parallel MoE dispatch (`dispatch="expert_parallel"`) against the dense dispatch.

8 fake CPU devices (tests/conftest.py). The reference is the dense dispatch on one device, no
mesh; the expert-parallel runs are jitted on (data, fsdp, expert, tensor) meshes with the batch
split over the batch axes and the expert kernels over `expert`.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpapers.core import config as config_lib
from jaxpapers.core import experiment, registry
from jaxpapers.core.config import MeshConfig
from jaxpapers.core.mesh import BATCH_AXES, make_mesh
from jaxpapers.nn import moe as moe_lib

D, E, K, F, B, T = 16, 8, 2, 16, 8, 4
BIAS = np.linspace(-0.2, 0.2, E).astype(np.float32)  # an expert bias that changes selections


def _make(dispatch, num_experts=E):
  model = moe_lib.MoE(D, num_experts, K, F, route_scale=1.7, dispatch=dispatch,
                      router_init_std=0.5, init_std=0.3, rngs=nnx.Rngs(0))
  model.expert_bias[...] = jnp.asarray(BIAS[:num_experts])
  return model


def _inputs():
  x = np.random.default_rng(1).standard_normal((B, T, D)).astype(np.float32)
  mask = np.ones((B, T), np.int32)
  mask[5, 2:] = 0
  return jnp.asarray(x), jnp.asarray(mask)


def _step_fn(model):
  """A jitted `(params, rest, x, mask) -> ((loss, (y, counts)), (grad params, grad x))`."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def step(params, rest, x, mask):
    def loss(params, x):
      y, counts = nnx.merge(graphdef, params, rest)(x, mask)
      return jnp.sum(y ** 2), (y, counts)
    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  return step, params, rest


@functools.cache
def _dense_reference():
  step, params, rest = _step_fn(_make("dense"))
  return jax.device_get(step(params, rest, *_inputs()))


def _assert_matches_dense(result):
  (loss, (y, counts)), (grads, gx) = result
  (loss_d, (y_d, counts_d)), (grads_d, gx_d) = _dense_reference()
  assert counts_d.sum() == (B * T - 2) * K
  np.testing.assert_array_equal(counts, counts_d)  # global loads, not one shard's
  np.testing.assert_allclose(y, y_d, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(loss, loss_d, rtol=1e-5)
  flat, flat_d = jax.tree.leaves_with_path(grads), jax.tree.leaves_with_path(grads_d)
  assert [p for p, _ in flat] == [p for p, _ in flat_d]
  assert len(flat) == 7  # router, gate, up, down, shared gate/up/down
  for (path, a), (_, b) in zip(flat_d, flat):
    assert np.abs(a).max() > 0, path
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max(), err_msg=str(path))
  np.testing.assert_allclose(gx, gx_d, rtol=1e-5, atol=1e-5 * np.abs(gx_d).max())


def _collectives(compiled) -> set[str]:
  return set(re.findall(r"\b(all-to-all|all-gather|all-reduce|reduce-scatter)\(",
                        compiled.as_text()))


@pytest.mark.parametrize("data,fsdp,expert,tensor", [(1, 1, 8, 1), (2, 2, 2, 1), (1, 1, 4, 2)])
def test_expert_parallel_matches_dense_forward_and_gradients(data, fsdp, expert, tensor):
  mesh = make_mesh(MeshConfig(data=data, fsdp=fsdp, expert=expert, tensor=tensor))
  step, params, rest = _step_fn(_make("expert_parallel"))
  x, mask = _inputs()
  # The trainer's layouts: experts split over `expert`, their hidden width over `tensor` (Auto).
  kernel = {"gate": P("expert", None, "tensor"), "up": P("expert", None, "tensor"),
            "down": P("expert", "tensor", None)}
  params = nnx.State({k: jax.device_put(v, NamedSharding(mesh, kernel.get(k, P())))
                      for k, v in params.items()})
  with jax.set_mesh(mesh):
    args = (params, jax.device_put(rest, NamedSharding(mesh, P())),
            jax.device_put(x, NamedSharding(mesh, P(BATCH_AXES))),
            jax.device_put(mask, NamedSharding(mesh, P(BATCH_AXES))))
    compiled = step.lower(*args).compile()
    result = compiled(*args)
  (_, (y, counts)), (grads, _) = result
  assert y.sharding.spec == P(BATCH_AXES, None, None)
  assert counts.sharding.is_fully_replicated
  assert grads["gate"].sharding.spec[0] == "expert"  # expert gradients stay where the experts are
  collectives = _collectives(compiled)
  assert "all-to-all" in collectives  # tokens travel: the experts are not gathered
  if tensor == 1:  # nothing is gathered (top_k runs per shard, the kernels stay split)
    assert "all-gather" not in collectives, collectives
  _assert_matches_dense(jax.device_get(result))


def test_without_expert_axis_falls_back_to_ragged():
  step, params, rest = _step_fn(_make("expert_parallel"))
  x, mask = _inputs()
  _assert_matches_dense(jax.device_get(step(params, rest, x, mask)))  # no mesh
  mesh = make_mesh(MeshConfig(data=8))  # expert axis of size 1
  with jax.set_mesh(mesh):
    batch = NamedSharding(mesh, P(BATCH_AXES))
    args = (jax.device_put(params, NamedSharding(mesh, P())),
            jax.device_put(rest, NamedSharding(mesh, P())),
            jax.device_put(x, batch), jax.device_put(mask, batch))
    compiled = step.lower(*args).compile()
    result = jax.device_get(compiled(*args))
  assert "all-to-all" not in _collectives(compiled)
  _assert_matches_dense(result)


@pytest.mark.parametrize("num_experts,batch,message", [
    (6, B, "num_experts=6 is not divisible"), (E, 4, "batch 4 is not divisible")])
def test_refuses_shapes_the_mesh_does_not_divide(num_experts, batch, message):
  model = _make("expert_parallel", num_experts=num_experts)
  mesh = make_mesh(MeshConfig(data=1, expert=8))
  x = jax.ShapeDtypeStruct((batch, T, D), jnp.float32,
                           sharding=NamedSharding(mesh, P(None)))
  with jax.set_mesh(mesh), pytest.raises(ValueError, match=message):
    nnx.eval_shape(lambda m, x: m(x), model, x)


def _train(overrides):
  exp = registry.load_experiment("trinity")
  cfg = config_lib.override(exp.presets["smoke"], [
      *overrides, "train.steps=2", "train.eval_every=0", "train.log_every=1",
      "train.checkpoint_every=0"])
  trainer = experiment.build_trainer(exp, cfg, None)
  result = trainer.run()
  return result, jax.device_get(jax.tree.leaves(trainer.state["model"]))


@pytest.mark.slow  # two trainers compile (~45 s); the dispatch itself is checked above
def test_trainer_expert_parallel_matches_one_device_dense():
  dense, state_d = _train(["mesh.data=1"])
  ep, state = _train(["mesh.data=1", "mesh.expert=8", "model.dispatch=expert_parallel"])
  losses_d = [r["loss"] for r in dense.history if r["kind"] == "train"]
  losses = [r["loss"] for r in ep.history if r["kind"] == "train"]
  assert len(losses) == 2
  np.testing.assert_allclose(losses, losses_d, rtol=0, atol=1e-5)
  np.testing.assert_allclose(ep.final_metrics["eval_loss"], dense.final_metrics["eval_loss"],
                             rtol=0, atol=1e-5)
  # Same parameters after two updates, and the same SMEBU expert bias and momentum: the bias
  # update saw the same (global) loads.
  assert len(state) == len(state_d)
  for a, b in zip(state_d, state):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
