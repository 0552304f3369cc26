"""Trinity's router losses in the training loss (weights, the mid-run z-loss change, step
stamps) and the runtime run constants that let a sweep share one compiled step."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxpapers import optim
from jaxpapers.experiments.trinity import model as model_lib
from jaxpapers.experiments.trinity.run import EXPERIMENT
from jaxpapers.nn.afmoe import AfmoeLM


def _batch(config):
  return next(model_lib.StepStamped(model_lib.make_loader(config, 0), config))


@pytest.fixture(scope="module")
def setup():
  """The smoke config with zero routers (router losses known in closed form) and one batch."""
  config = EXPERIMENT.config("smoke", ["model.router_init=zeros", "train.steps=10"])
  model = AfmoeLM(config.model, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  loss = jax.jit(lambda state, batch: model_lib.loss_fn(
      nnx.merge(graphdef, state), batch, None, config=config))
  return config, model, _batch(config), lambda b: loss(state, b)


def _cross_entropy(model, batch):
  """Mean next-token cross-entropy over real targets, float64 numpy."""
  logits, _ = nnx.jit(lambda m, b: m(b["inputs"], b["segment_ids"], b["segment_ids"] > 0))(
      model, {k: batch[k] for k in ("inputs", "segment_ids")})
  z = np.asarray(logits, np.float64)
  lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
  target = np.take_along_axis(z, np.maximum(batch["targets"], 0)[..., None], -1)[..., 0]
  mask = np.asarray(batch["mask"], np.float64)
  return ((lse - target) * mask).sum() / mask.sum()


def test_loss_adds_the_weighted_router_losses_of_every_moe_layer(setup):
  config, model, batch, loss = setup
  layers, experts = config.model.num_moe_layers, config.model.num_experts
  # zero routers: every layer's balance loss is 1 and its z-loss (log E)^2 (tests/nn/test_moe.py)
  ce = _cross_entropy(model, batch)
  total, aux = loss(batch)
  assert batch["step"].tolist() == [0] * config.batch_size
  assert (config.balance_loss, config.z_loss, config.z_loss_late) == (1e-4, 1e-4, 1e-6)
  expected = ce + config.balance_loss * layers + config.z_loss * layers * np.log(experts) ** 2
  np.testing.assert_allclose(aux["lm_loss"], ce, rtol=1e-5)
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  np.testing.assert_allclose(aux["balance_loss"], 1.0, rtol=1e-6)
  np.testing.assert_allclose(aux["z_loss"], np.log(experts) ** 2, rtol=1e-5)
  # the balance-loss weight is the batch's (the run's config): a control without it
  off = _batch(dataclasses.replace(config, balance_loss=0.0))
  np.testing.assert_array_equal(off["inputs"], batch["inputs"])
  np.testing.assert_allclose(loss(off)[0], ce + config.z_loss * layers * np.log(experts) ** 2,
                             rtol=1e-5)


def test_z_loss_weight_drops_at_the_switch_step(setup):
  config, _, batch, loss = setup
  switch = round(config.z_loss_switch * config.train.steps)
  assert switch == 5
  weights = [float(model_lib.z_loss_coefficient(config, jnp.asarray(s))) for s in (0, 4, 5, 9)]
  np.testing.assert_allclose(weights, [1e-4, 1e-4, 1e-6, 1e-6])
  late = {**batch, "step": np.full_like(batch["step"], switch)}
  z = config.model.num_moe_layers * np.log(config.model.num_experts) ** 2
  np.testing.assert_allclose(loss(batch)[0] - loss(late)[0], (1e-4 - 1e-6) * z, rtol=1e-3)
  np.testing.assert_allclose(loss(late)[1]["z_loss_weight"], 1e-6)


def test_step_stamps_follow_the_loader_and_its_state(setup):
  config = setup[0]
  loader = model_lib.StepStamped(model_lib.make_loader(config, 0), config)
  first = next(loader)
  state = loader.get_state()
  second, third = next(loader), next(loader)
  assert [int(b["step"][0]) for b in (first, second, third)] == [0, 1, 2]
  loader.set_state(state)  # resumed: the same batch with the same stamp
  again = next(loader)
  assert int(again["step"][0]) == 1
  np.testing.assert_array_equal(again["inputs"], second["inputs"])
  assert first["balance_rule"].dtype == np.int32 and first["balance_lr"].dtype == np.float32
  np.testing.assert_array_equal(first["balance_rule"], model_lib.BALANCE_RULES["smebu"])
  np.testing.assert_allclose(first["balance_lr"], config.balance_lr)


@pytest.mark.parametrize("rule", ["none", "sign", "smebu"])
def test_runtime_balance_rule_updates_biases_as_the_optax_rules_do(setup, rule):
  config = dataclasses.replace(setup[0], balancing=rule, balance_lr=0.1)
  model = AfmoeLM(config.model, rngs=nnx.Rngs(0))
  layer = model.moe_layers()[0]
  layer.bias_momentum[...] = jnp.linspace(-0.01, 0.01, config.model.num_experts)
  momentum = np.asarray(layer.bias_momentum[...])
  counts = jnp.asarray([[4, 3, 1, 8, 2, 6, 5, 3]], jnp.float32)  # one MoE layer, E = 8
  constants = model_lib.run_constants(config)
  aux = {"counts": counts, "balance_rule": jnp.asarray(constants["balance_rule"]),
         "balance_lr": jnp.asarray(constants["balance_lr"], jnp.float32)}
  metrics = model_lib.balance(model, aux, config)
  excess = optim.load_excess(counts[0])
  if rule == "none":
    expected, expected_m = np.zeros(8), momentum  # nothing moves
  elif rule == "sign":
    expected = optim.sign_bias_balancing(0.1).update(excess, optax.EmptyState())[0]
    expected_m = momentum  # the sign rule is stateless: the momentum is left alone
  else:
    expected, state = optim.smebu(0.1, config.balance_momentum, config.balance_kappa).update(
        excess, optim.SmebuState(jnp.asarray(momentum)))
    expected_m = state.momentum
  if rule != "none":
    assert np.abs(np.asarray(expected)).max() > 1e-3
  np.testing.assert_allclose(layer.expert_bias[...], expected, rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(layer.bias_momentum[...], expected_m, rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(metrics["bias_jitter"], np.abs(np.asarray(expected)).mean(),
                             rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_injected_peak_lr_equals_the_scheduled_optimizer(name):
  config = dataclasses.replace(EXPERIMENT.config("small"), optimizer=name, lr=2e-2,
                               adam_lr=5e-3 if name == "muon" else None, warmup_steps=2,
                               train=dataclasses.replace(EXPERIMENT.config("small").train,
                                                         steps=8))

  def schedule(peak):
    return optax.warmup_cosine_decay_schedule(0.0, peak, 2, 8, end_value=0.1 * peak)

  if name == "adamw":
    reference = optax.adamw(schedule(2e-2), b1=0.9, b2=0.95, weight_decay=config.weight_decay)
  else:
    reference = optim.muon(schedule(2e-2), adam_learning_rate=schedule(5e-3),
                           weight_decay=config.weight_decay, adam_weight_decay=config.weight_decay)
  ours = model_lib.make_optimizer(config)
  keys = jax.random.split(jax.random.key(0), 4)
  params = {"layers": {"q": jax.random.normal(keys[0], (8, 6)),
                       "experts": jax.random.normal(keys[1], (3, 8, 6))},
            "embed": jax.random.normal(keys[2], (10, 8)), "norm": jnp.ones(8)}
  ref_state, our_state = reference.init(params), ours.init(params)
  ref_step, our_step = jax.jit(reference.update), jax.jit(ours.update)
  for step in range(5):
    grads = jax.tree.map(lambda p, s=step: jnp.sin(p * (s + 1)), params)
    ref_update, ref_state = ref_step(grads, ref_state, params)
    our_update, our_state = our_step(grads, our_state, params)
    if step > 0:  # step 0 is the warm-up's zero learning rate
      assert float(optax.tree.norm(ref_update)) > 1e-4
    chex.assert_trees_all_close(our_update, ref_update, rtol=1e-5, atol=1e-8)
    params = optax.apply_updates(params, ref_update)


def _step_text(config) -> str:
  """The HLO of a train step (loss, grads, optimizer, bias update) for `config`."""
  task = model_lib.make_task(config, None)
  model = AfmoeLM(config.model, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, task.optimizer, wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  batch = next(task.train_data)

  def step(state, batch):
    model, optimizer = nnx.merge(graphdef, state)
    grads, aux = nnx.grad(lambda m: task.loss_fn(m, batch, None), has_aux=True)(model)
    optimizer.update(model, grads)
    task.after_update(model, aux)
    return nnx.state((model, optimizer))

  return jax.jit(step).lower(state, batch).as_text(debug_info=False)


def test_the_sweeps_runs_share_one_compiled_step(setup):
  """lr, bias rule, its step size and the balance-loss weight are runtime values: one program."""
  config = setup[0]
  base = _step_text(config)
  for changes in ({"lr": 1e-2, "balancing": "sign", "balance_lr": 2e-2},
                  {"balancing": "none", "balance_loss": 0.0}):
    assert _step_text(dataclasses.replace(config, **changes)) == base, changes
  # what is a constant of the program does change it (the z-loss schedule's switch step)
  assert _step_text(dataclasses.replace(config, z_loss_switch=0.2)) != base
