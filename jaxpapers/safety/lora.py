"""LoRA adapters on chosen `nnx.Linear`s of any NNX model (`flax.nnx.LoRA`).

The LoRA fine-tuning and circuit-breaker baselines of NeST (arXiv 2602.16835) adapt the FFN
projections: `add_lora` swaps each chosen Linear for `nnx.LoRA(base_module=linear)`, which
computes `x W + x A B` with `B` initialized to zero (the model's function is unchanged until
training); train with `wrt=nnx.LoRAParam`.
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from jaxpapers.safety.taps import Path, get_module, set_module


def add_lora(model: nnx.Module, paths: Sequence[Path], rank: int, *, rngs: nnx.Rngs) -> nnx.Module:
  """Wraps the `nnx.Linear` at each path in an `nnx.LoRA` of `rank` (in place); returns `model`."""
  if rank < 1:
    raise ValueError(f"LoRA rank must be >= 1, got {rank}")
  for path in paths:
    linear = get_module(model, path)
    if not isinstance(linear, nnx.Linear):
      raise ValueError(f"{path} is a {type(linear).__name__}, not an nnx.Linear")
    set_module(model, path, nnx.LoRA(linear.in_features, rank, linear.out_features,
                                     base_module=linear, rngs=rngs))
  return model
