"""`jaxpapers bench modular_addition`: our jitted JAX step against plain PyTorch on the CPU.

The model is the modular-addition network of He et al. (arXiv 2602.16849, sections 1.1-1.3)
on the `small` preset: p = 31, M = 931, ReLU, full batch of the 720 training pairs, float32
mean cross-entropy, AdamW (lr 1e-4, betas (0.9, 0.98), eps 1e-8, weight decay 2.0) with the
warm-up factor min(step / 10, 1). Measured: full-batch training steps/s (median of interleaved
repeats) of the shared `Trainer` loop and of a straightforward PyTorch implementation written
here (eager, default thread count), the speedup JAX / PyTorch (target 3), and a cross-check
that both compute the same thing: from the same initial weights their training losses and
accuracies agree step by step. Timed with `jaxpapers.core.bench.time_interleaved` (JAX's step
compiled first, one warm-up run of each side); the shared loop is core's
`jaxpapers.core.bench_trainer.shared_loop`, the one `jaxpapers bench trainer` times.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np

from jaxpapers.core import bench
from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core.bench_trainer import shared_loop
from jaxpapers.core.config import override
from jaxpapers.core.errors import UsageError

from . import model as ma
from .config import PRESETS, ModularAdditionConfig
from .run import EXPERIMENT

STEPS, REPEATS, WARMUP_STEPS, CHECK_STEPS = 1000, 5, 50, 200
TARGET_SPEEDUP = 3.0
# Keyword arguments for a quick run of the same logic (tests/core/test_bench.py runs it).
SMOKE_KWARGS = {"bench_modular_addition": {"steps": 5, "repeats": 1, "check_steps": 5,
                                           "preset": "smoke"}}
LOSS_RTOL = 1e-6
BENCH_OVERRIDES = ["mesh.data=1", "train.eval_every=0", "train.log_every=100",
                   "train.checkpoint_every=0"]


def import_torch() -> Any:
  """The torch module, or a UsageError naming the extra that installs it."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UsageError("benchmark modular_addition compares against PyTorch, which is not "
                     "installed; install it with: pip install 'jaxpapers[bench]'") from None
  return torch


class TorchLoop:
  """The same network, loss and optimizer written plainly in PyTorch (eager, CPU, float32).

  Args:
    config: the experiment config (model and optimizer hyper-parameters).
    w_in: initial input weights [M, p].
    w_out: initial output weights [p, M].
    pairs: the training pairs [n, 2] (int), used as one full batch.
  """

  def __init__(self, config: ModularAdditionConfig, w_in: np.ndarray, w_out: np.ndarray,
               pairs: np.ndarray):
    torch = self.torch = import_torch()
    if config.optimizer != "adamw":
      raise UsageError(f"the PyTorch reference implements optimizer=adamw, "
                       f"not {config.optimizer!r}")
    self.p, self.activation = config.p, config.activation
    self.w_in = torch.nn.Parameter(torch.tensor(np.asarray(w_in, np.float32)))
    self.w_out = torch.nn.Parameter(torch.tensor(np.asarray(w_out, np.float32)))
    self.x = torch.tensor(pairs[:, 0], dtype=torch.long)
    self.y = torch.tensor(pairs[:, 1], dtype=torch.long)
    self.labels = (self.x + self.y) % config.p
    self.optimizer = torch.optim.AdamW([self.w_in, self.w_out], lr=config.lr,
                                       betas=(config.b1, config.b2), eps=config.eps,
                                       weight_decay=config.weight_decay)
    warmup = config.warmup_steps
    self.scheduler = torch.optim.lr_scheduler.LambdaLR(
        self.optimizer, lambda step: min(step / warmup, 1.0) if warmup else 1.0)

  def logits(self) -> Any:
    """Logits [n, p] of the training pairs."""
    functional = self.torch.nn.functional
    inputs = (functional.one_hot(self.x, self.p) + functional.one_hot(self.y, self.p)).float()
    hidden = inputs @ self.w_in.T
    hidden = functional.relu(hidden) if self.activation == "relu" else hidden.square()
    return hidden @ self.w_out.T

  def step(self) -> tuple[Any, Any]:
    """One full-batch AdamW step; returns (loss, accuracy) before the update, as tensors."""
    logits = self.logits()
    loss = self.torch.nn.functional.cross_entropy(logits, self.labels)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    self.scheduler.step()
    accuracy = (logits.detach().argmax(-1) == self.labels).float().mean()
    return loss.detach(), accuracy

  def run(self, n: int) -> None:
    for _ in range(n):
      self.step()

  def trajectory(self, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Losses and accuracies of the next n steps, each measured before its update."""
    out = [self.step() for _ in range(n)]
    return (np.array([float(loss) for loss, _ in out]),
            np.array([float(acc) for _, acc in out]))


def jax_trajectory(config: ModularAdditionConfig, steps: int) -> dict[str, np.ndarray]:
  """Runs the experiment's trainer (core's driver, `build_trainer`) for `steps`, logging every step.

  Returns:
    The initial weights (`w_in`, `w_out`), the training `pairs`, and the per-step `loss` and
    `accuracy` (each measured before its update, as the Trainer logs them).
  """
  config = override(config, ["mesh.data=1", "train.eval_every=0", "train.log_every=1",
                             "train.checkpoint_every=0", f"train.steps={steps}"])
  trainer = experiment_lib.build_trainer(EXPERIMENT, config, None)
  model = trainer.model
  w_in, w_out = (np.asarray(jax.device_get(w[...])) for w in (model.w_in, model.w_out))
  history = [r for r in trainer.run().history if r["kind"] == "train"]
  pairs, _ = ma.split_pairs(config.p, config.frac_train, config.split_seed)
  return {"w_in": w_in, "w_out": w_out, "pairs": pairs,
          "loss": np.array([r["loss"] for r in history]),
          "accuracy": np.array([r["accuracy"] for r in history])}


def cross_check(config: ModularAdditionConfig,
                steps: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Trains JAX and PyTorch from the same initial weights and compares their trajectories.

  Returns:
    The comparison (JSON-ready) and the JAX run of `jax_trajectory`.
  """
  ref = jax_trajectory(config, steps)
  torch_loop = TorchLoop(config, ref["w_in"], ref["w_out"], ref["pairs"])
  torch_loss, torch_acc = torch_loop.trajectory(steps)
  rel = np.abs(torch_loss - ref["loss"]) / np.abs(ref["loss"])
  summary = {
      "steps": steps,
      "jax_loss": float(ref["loss"][-1]), "torch_loss": float(torch_loss[-1]),
      "jax_accuracy": float(ref["accuracy"][-1]), "torch_accuracy": float(torch_acc[-1]),
      "max_relative_loss_difference": float(rel.max()),
      "accuracy_steps_differing": int(np.sum(ref["accuracy"] != torch_acc)),
      "passed": bool(rel.max() <= LOSS_RTOL and ref["accuracy"][-1] == torch_acc[-1]),
  }
  return summary, ref


