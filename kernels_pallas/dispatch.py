"""Kernel-family dispatch by the lowering platform (issue 17 item 3).

Every Pallas op of `kernels_pallas` has a GPU (Triton) kernel and a TPU (Mosaic) kernel with
the same contract. `dispatch` picks one with `jax.lax.platform_dependent`, i.e. by the platform
the program is *lowered* for, not by `jax.default_backend()` (which is "cpu" while a program is
compiled ahead of time for a TPU topology on a CPU host):

* backend None, interpret None (the default): CPU -> GPU-style kernel in interpret mode (as
  before), TPU -> TPU kernel compiled by Mosaic, any other platform (cuda, rocm) -> GPU kernel
  compiled by Triton.
* backend None, interpret True: the GPU-style kernel in interpret mode everywhere (as before);
  interpret False: TPU kernel on TPU, GPU kernel elsewhere, both compiled.
* backend "gpu" / "tpu": that family only; with interpret None it runs compiled except on CPU,
  where it runs in interpret mode (the TPU family in Pallas' TPU interpret mode,
  `pltpu.InterpretParams()`, which simulates TPU memory spaces and scalar prefetch).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.experimental.pallas import tpu as pltpu

BACKENDS = (None, "gpu", "tpu")

# `family(interpret) -> fn(*args)`: one kernel family, for an interpret setting.
Family = Callable[[Any], Callable[..., Any]]


def check_backend(backend: str | None) -> None:
  """Raises ValueError unless `backend` is None, "gpu" or "tpu"."""
  if backend not in BACKENDS:
    raise ValueError(f"backend must be None (by lowering platform), 'gpu' or 'tpu'; got {backend!r}")


def tpu_interpret(interpret: Any) -> Any:
  """The TPU family's `interpret` value: True -> `pltpu.InterpretParams()`, else unchanged."""
  return pltpu.InterpretParams() if interpret is True else interpret


def dispatch(backend: str | None, interpret: Any, gpu: Family, tpu: Family | None,
             *args: Any) -> Any:
  """Runs the kernel family chosen for the lowering platform (see the module docstring).

  Args:
    backend: None (by platform), "gpu" or "tpu".
    interpret: None (by platform), a bool, or a `pltpu.InterpretParams` (TPU family only).
    gpu: the GPU family, `interpret -> fn`.
    tpu: the TPU family, or None when the op's arguments cannot run on it (then the GPU family
      is lowered for TPU too, and Pallas' TPU lowering reports why it cannot).
    *args: the arrays passed to the chosen kernel.
  """
  check_backend(backend)
  if backend == "gpu" or (backend is None and tpu is None):
    if interpret is None:
      return jax.lax.platform_dependent(*args, cpu=gpu(True), default=gpu(False))
    return gpu(bool(interpret))(*args)
  if backend == "tpu":
    if tpu is None:
      raise ValueError("this op's arguments cannot run on the TPU kernel; see its docstring")
    if interpret is None:
      return jax.lax.platform_dependent(*args, cpu=tpu(pltpu.InterpretParams()),
                                        default=tpu(False))
    return tpu(tpu_interpret(interpret))(*args)
  if interpret is None:
    return jax.lax.platform_dependent(*args, cpu=gpu(True), tpu=tpu(False), default=gpu(False))
  if interpret is False:
    return jax.lax.platform_dependent(*args, tpu=tpu(False), default=gpu(False))
  return gpu(True)(*args)
