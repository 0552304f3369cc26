"""`jaxpapers bench trainer`: the shared training loop against a bare hand-written jax.jit loop.

Both loops train the same model on the same full batch with the same optimizer and the same
loss function, whose (loss, metrics) both return every step. The model is a two-layer MLP on
one-hot pairs, `logits = W_out relu(W_in (e_x + e_y))`, learning `(x + y) mod p` at p = 31 with
931 hidden units on a fixed full batch of 720 pairs (the shape of the modular-addition `small`
preset), trained with AdamW: a step is a few small matmuls, so loop overhead shows. Reported:
compile time of each step function, steps/s (median of interleaved repeats, `jaxpapers.core.bench`),
the shared loop's overhead in percent at one step per call (target < 5%), and its steps/s at
`train.steps_per_dispatch` K in DISPATCH (K steps per jitted call; log_every=100, which 16 does
not divide, so K=16 also runs 4-step calls), with the best K's speedup over the bare per-step
loop (target >= 2x).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data
from jaxpapers.core import bench
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core.config import MeshConfig, TrainConfig
from jaxpapers.core.train import Task, Trainer

P, WIDTH, TRAIN_PAIRS = 31, 931, 720
STEPS, REPEATS = 2000, 5
DISPATCH = (1, 4, 16, 100)  # train.steps_per_dispatch values timed
TARGET_OVERHEAD_PERCENT = 5.0
TARGET_BEST_K_SPEEDUP = 2.0
# Keyword arguments for a quick run of the same logic (tests/core/test_bench.py runs it).
SMOKE_KWARGS = {"bench_trainer": {"steps": 5, "repeats": 1, "width": 32, "dispatch": (1, 4)}}


class PairMLP(nnx.Module):
  """`logits = W_out relu(W_in (e_x + e_y))` for integer operands x, y in [0, p); no biases."""

  def __init__(self, p: int, width: int, *, rngs: nnx.Rngs):
    scale = 1.0 / np.sqrt(p)
    self.w_in = nnx.Param(scale * jax.random.normal(rngs.params(), (width, p)))
    self.w_out = nnx.Param(scale * jax.random.normal(rngs.params(), (p, width)))

  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    p = self.w_in.shape[1]
    inputs = jax.nn.one_hot(x, p) + jax.nn.one_hot(y, p)
    return jax.nn.relu(inputs @ self.w_in[...].T) @ self.w_out[...].T


def loss_fn(model: PairMLP, batch: dict[str, jax.Array], rng: jax.Array):  # pylint: disable=unused-argument
  """Masked mean float32 cross-entropy, with the accuracy as a metric."""
  logits = model(batch["x"], batch["y"])
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                           batch["label"])
  mask = batch["mask"]
  accuracy = jnp.sum((logits.argmax(-1) == batch["label"]) * mask) / jnp.sum(mask)
  return jnp.sum(losses * mask) / jnp.sum(mask), {"accuracy": accuracy}


def optimizer(lr: float = 1e-4, warmup_steps: int = 10) -> optax.GradientTransformation:
  """AdamW (0.9, 0.98), weight decay 2.0, learning rate warmed up as min(step / warmup, 1)."""
  schedule = lambda count: lr * jnp.minimum(count / warmup_steps, 1.0)
  return optax.adamw(schedule, b1=0.9, b2=0.98, eps=1e-8, weight_decay=2.0)


def make_task(mesh: jax.sharding.Mesh, p: int = P, width: int = WIDTH,
              train_pairs: int = TRAIN_PAIRS, seed: int = 0) -> Task:
  """The benchmark's task: a seeded subset of all p^2 pairs as one full batch, no evaluation."""
  x, y = np.divmod(np.random.default_rng(seed).permutation(p * p)[:train_pairs], p)
  source = data.ArraySource({"x": x.astype(np.int32), "y": y.astype(np.int32),
                             "label": ((x + y) % p).astype(np.int32)})
  return Task(init_model=functools.partial(PairMLP, p, width), optimizer=optimizer(),
              loss_fn=loss_fn,
              train_data=data.full_batch(source, pad_to_multiple=mesh.size,
                                         process_index=jax.process_index(),
                                         process_count=jax.process_count()))


def bare_loop(task: Task, seed: int, batch: dict[str, jax.Array]
              ) -> tuple[Callable[[int], Any], Callable[[], Any]]:
  """The minimal loop a researcher would write: jit(grad + optax update), donated buffers.

  Returns:
    (run, precompile): `run(n)` takes n steps on `batch` and blocks; `precompile()` compiles the
    step.
  """
  graphdef, params = nnx.split(task.init_model(rngs=nnx.Rngs(seed)))
  tx = task.optimizer
  state = [params, tx.init(params)]

  def step(params, opt_state, batch):
    def loss(params):  # the same loss function, returning (loss, aux metrics), as the Trainer's
      return task.loss_fn(nnx.merge(graphdef, params), batch, None)
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, (value, aux)

  jitted = jax.jit(step, donate_argnums=(0, 1))

  def run(n: int):
    out = None
    for _ in range(n):
      state[0], state[1], out = jitted(state[0], state[1], batch)
    return jax.block_until_ready(out)

  return run, lambda: jitted.lower(state[0], state[1], batch).compile()