def bench_modular_addition(steps: int = STEPS, repeats: int = REPEATS,
                           check_steps: int = CHECK_STEPS,
                           preset: str = "small") -> tuple[list[tuple[str, ...]], dict[str, Any]]:
  """Returns (table rows, JSON record); smaller arguments give a quick run of the same logic."""
  torch = import_torch()
  config = override(PRESETS[preset], BENCH_OVERRIDES)
  check, ref = cross_check(config, check_steps)  # same seed: the JAX loop's initial weights
  torch_loop = TorchLoop(config, ref["w_in"], ref["w_out"], ref["pairs"])
  mesh = mesh_lib.make_mesh(config.mesh)
  jax_run, jax_precompile = shared_loop(
      dataclasses.replace(ma.make_task(config, mesh), eval_data=None, eval_fn=None, model_metrics=None), config.train, mesh)
  load_before = os.getloadavg()[0]
  timings = bench.time_interleaved(
      {"jax": bench.Case(jax_run, (steps,), jax_precompile),
       "torch": bench.Case(torch_loop.run, (steps,), lambda: torch_loop.run(WARMUP_STEPS))},
      warmup=1, repeats=repeats)
  load_after = os.getloadavg()[0]
  rates = {name: t.rates(steps) for name, t in timings.items()}
  jax_rate, torch_rate = (timings[k].rate(steps) for k in ("jax", "torch"))
  speedup = jax_rate / torch_rate
  accuracy_gap = abs(check["jax_accuracy"] - check["torch_accuracy"])
  record = bench.bench_record(
      "modular_addition", {
          "jax_steps_per_second": jax_rate, "torch_steps_per_second": torch_rate,
          "speedup": speedup,
          # Fastest repeat of each: the least disturbed by other jobs on a shared machine.
          "best_repeat_speedup": max(rates["jax"]) / max(rates["torch"]),
          "jax_compile_seconds": timings["jax"].compile_seconds, "all_rates": rates,
          "cross_check": check, "torch_version": torch.__version__,
          "torch_threads": torch.get_num_threads(),
          # 1-minute load averages around the timed repeats: other jobs on the machine slow both
          # sides, torch's spinning OpenMP threads the most, and so inflate the speedup.
          "load_average_before": load_before, "load_average_after": load_after},
      description="the shared Trainer's jitted step against a plain PyTorch CPU loop "
                  "(arXiv 2602.16849's network)",
      config={"model": f"modular_addition {preset} (p={config.p}, width={config.width}, "
                       f"{config.activation}, full batch {len(ref['pairs'])}, float32, AdamW)",
              "steps_per_repeat": steps, "repeats": repeats, "warmup_runs": 1,
              "torch_first_steps": WARMUP_STEPS, "cross_check_steps": check_steps},
      targets={"speedup": bench.target(speedup, ">=", TARGET_SPEEDUP),
               "max_relative_loss_difference": bench.target(
                   check["max_relative_loss_difference"], "<=", LOSS_RTOL),
               "final_accuracy_difference": bench.target(accuracy_gap, "<=", 0.0)})
  rows = [("implementation", "steps/s (median)", f"loss after {check_steps} steps"),
          ("jax (jaxpapers Trainer)", f"{jax_rate:.1f}", f"{check['jax_loss']:.6f}"),
          (f"torch {torch.__version__} ({torch.get_num_threads()} threads)", f"{torch_rate:.1f}",
           f"{check['torch_loss']:.6f}"),
          ("speedup jax/torch", f"{speedup:.2f}x (target >= {TARGET_SPEEDUP}x)",
           f"max rel diff {check['max_relative_loss_difference']:.1e}"),
          ("passed", str(record["passed"]), "")]
  return rows, record
