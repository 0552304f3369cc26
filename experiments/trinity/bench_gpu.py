"""`jaxpapers bench gpu`'s Trinity check: tokens/s and MFU of one AFMoE training step (arXiv 2602.17004).

The step is the experiment's own: the task of `model.make_task` (AFMoE LM, SMEBU bias update
after the step, Trinity's Muon/AdamW split) in the shared `jaxpapers.core.train.Trainer`, at a
paper-like width (`gpu_config`): the paper preset's layer shapes (d_model 2048, 16 heads of 128
with 4 KV heads, 64 routed experts of width 1408, top-6, 2 shared, window 1024, the ragged
dispatch of `expert_parallel` on one device) with 4 layers instead of 32 (1 dense, 3 MoE, the
last global), unscanned and without rematerialization, at batch 8 x 2048 tokens. The model has
no compute-dtype setting, so its float parameters are cast to bf16 at creation (`_bf16`): the
matmuls run in bf16, the loss in float32.

Timed: the Trainer's compiled step (`Trainer._train_step` lowered and compiled once, as
`jaxpapers.core.bench_trainer` does), called on one fixed device batch, its state carried from
call to call (the donated buffers), median of `REPEATS` calls after `WARMUP`; the host loader is
kept out of the time. Reported: tokens/s = batch x seq / median, model FLOPs = 6 x active
parameters x tokens (Kaplan et al., arXiv 2001.08361; attention's score FLOPs are left out, as
in MFU's usual definition, PaLM, arXiv 2204.02311, App. B, which would add 12 x layers x d x seq
per token), MFU = model FLOPs / median / peak with the peak of `PEAK_FLOPS` (H200 / H100 SXM bf16
dense Tensor Core: 989.4 TFLOP/s, NVIDIA's datasheet; the sparsity figure is twice that), and
XLA's own count of the compiled step (`cost_analysis`) over time for comparison. Active
parameters: `jaxpapers.core.plan.count_params` (the routed experts a token is not sent to left
out).

In a dry run the same code runs on CPU with one MoE layer at the smoke preset's width (batch
2 x 64, 2 calls); the GPU configuration is only built abstractly there (`nnx.eval_shape`) for
its parameter counts.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core import bench
from jaxpapers.core import mesh as mesh_lib
from jaxpapers.core import plan as plan_lib
from jaxpapers.core.config import MeshConfig, TrainConfig
from jaxpapers.core.train import Trainer
from jaxpapers.nn.afmoe import AfmoeLM

from . import config as config_lib
from .model import make_task

PEAK_FLOPS = {"H200": 989.4e12, "H100": 989.4e12}  # bf16 dense, per GPU (device_kind substring)
REPEATS, WARMUP = 10, 2
TARGET_MFU = 0.2  # ours: a 4-layer slice of the paper's shapes should reach a fifth of the peak


def gpu_config(dry_run: bool = False) -> config_lib.TrinityConfig:
  """The measured configuration: paper-like width on a GPU, the smoke width in a dry run."""
  paper = config_lib.PAPER
  train = TrainConfig(steps=REPEATS + WARMUP + 2, eval_every=0, log_every=1_000,
                      checkpoint_every=0)
  data = config_lib.DataConfig(corpus="markov", buffer_size=16, eval_batches=1)
  if dry_run:  # one (global) MoE layer at the smoke preset's width: the cheapest compile
    model = dataclasses.replace(config_lib.SMOKE.model, num_layers=1, num_dense_layers=0,
                                global_every=1)
    return dataclasses.replace(paper, model=model, data=data, batch_size=2, seq_len=64,
                               train=train, mesh=MeshConfig(data=1))
  model = dataclasses.replace(paper.model, num_layers=4, num_dense_layers=1, global_every=4,
                              scan_layers=False, remat="none")
  return dataclasses.replace(paper, model=model, data=data, batch_size=8, seq_len=2048,
                             train=train, mesh=MeshConfig(data=1))


def _bf16(init_model):
  """`init_model` whose float `nnx.Param`s are cast to bf16 once created."""
  def make(rngs: nnx.Rngs):
    model = init_model(rngs=rngs)
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree.map(
        lambda x: x.astype(jnp.bfloat16) if jnp.issubdtype(x.dtype, jnp.floating) else x, params))
    return model
  return make


def _task(config, mesh):
  task = make_task(config, mesh)
  return dataclasses.replace(task, init_model=_bf16(task.init_model))  # never evaluated here


def param_counts(config) -> dict[str, int]:
  """Total and active parameters of `config`'s model, from abstract shapes (nothing allocated)."""
  model = nnx.eval_shape(lambda: _bf16(functools.partial(AfmoeLM, config.model))(rngs=nnx.Rngs(0)))
  total, active = plan_lib.count_params(model)
  return {"total": total, "active": active}


