"""Toy RDT policy and MiPA (FRAPPE, arXiv 2602.17259), at the CI sizes (d 8, depth 2, n 2, T_a 4)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.nn import rdt_policy as rp

CFG = rp.RDTConfig(width=8, depth=2, num_heads=2, prefix=2, chunk=4, target_dim=6,
                   projector_hidden=8, frequency_dim=8)
MIPA = rp.MiPAConfig(experts=3, lora_rank=2, target_dim=5)
B = 3


@pytest.fixture(scope="module")
def models():
  base = rp.RDTPolicy(CFG, rngs=nnx.Rngs(0))
  # A "trained" base: non-zero adaLN so the blocks are not the identity.
  for blk in base.blocks:
    blk.ada.kernel[...] = 0.1 * jax.random.normal(jax.random.key(1), blk.ada.kernel.shape)
  mipa = rp.MiPAPolicy(CFG, MIPA, rngs=nnx.Rngs(1))
  mipa.mipa = rp.MiPAConfig(experts=3, lora_rank=2, target_dim=5, prefix_noise=0.0)
  mipa.from_base(nnx.state(base))
  return base, mipa


def _inputs(seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  return (jax.random.normal(k[0], (B, 16, 16, 3)), jax.random.normal(k[1], (B, 2)),
          jax.random.normal(k[2], (B, 4, 2)), jnp.array([0, 10, 49]))


def test_gates_and_balance_loss():
  w = rp.gate_weights(jnp.array([[100.0, -100.0, 0.0], [0.0, 0.0, 0.0]]), 0.1)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
  assert float(w.min()) >= 0.1 / 3 - 1e-7
  np.testing.assert_allclose(rp.balance_loss(jnp.zeros((1, 3))), math.log(3) ** 2, rtol=1e-6)
  np.testing.assert_allclose(math.log(3) ** 2, 1.2069, atol=1e-4)
  np.testing.assert_allclose(rp.alignment_loss(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]])), 1.0)


@pytest.mark.slow  # the smoke reproduction measures the same identity on a trained mid model
def test_shapes_and_identity_at_post_training_start(models):
  base, mipa = models
  images, proprio, noisy, k = _inputs()
  a_base, readout = base(images, proprio, noisy, k)
  assert a_base.shape == (B, 4, 2) and readout.shape == (B, 8)
  assert base.projector(readout).shape == (B, 6)
  a, aux = mipa(images, proprio, noisy, k)
  assert aux["z"].shape == (3, B, 4, 8) and aux["projections"].shape == (3, B, 5)
  assert aux["logits"].shape == (B, 3) and aux["readouts"].shape == (3, B, 8)
  # LoRA B = 0 and identical prefixes: every z_i equal, aggregate = the base for any router.
  np.testing.assert_allclose(aux["z"][0], aux["z"][2], atol=1e-6)
  np.testing.assert_allclose(a, a_base, atol=1e-5)
  np.testing.assert_allclose(aux["readouts"][1], readout, atol=1e-5)
  mipa.router2.bias[...] = jnp.array([5.0, -3.0, 0.0])
  np.testing.assert_allclose(mipa(images, proprio, noisy, k)[0], a_base, atol=1e-5)


@pytest.mark.slow  # also claims of the smoke reproduction (stop-gradient, frozen base)
def test_post_training_filter_freezes_the_backbone_and_stops_teacher_gradients(models):
  _, mipa = models
  images, proprio, noisy, k = _inputs(1)
  target = jax.random.normal(jax.random.key(9), (3, B, 5))

  def loss(model, target):
    _, aux = model(images, proprio, noisy, k)
    return rp.alignment_loss(aux["projections"], target)
  grads = nnx.grad(loss, argnums=nnx.DiffState(0, rp.TRAINABLE))(mipa, target)
  paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(grads)[0]}
  assert paths and not any("base" in p for p in paths)
  assert any("lora_a" in p for p in paths) and any("router" in p for p in paths)
  # Stop-gradient on the teacher target: its gradient is exactly zero.
  g_target = jax.grad(lambda t: loss(mipa, t))(target)
  assert float(jnp.abs(g_target).max()) == 0.0
  assert float(jnp.abs(grads["experts"]["prefix"][...]).max()) > 0