def shared_loop(task: Task, config: TrainConfig, mesh: jax.sharding.Mesh
                ) -> tuple[Callable[[int], Any], Callable[[], Any]]:
  """The shared `Trainer` on `task`, without a workdir.

  Returns:
    (run, precompile): `run(n)` trains n more steps (one `Trainer.run`); `precompile()`
    compiles the Trainer's program of `config.steps_per_dispatch` steps on the task's full batch
    (a shorter call, at a log step, compiles on first use).
  """
  trainer = Trainer(task, config, mesh)
  batch = mesh_lib.global_batch(next(task.train_data), mesh)
  k = config.steps_per_dispatch

  def run(n: int):
    trainer.config = dataclasses.replace(trainer.config, steps=trainer.step + n)
    return trainer.run()

  def precompile():
    with jax.set_mesh(mesh):  # pylint: disable=protected-access
      if k == 1:
        return trainer._train_step.lower(trainer._leaves, batch).compile()
      return trainer._train_repeated.lower(trainer._leaves, batch, k).compile()

  return run, precompile


def _case_name(k: int) -> str:
  """The timing key of the shared loop at K steps per call ("shared" at K=1, as before K existed)."""
  return "shared" if k == 1 else f"shared_k{k}"


def bench_trainer(steps: int = STEPS, repeats: int = REPEATS, width: int = WIDTH,
                  dispatch: tuple[int, ...] = DISPATCH) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
  """Returns (table rows, JSON record); `steps` per timed repeat, the Trainer at each K in `dispatch`."""
  dispatch = tuple(sorted({1, *dispatch}))  # K=1 gives the overhead target
  mesh = mesh_lib.make_mesh(MeshConfig(data=1))
  train = TrainConfig(steps=1, seed=0, eval_every=0, log_every=100, checkpoint_every=0)
  task = make_task(mesh, width=width)
  bare, bare_compile = bare_loop(task, train.seed, jax.device_put(next(task.train_data)))
  cases = {"bare": bench.Case(bare, (steps,), bare_compile)}
  for k in dispatch:
    config = dataclasses.replace(train, steps_per_dispatch=k)
    shared, shared_compile = shared_loop(make_task(mesh, width=width), config, mesh)
    cases[_case_name(k)] = bench.Case(shared, (steps,), shared_compile)
  timings = bench.time_interleaved(cases, warmup=1, repeats=repeats)
  rates = {name: t.rate(steps) for name, t in timings.items()}
  bare_rate, shared_rate = rates["bare"], rates["shared"]
  overhead = 100 * (bare_rate / shared_rate - 1)
  best_k = max(dispatch, key=lambda k: rates[_case_name(k)])
  best_speedup = rates[_case_name(best_k)] / bare_rate
  record = bench.bench_record(
      "trainer", {
          "bare_steps_per_second": bare_rate, "shared_steps_per_second": shared_rate,
          "overhead_percent": overhead,
          "dispatch_steps_per_second": {str(k): rates[_case_name(k)] for k in dispatch},
          "dispatch_speedup_over_bare": {str(k): rates[_case_name(k)] / bare_rate for k in dispatch},
          "best_steps_per_dispatch": best_k, "best_speedup_over_bare": best_speedup,
          "all_rates": {k: t.rates(steps) for k, t in timings.items()},
          "timings": {k: t.to_dict() for k, t in timings.items()}},
      description="jaxpapers.core.train.Trainer (K steps per jitted call) against a bare per-step "
                  "jax.jit loop, same model and batch",
      config={"model": f"PairMLP (p={P}, width={width}, relu, full batch {TRAIN_PAIRS}, AdamW)",
              "steps_per_repeat": steps, "repeats": repeats, "warmup_runs": 1,
              "steps_per_dispatch": list(dispatch), "log_every": train.log_every},
      targets={"overhead_percent": bench.target(overhead, "<", TARGET_OVERHEAD_PERCENT),
               "best_speedup_over_bare": bench.target(best_speedup, ">=", TARGET_BEST_K_SPEEDUP)})
  rows = [("loop", "steps/s (median)", "x bare", "compile s"),
          ("bare jax.jit", f"{bare_rate:.1f}", "1.00", f"{timings['bare'].compile_seconds:.3f}")]
  for k in dispatch:
    name = _case_name(k)
    rows.append(("jaxpapers Trainer" + ("" if k == 1 else f", K={k}"), f"{rates[name]:.1f}",
                 f"{rates[name] / bare_rate:.2f}", f"{timings[name].compile_seconds:.3f}"))
  rows.append(("overhead (K=1)", f"{overhead:+.2f}% (target < {TARGET_OVERHEAD_PERCENT:g}%)", "", ""))
  rows.append((f"best K={best_k}", f"{best_speedup:.2f}x bare (target >= {TARGET_BEST_K_SPEEDUP:g}x)",
               "", ""))
  return rows, record
