"""Muon benchmark (part of `jaxpapers bench trinity`): Trinity's Muon/AdamW split against optax.contrib.muon.

Both optimizers are configured identically (Dion Newton–Schulz coefficients, β = 0.95 Nesterov,
width rule, Adam learning rate of its own) on the same tiny-LM-like param tree: an embedding,
attention and MLP matrices [64, 64] / [64, 256] / [256, 64], per-expert kernels [16, 64, 128]
and [16, 128, 64], a router, norms and an LM head. `jaxpapers.optim.muon` builds its split from
parameter names (`muon_labels`); optax is given the equivalent `muon_weight_dimension_numbers`
tree written out by hand. Reported: compile time and the median step time (jitted update +
apply_updates, interleaved repeats of `jaxpapers.core.bench.time_interleaved`) of each, their
ratio (target: ours <= 1.05 x optax), and the largest parameter difference after the timed steps
and whether XLA compiled the two steps to the same program (source locations aside): cross-checks
that both do the same thing.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax.contrib import MuonDimensionNumbers

from jaxpapers.core import bench
from jaxpapers.optim import muon

STEPS, REPEATS, LAYERS = 20, 9, 2
LR, ADAM_LR = 1e-3, 3e-4
D, V, E, F, H = 64, 256, 16, 128, 256
MATRIX = MuonDimensionNumbers(reduction_axis=0, output_axis=1)
EXPERT = MuonDimensionNumbers(reduction_axis=1, output_axis=2)


def _layer_shapes() -> dict:
  return {"attn": {"q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D)},
          "mlp": {"up": (D, H), "down": (H, D)},
          "moe": {"router": (D, E), "gate": (E, D, F), "up": (E, D, F), "down": (E, F, D)},
          "attn_norm": (D,), "mlp_norm": (D,)}


def _shapes() -> dict:
  return {"embed": (V, D), "layers": [_layer_shapes() for _ in range(LAYERS)],
          "final_norm": (D,), "head": (D, V)}


def _optax_dimension_numbers() -> dict:
  """The hand-written spec tree for optax.contrib.muon (None = Adam)."""
  layer = {"attn": {name: MATRIX for name in ("q", "k", "v", "o")},
           "mlp": {"up": MATRIX, "down": MATRIX},
           "moe": {"router": None, "gate": EXPERT, "up": EXPERT, "down": EXPERT},
           "attn_norm": None, "mlp_norm": None}
  return {"embed": None, "layers": [layer for _ in range(LAYERS)], "final_norm": None,
          "head": None}


def _tree(seed: int, scale: float) -> dict:
  shapes = _shapes()
  leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, s)
                                      for k, s in zip(keys, leaves)])


def _stepper(tx: optax.GradientTransformation, params, grads) -> tuple[bench.Case, list, dict]:
  """A Case whose call runs n donated update steps, the live [params, opt_state], the executable."""
  def step(params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  state = [jax.tree.map(jnp.copy, params), tx.init(params)]
  compiled: dict[str, Any] = {}

  def precompile():
    compiled["step"] = jax.jit(step, donate_argnums=(0, 1)).lower(state[0], state[1], grads).compile()

  def run(n: int):
    for _ in range(n):
      state[0], state[1] = compiled["step"](state[0], state[1], grads)
    return state[0]

  return bench.Case(run, (STEPS,), precompile), state, compiled


def _program_text(compiled) -> str:
  """Optimized HLO without source locations (to tell whether two programs are the same)."""
  text = re.sub(r"metadata=\{[^}]*\}", "", compiled.as_text())
  return "\n".join(line for line in text.splitlines() if "file_name_id=" not in line)


def bench_muon(repeats: int = REPEATS) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
  """Returns (table rows, JSON record)."""
  params, grads = _tree(0, 0.02), _tree(1, 1.0)
  ours_tx = muon(LR, adam_learning_rate=ADAM_LR, ns_coeffs="dion")
  optax_tx = optax.contrib.muon(LR, ns_coeffs="dion", adam_learning_rate=ADAM_LR,
                                muon_weight_dimension_numbers=_optax_dimension_numbers())
  ours, ours_state, ours_exe = _stepper(ours_tx, params, grads)
  theirs, theirs_state, theirs_exe = _stepper(optax_tx, params, grads)
  timings = bench.time_interleaved({"ours": ours, "optax": theirs}, warmup=1, repeats=repeats)
  ours_hlo, theirs_hlo = _program_text(ours_exe["step"]), _program_text(theirs_exe["step"])
  ours_compile, theirs_compile = timings["ours"].compile_seconds, timings["optax"].compile_seconds
  ours_ms, optax_ms = (1e3 * timings[k].median / STEPS for k in ("ours", "optax"))
  ratio = ours_ms / optax_ms
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(ours_state[0]), jax.tree.leaves(theirs_state[0])))
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  record = bench.bench_record(
      "trinity_muon",
      {"ours_ms_per_step": ours_ms, "optax_ms_per_step": optax_ms, "ratio": ratio,
       "ours_compile_seconds": ours_compile, "optax_compile_seconds": theirs_compile,
       "max_abs_param_diff": diff, "same_compiled_program": ours_hlo == theirs_hlo,
       "all_ms": {k: [1e3 * x / STEPS for x in t.all] for k, t in timings.items()}},
      description="jaxpapers.optim.muon (Trinity's Muon/AdamW split) vs optax.contrib.muon",
      config={"param_tree": f"tiny LM: embed [{V},{D}], {LAYERS} layers of [{D},{D}] x4, [{D},{H}], "
                            f"[{H},{D}], router [{D},{E}], experts [{E},{D},{F}] and [{E},{F},{D}], "
                            f"norms [{D}], head [{D},{V}] ({n_params} params)",
              "optimizer": {"learning_rate": LR, "adam_learning_rate": ADAM_LR, "ns_coeffs": "dion",
                            "ns_steps": 5, "beta": 0.95, "nesterov": True},
              "steps_per_repeat": STEPS, "repeats": repeats, "warmup_runs": 1},
      targets={"ratio": bench.target(ratio, "<=", 1.05)})
  rows = [("optimizer", "ms/step (median)", "compile s"),
          ("jaxpapers.optim.muon", f"{ours_ms:.3f}", f"{ours_compile:.3f}"),
          ("optax.contrib.muon", f"{optax_ms:.3f}", f"{theirs_compile:.3f}"),
          ("ratio", f"{ratio:.3f} (target <= 1.05)", ""),
          ("max |param diff|", f"{diff:.2e}", ""),
          ("same compiled program", str(ours_hlo == theirs_hlo), "")]
  return rows, record


if __name__ == "__main__":
  for row in bench_muon()[0]:
    print(" | ".join(row))