def peak_flops(device_kind: str) -> float | None:
  """The bf16 dense peak of `device_kind` from `PEAK_FLOPS`, None when unknown (a CPU)."""
  return next((peak for name, peak in PEAK_FLOPS.items() if name in device_kind), None)


def measure(config, repeats: int, warmup: int) -> dict[str, Any]:
  """Compiles the Trainer's step for `config` on one device and times it; see the module docstring."""
  mesh = mesh_lib.make_mesh(config.mesh, jax.devices()[:1])
  rules = mesh_lib.logical_rules(config.mesh)
  task = _task(config, mesh)
  trainer = Trainer(task, config.train, mesh, rules=rules)
  batch = mesh_lib.global_batch(next(task.train_data), mesh)
  model = nnx.merge(trainer._model_def, trainer.state["model"])  # pylint: disable=protected-access
  total, active = plan_lib.count_params(model)
  dtypes = sorted({str(x.dtype) for x in jax.tree.leaves(nnx.state(model, nnx.Param))})
  del model  # its arrays are the trainer's, donated by the first timed step
  holder: dict[str, Any] = {}

  def precompile():
    with mesh_lib.use_mesh(mesh, rules):
      holder["step"] = trainer._train_step.lower(trainer._leaves, batch).compile()  # pylint: disable=protected-access
    holder["leaves"] = trainer._leaves  # pylint: disable=protected-access
    return holder["step"]

  def step():
    holder["leaves"], metrics = holder["step"](holder["leaves"], batch)
    return metrics["loss"]

  timing = bench.time_fn(step, warmup=warmup, repeats=repeats, precompile=precompile)
  tokens = config.batch_size * config.seq_len
  seconds = timing.median
  model_flops = 6.0 * active * tokens
  xla_flops = plan_lib._flops(holder["step"])  # pylint: disable=protected-access
  device_kind = jax.devices()[0].device_kind
  peak = peak_flops(device_kind)
  loss = float(step())
  return {
      "device_kind": device_kind, "params_total": total, "params_active": active,
      "tokens_per_step": tokens, "step": timing.to_dict(), "tokens_per_second": tokens / seconds,
      "model_flops_per_step": model_flops, "xla_flops_per_step": xla_flops,
      "model_tflops_per_second": model_flops / seconds / 1e12,
      "xla_tflops_per_second": xla_flops / seconds / 1e12,
      "peak_flops": peak, "mfu": None if peak is None else model_flops / seconds / peak,
      "xla_flops_utilization": None if peak is None else xla_flops / seconds / peak,
      "loss_after": loss, "param_dtypes": dtypes,
  }


def _describe(config) -> dict[str, Any]:
  m = config.model
  return {"d_model": m.d_model, "layers": m.num_layers, "dense_layers": m.num_dense_layers,
          "heads": m.num_heads, "kv_heads": m.num_kv_heads, "head_dim": m.head_dim,
          "experts": m.num_experts, "top_k": m.top_k, "expert_width": m.expert_width,
          "shared": m.num_shared, "window": m.window, "dispatch": m.dispatch,
          "batch": config.batch_size, "seq": config.seq_len, "optimizer": config.optimizer,
          "balancing": config.balancing, "param_dtype": "bfloat16"}


def check_mfu(dry_run: bool, budget_s: float) -> dict:  # pylint: disable=unused-argument
  """`jaxpapers bench gpu`'s Trinity check: tokens/s and MFU of one training step."""
  start = time.perf_counter()
  config = gpu_config(dry_run)
  out: dict[str, Any] = {"config": _describe(config), "peak_flops_table": PEAK_FLOPS}
  out.update(measure(config, repeats=1 if dry_run else REPEATS, warmup=1 if dry_run else WARMUP))
  if dry_run:  # the GPU configuration's counts, from abstract shapes only
    out["gpu_config"] = {**_describe(gpu_config(False)), "params": param_counts(gpu_config(False))}
  out["seconds"] = time.perf_counter() - start
  out["targets"] = {} if dry_run else {"mfu": bench.target(out["mfu"], ">=", TARGET_MFU)}
  return out
