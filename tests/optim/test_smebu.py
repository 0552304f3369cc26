"""SMEBU (arXiv 2602.17004) and the centered sign rule: a worked example, invariants, shapes,
pytrees, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpapers.optim import SmebuState, load_excess, max_violation, sign_bias_balancing, smebu

LOADS = np.array([4.0, 3.0, 1.0, 8.0])  # worked example: loads [4, 3, 1, 8]


def _numpy_smebu(excess, m, lr, beta, kappa):
  delta = lr * np.tanh(kappa * -excess)
  delta -= delta.mean(axis=-1, keepdims=True)
  return beta * m + (1 - beta) * delta


def test_load_excess_and_max_violation():
  np.testing.assert_allclose(load_excess(LOADS), [0.0, -0.25, -0.75, 1.0])
  assert float(max_violation(LOADS)) == pytest.approx(1.0)  # (8 - 4) / 4
  counts = np.array([[2, 2, 2, 2], [0, 0, 0, 8]])  # balanced, then one expert takes everything
  np.testing.assert_allclose(max_violation(counts), [0.0, 3.0])
  np.testing.assert_array_equal(load_excess(np.zeros(4)), np.zeros(4))  # no tokens: no update


def test_smebu_reproduces_the_worked_example():
  tx = smebu(learning_rate=0.1, momentum=0.5, kappa=2.0)
  bias = jnp.zeros(4)
  updates, state = tx.update(load_excess(LOADS), tx.init(bias))
  bias = optax.apply_updates(bias, updates)
  expected = [-0.0051, 0.0181, 0.0402, -0.0532]
  np.testing.assert_allclose(bias, expected, atol=1e-4)
  np.testing.assert_allclose(state.momentum, expected, atol=1e-4)  # b = m after one step


def test_sign_rule_reproduces_the_worked_example():
  tx = sign_bias_balancing(learning_rate=0.1)
  bias = jnp.zeros(4)
  state = tx.init(bias)
  assert isinstance(state, optax.EmptyState)
  updates, _ = tx.update(load_excess(LOADS), state)
  np.testing.assert_allclose(optax.apply_updates(bias, updates), [-0.025, 0.075, 0.075, -0.125],
                             atol=1e-6)


def test_smebu_matches_numpy_over_steps_and_state_is_float32():
  rng = np.random.default_rng(0)
  tx = smebu(learning_rate=0.01, momentum=0.7, kappa=3.0)
  bias = jnp.zeros((3, 8), jnp.bfloat16)  # [layers, experts]
  state = tx.init(bias)
  assert isinstance(state, SmebuState)
  assert state.momentum.shape == (3, 8) and state.momentum.dtype == jnp.float32
  m = np.zeros((3, 8))
  for _ in range(5):
    excess = load_excess(rng.integers(0, 50, (3, 8)))
    updates, state = tx.update(excess, state)
    m = _numpy_smebu(np.asarray(excess), m, 0.01, 0.7, 3.0)
    np.testing.assert_allclose(updates, m, atol=1e-6)
  assert state.momentum.dtype == jnp.float32


@pytest.mark.parametrize("make_tx", [lambda: smebu(1e-3), lambda: sign_bias_balancing(1e-3)],
                         ids=["smebu", "sign"])
def test_centered_updates_keep_bias_sum_zero(make_tx):
  tx = make_tx()
  bias = jnp.zeros((4, 16))  # 4 layers, 16 experts: each layer centered on its own
  state = tx.init(bias)

  @jax.jit
  def step(bias, state, counts):
    updates, state = tx.update(load_excess(counts), state)
    return optax.apply_updates(bias, updates), state

  for key in jax.random.split(jax.random.key(0), 300):  # fresh random loads every step
    key_rate, key_count = jax.random.split(key)
    rates = jax.random.uniform(key_rate, (4, 16), minval=5.0, maxval=100.0)
    bias, state = step(bias, state, jax.random.poisson(key_count, rates))
  assert float(jnp.max(jnp.abs(bias.sum(axis=-1)))) < 1e-6
  assert float(jnp.max(jnp.abs(bias))) > 1e-3  # the bias did move


def test_update_moves_bias_toward_balance():
  tx = smebu(1e-3)
  counts = jnp.array([[10.0, 30.0, 20.0, 20.0], [20.0, 20.0, 20.0, 20.0]])  # layer 1 balanced
  updates, _ = tx.update(load_excess(counts), tx.init(jnp.zeros((2, 4))))
  assert updates[0, 0] > 0 > updates[0, 1]  # under-loaded expert up, over-loaded down
  np.testing.assert_array_equal(updates[1], np.zeros(4))  # balanced layer: no update
  sign_updates, _ = sign_bias_balancing(1e-3).update(load_excess(counts), optax.EmptyState())
  assert sign_updates[0, 0] > 0 > sign_updates[0, 1]


def test_pytree_input_and_jit():
  biases = {"layer_1": jnp.zeros(4), "layer_2": jnp.zeros((2, 6))}
  counts = {"layer_1": jnp.array(LOADS), "layer_2": jnp.arange(12.0).reshape(2, 6)}
  tx = smebu(0.1, 0.5, 2.0)
  state = tx.init(biases)
  assert jax.tree.map(jnp.shape, state.momentum) == {"layer_1": (4,), "layer_2": (2, 6)}
  excess = jax.tree.map(load_excess, counts)
  updates, state = jax.jit(tx.update)(excess, state)
  np.testing.assert_allclose(updates["layer_1"], [-0.0051, 0.0181, 0.0402, -0.0532], atol=1e-4)
  expected = _numpy_smebu(np.asarray(excess["layer_2"]), np.zeros((2, 6)), 0.1, 0.5, 2.0)
  np.testing.assert_allclose(updates["layer_2"], expected, atol=1e-6)
  sign_updates, _ = jax.jit(sign_bias_balancing(0.1).update)(excess, optax.EmptyState())
  np.testing.assert_allclose(sign_updates["layer_1"], [-0.025, 0.075, 0.075, -0.125], atol=1e-6)


def test_learning_rate_can_be_scheduled_with_inject_hyperparams():
  tx = optax.inject_hyperparams(smebu)(learning_rate=0.1, momentum=0.5, kappa=2.0)
  updates, _ = tx.update(load_excess(LOADS), tx.init(jnp.zeros(4)))
  np.testing.assert_allclose(updates, [-0.0051, 0.0181, 0.0402, -0.0532], atol=1e-4)


@pytest.mark.parametrize("make_tx", [lambda: smebu(1e-3), lambda: sign_bias_balancing(1e-3)],
                         ids=["smebu", "sign"])
def test_mismatched_or_expertless_inputs_are_refused_at_trace_time(make_tx):
  tx = make_tx()
  bias = jnp.zeros((3, 8))
  state = tx.init(bias)
  name = "smebu" if isinstance(state, SmebuState) else "sign_bias_balancing"
  with pytest.raises(ValueError, match=f"{name}: updates must have the tree structure and leaf shapes"):
    jax.jit(tx.update)(jnp.zeros((3, 4)), state, bias)  # 4 experts' loads for 8 biases
  with pytest.raises(ValueError, match=f"{name}: updates must have the tree structure"):
    tx.update({"layer": jnp.zeros((3, 8))}, state, bias)
  with pytest.raises(ValueError, match=f"{name}: every leaf needs experts on its last axis"):
    tx.update(jnp.zeros(()), tx.init(jnp.zeros(())))
