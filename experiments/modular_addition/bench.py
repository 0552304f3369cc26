"""`jaxpapers bench trainer`: the shared loop against a bare hand-written jax.jit loop.

Both loops train the same model (the modular-addition network of the `small` preset) on the
same full batch with the same optimizer and the same loss function, whose (loss, metrics) both
return every step. Reported: compile time of each step function and
steps/s (median of interleaved repeats), and the shared loop's overhead in percent.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import jax
import optax
from flax import nnx

from . import model as ma
from .config import PRESETS
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core.config import override
from jaxpapers.core.train import Trainer

STEPS, REPEATS = 2000, 5


def _bare_loop(config, batch):
  """The minimal loop a researcher would write: jit(grad + optax update), donated buffers."""
  model = ma.TwoLayerNet(config.p, config.width, config.activation, config.init_scale,
                         rngs=nnx.Rngs(config.train.seed))
  graphdef, params = nnx.split(model)
  tx = ma.make_optimizer(config)
  opt_state = tx.init(params)

  def step(params, opt_state, batch):
    def loss(params):  # the same loss function, returning (loss, aux metrics), as the Trainer's
      return ma.loss_fn(nnx.merge(graphdef, params), batch, None)
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, (value, aux)

  jitted = jax.jit(step, donate_argnums=(0, 1))
  start = time.perf_counter()
  jitted.lower(params, opt_state, batch).compile()
  compile_seconds = time.perf_counter() - start
  state = [params, opt_state]

  def run(n):
    for _ in range(n):
      state[0], state[1], loss = jitted(state[0], state[1], batch)
    jax.block_until_ready(loss)

  return run, compile_seconds


def _shared_loop(config):
  mesh = mesh_lib.make_mesh(config.mesh)
  task = dataclasses.replace(ma.make_task(config, mesh), eval_fn=None)
  trainer = Trainer(task, config.train, mesh)
  batch = mesh_lib.global_batch(next(task.train_data), mesh)
  start = time.perf_counter()
  with jax.set_mesh(mesh):
    trainer._train_step.lower(trainer._leaves, batch).compile()  # pylint: disable=protected-access
  compile_seconds = time.perf_counter() - start

  def run(n):
    trainer.config = dataclasses.replace(trainer.config, steps=trainer.step + n)
    trainer.run()

  return run, compile_seconds


def bench_trainer():
  """Returns (table rows, JSON record)."""
  config = override(PRESETS["small"], ["mesh.data=1", "train.eval_every=0", "train.log_every=100",
                                       "train.checkpoint_every=0"])
  host_batch = next(ma.make_task(config, mesh_lib.make_mesh(config.mesh)).train_data)
  bare, bare_compile = _bare_loop(config, jax.device_put(host_batch))
  shared, shared_compile = _shared_loop(config)
  rates = {"bare": [], "shared": []}
  bare(50), shared(50)  # warm-up: first dispatches, caches
  for _ in range(REPEATS):
    for name, run in (("bare", bare), ("shared", shared)):
      start = time.perf_counter()
      run(STEPS)
      rates[name].append(STEPS / (time.perf_counter() - start))
  bare_rate, shared_rate = (statistics.median(rates[k]) for k in ("bare", "shared"))
  overhead = 100 * (bare_rate / shared_rate - 1)
  record = {
      "benchmark": "trainer",
      "model": f"modular_addition small (p={config.p}, width={config.width}, full batch "
               f"{int(config.frac_train * config.p ** 2)})",
      "steps_per_repeat": STEPS, "repeats": REPEATS,
      "bare_steps_per_second": bare_rate, "shared_steps_per_second": shared_rate,
      "bare_compile_seconds": bare_compile, "shared_compile_seconds": shared_compile,
      "overhead_percent": overhead, "target_overhead_percent": 5.0, "passed": overhead < 5.0,
      "all_rates": rates, "backend": jax.default_backend(), "devices": 1,
      "jax_version": jax.__version__,
  }
  rows = [("loop", "steps/s (median)", "compile s"),
          ("bare jax.jit", f"{bare_rate:.1f}", f"{bare_compile:.3f}"),
          ("jaxpapers Trainer", f"{shared_rate:.1f}", f"{shared_compile:.3f}"),
          ("overhead", f"{overhead:+.2f}% (target < 5%)", "")]
  return rows, record
