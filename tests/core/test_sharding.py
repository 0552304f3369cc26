"""Logical axis rules and the born-sharded training state.

A sharded run against the one-device run: tests/core/test_train.py (an annotated MLP on FSDP,
tensor and expert meshes) and tests/experiments/test_trinity.py (the AFMoE step).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxpapers import data
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core.config import MeshConfig, TrainConfig
from jaxpapers.core.errors import ConfigError
from jaxpapers.core.train import Task, Trainer
from jaxpapers.nn import partitioning as pt
from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM
from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.tiny_lm import TinyLM

VOCAB, WIDTH, SEQ = 64, 32, 8
TOKENS = np.random.default_rng(0).integers(0, VOCAB, size=(32, SEQ + 1)).astype(np.int32)


def tiny_lm(*, rngs):
  return TinyLM(VOCAB, WIDTH, 2, mixer=lambda r: CausalSelfAttention(WIDTH, 2, rngs=r),
                mlp_hidden=64, rngs=rngs)


def lm_loss(model, batch, rng):  # pylint: disable=unused-argument
  logits = model(batch["tokens"][:, :-1])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["tokens"][:, 1:])
  return jnp.mean(losses), {}


def make_trainer(mesh: MeshConfig, steps: int = 3) -> Trainer:
  task = Task(init_model=tiny_lm, optimizer=optax.adamw(1e-2), loss_fn=lm_loss,
              train_data=data.batches(data.ArraySource({"tokens": TOKENS}), 16, seed=0))
  config = TrainConfig(steps=steps, eval_every=0, log_every=1, checkpoint_every=0)
  return Trainer(task, config, mesh_lib.make_mesh(mesh), rules=mesh_lib.logical_rules(mesh))


def test_logical_spec_maps_names_skips_indivisible_and_reused_axes():
  mesh = mesh_lib.make_mesh(MeshConfig(data=1, fsdp=2, expert=2, tensor=2))
  spec = lambda names, shape, rules=mesh_lib.DEFAULT_RULES: mesh_lib.logical_spec(
      names, shape, mesh, rules)
  assert spec(("expert", "embed", "mlp"), (4, 8, 16)) == P("expert", "fsdp", "tensor")
  assert spec(("embed", "mlp"), (7, 16)) == P(None, "tensor")      # 7 is not split in 2
  assert spec(("embed", "embed"), (8, 8)) == P("fsdp", None)        # fsdp used once
  assert spec(("layers", "embed", "heads"), (3, 8, 8)) == P(None, "fsdp", "tensor")
  assert spec(None, (8, 8)) == P()
  rules = mesh_lib.logical_rules(MeshConfig(rules=("embed=", "mlp=fsdp+tensor")))
  assert spec(("embed", "mlp"), (8, 16), rules) == P(None, ("fsdp", "tensor"))
  with pytest.raises(ConfigError, match="mesh.rules"):
    MeshConfig(rules=("embed=model",))
  with pytest.raises(ConfigError, match="mesh.tensor"):
    mesh_lib.make_mesh(MeshConfig(fsdp=2, tensor=3))


def test_modules_construct_outside_and_inside_a_mesh():
  """Annotated modules build eagerly anywhere (no eager sharding of logical names)."""
  config = AfmoeConfig(num_layers=1, num_dense_layers=0, d_model=16, num_heads=2,
                       num_kv_heads=1, head_dim=8, num_experts=4, expert_width=16, window=4)
  outside = nnx.state(AfmoeLM(config, rngs=nnx.Rngs(0)))
  mesh = mesh_lib.make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
  with jax.set_mesh(mesh):
    inside = nnx.state(AfmoeLM(config, rngs=nnx.Rngs(0)))
    logits = jax.jit(lambda m, x: m(x))(tiny_lm(rngs=nnx.Rngs(0)), TOKENS[:2, :SEQ])
  assert pt.names_of(outside["layers"][0]["mlp"]["gate"]) == ("expert", "embed", "mlp")
  for a, b in zip(jax.tree.leaves(outside), jax.tree.leaves(inside)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  reference = jax.jit(lambda m, x: m(x))(tiny_lm(rngs=nnx.Rngs(0)), TOKENS[:2, :SEQ])
  np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), rtol=1e-6, atol=1e-6)


def _bytes_on(device, tree) -> int:
  return sum(shard.data.nbytes for leaf in jax.tree.leaves(tree)
             for shard in leaf.addressable_shards if shard.device == device)


def test_born_sharded_state_holds_an_eighth_per_device_and_equals_eager_init():
  trainer = make_trainer(MeshConfig(data=1, fsdp=8))
  params = trainer.params()
  total = sum(leaf.nbytes for leaf in jax.tree.leaves(params))
  # what the names say: leaves with an `embed` axis (width 32) split 8 ways, the rest whole
  expected = sum(leaf.nbytes // 8 if "embed" in (pt.names_of(var) or ()) else leaf.nbytes
                 for var, leaf in zip(jax.tree.leaves(nnx.split_state(
                     trainer.shardings["model"], nnx.Param, ...)[0], is_leaf=lambda x: isinstance(
                         x, nnx.Variable)), jax.tree.leaves(params)))
  for device in trainer.mesh.devices.flat:
    assert _bytes_on(device, params) == expected
  assert expected / total < 0.16  # about 1/8: only the norms and biases are whole
  # bit-identical to building the state eagerly on one device and then placing it
  model = tiny_lm(rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, trainer.task.optimizer, wrt=nnx.Param)
  eager = {"model": nnx.state(model), "optimizer": nnx.state(optimizer),
           "rng": jax.random.key_data(jax.random.key(1))}
  placed = jax.device_put(eager, trainer.shardings)
  assert jax.tree.structure(placed) == jax.tree.structure(trainer.state)
  for a, b in zip(jax.tree.leaves(placed), jax.tree.leaves(trainer.state)):
    assert a.sharding == b.sharding
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
