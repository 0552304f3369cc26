"""`jaxpapers bench crispedit`: cost of the K-FAC projector for a 1024x4096 Dense layer (arXiv 2602.15823).

Measured on the default device, each after a warm-up call:
  * factor collection (A 1024², G 4096²) on a two-layer MLP `x[1024] -> W[1024, 4096] -> tanh ->
    head[4096, 10]`, per batch of tokens; and, when kfac-jax is importable, kfac-jax's
    `BlockDiagonalCurvature` estimator (`fisher_empirical`, against our empirical labels) on the
    same MLP and batches, with the relative difference of its factors from ours after the best
    scalar (its G is ours / N); kfac-jax 0.0.8 runs on this JAX through `kfac_jax_compat`;
  * eigendecomposition of A and G plus the energy rule (`kfac_eigenbasis`);
  * one matrix-free projection (`kfac_project`);
  * the dense projector `(U_A ⊗ U_G) diag(K) (U_A ⊗ U_G)ᵀ` on small layers where it fits, and the
    memory it would need at 1024x4096.
Memory figures are XLA's compiled-buffer sizes (arguments + outputs + temporaries) of each jitted
function, an upper bound of its peak device memory. Times are the fastest of a few repeats after
compilation and one warm-up call (`jaxpapers.core.bench.time_fn`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers import optim
from jaxpapers.core import bench
from jaxpapers.optim._kfac_factors import make_factor_step

D_IN, D_OUT, CLASSES = 1024, 4096, 10
TOKENS, BATCHES = 2048, 4
SMALL_SHAPES = ((16, 32), (32, 64))
MAX_KFAC_JAX_DIFFERENCE = 1e-5  # relative, after the best scalar (measured about 6e-8)
# Keyword arguments for a quick run of the same logic (tests/core/test_bench.py runs it).
SMOKE_KWARGS = {"bench_crispedit": {"d_in": 16, "d_out": 32, "tokens": 32, "small_shapes": ((4, 8),)}}


class _BenchMLP(nnx.Module):

  def __init__(self, d_in: int, d_out: int, rngs: nnx.Rngs):
    self.layer = nnx.Linear(d_in, d_out, use_bias=False, rngs=rngs)
    self.head = nnx.Linear(d_out, CLASSES, use_bias=False, rngs=rngs)

  def __call__(self, x):
    return self.head(jnp.tanh(self.layer(x)))


def _timed(fn, *args, repeats: int = 3) -> float:
  """Fastest of `repeats` calls after compilation and one warm-up call, in seconds."""
  return bench.time_fn(fn, *args, warmup=1, repeats=repeats).min


def _memory_mb(fn, *args) -> float | None:
  try:
    stats = fn.lower(*args).compile().memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if stats is None:
    return None
  total = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
  return total / 2**20


def _batches(d_in: int, tokens: int):
  rng = np.random.default_rng(0)
  return [{"x": rng.normal(size=(tokens, d_in)).astype(np.float32),
           "targets": rng.integers(0, CLASSES, tokens).astype(np.int32)} for _ in range(BATCHES)]


def _kfac_jax(model: _BenchMLP, batches, ours: optim.KroneckerFactors) -> dict:
  """kfac-jax's estimator on the same MLP and batches, if it imports.

  Like with like: only `W` is a kfac-jax parameter (registered with `register_dense`, the head is
  a constant, as in our collector, which also backpropagates through the head), labels are the
  batch's targets (`fisher_empirical` against our `label_mode="empirical"`), and every batch gets
  weight 1 (`ema_old = ema_new = 1`, kfac-jax's factors are then the mean over batches, like ours).
  Normalisation: A is `Σ a aᵀ / N` in both; kfac-jax's `fisher_empirical` divides each gradient by
  `√N` before its `/ N`, so its G is ours divided by N (the fitted G scale is N = TOKENS).
  """
  try:
    import kfac_jax  # pylint: disable=g-import-not-at-top

    from . import kfac_jax_compat  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-except
    return {"available": False, "reason": f"{type(e).__name__}: {e}"[:200]}
  patched = kfac_jax_compat.patch_kfac_jax()
  head = model.head.kernel[...]
  update, state, factors = kfac_jax_compat.dense_layer_curvature(
      model.layer.kernel[...], lambda y: jnp.tanh(y) @ head, batches[0], "fisher_empirical")

  try:
    seconds = _timed(update, state, batches[0])
    for batch in batches:
      state = update(state, batch)
  except Exception as e:  # pylint: disable=broad-except
    return {"available": False, "version": kfac_jax.__version__, "compat_patch": patched,
            "reason": f"kfac-jax {kfac_jax.__version__} failed on jax {jax.__version__}: "
                      f"{type(e).__name__}: {e}"[:300]}
  a, g = factors(state)

  def rel(ref, other):
    ref = np.asarray(ref, np.float64)
    scale = np.sum(ref * other) / np.sum(other * other)
    return float(np.linalg.norm(ref - scale * other) / np.linalg.norm(ref)), float(scale)

  a_err, a_scale = rel(ours.a, a)
  g_err, g_scale = rel(ours.g, g)
  tokens = batches[0]["x"].shape[0]
  return {"available": True, "version": kfac_jax.__version__, "compat_patch": patched,
          "estimation_mode": "fisher_empirical", "seconds_per_batch": seconds,
          "memory_mb": _memory_mb(update, state, batches[0]),
          "a_relative_difference": a_err, "a_scale": a_scale,
          "g_relative_difference": g_err, "g_scale": g_scale,
          "g_relative_difference_at_scale_n": float(
              np.linalg.norm(np.asarray(ours.g, np.float64) - tokens * g)
              / np.linalg.norm(np.asarray(ours.g, np.float64)))}


def _dense_vs_free(d_in: int, d_out: int) -> dict:
  rng = np.random.default_rng(1)
  xa, xg = rng.normal(size=(d_in, 2 * d_in)), rng.normal(size=(d_out, 2 * d_out))
  factors = optim.KroneckerFactors(jnp.asarray(xa @ xa.T / d_in, jnp.float32),
                                   jnp.asarray(xg @ xg.T / d_out, jnp.float32))
  basis = optim.kfac_eigenbasis(factors, 0.9)
  big = jnp.kron(basis.u_a, basis.u_g)
  dense = (big * basis.keep.reshape(-1)) @ big.T
  x = jnp.asarray(rng.normal(size=(d_in, d_out)), jnp.float32)
  free_fn = jax.jit(optim.kfac_project)
  dense_fn = jax.jit(lambda p, v: (p @ v.reshape(-1)).reshape(v.shape))
  error = float(jnp.max(jnp.abs(free_fn(x, basis) - dense_fn(dense, x))))
  return {"shape": [d_in, d_out], "matrix_free_seconds": _timed(free_fn, x, basis),
          "dense_seconds": _timed(dense_fn, dense, x),
          "matrix_free_memory_mb": _memory_mb(free_fn, x, basis),
          "dense_memory_mb": _memory_mb(dense_fn, dense, x), "max_abs_difference": error}


def bench_crispedit(d_in: int = D_IN, d_out: int = D_OUT, tokens: int = TOKENS,
                    small_shapes: tuple[tuple[int, int], ...] = SMALL_SHAPES
                    ) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
  """The benchmark: (table rows, JSON record); smaller sizes give a quick run of the same logic."""
  model = _BenchMLP(d_in, d_out, nnx.Rngs(0))
  batches = _batches(d_in, tokens)
  step = make_factor_step(model, [("layer",)], lambda m, b: m(b["x"]), "empirical")
  key = jax.random.key(0)
  collect_seconds = _timed(step, batches[0], key)
  collect_memory = _memory_mb(step, batches[0], key)
  factors, _ = optim.collect_kfac_factors(model, [("layer",)], batches, lambda m, b: m(b["x"]),
                                          label_mode="empirical")
  ours = factors["layer"]
  eig = jax.jit(lambda f: optim.kfac_eigenbasis(f, 0.9))
  eig_seconds = _timed(eig, ours, repeats=1)
  eig_memory = _memory_mb(eig, ours)
  basis = eig(ours)
  x = jnp.asarray(np.random.default_rng(2).normal(size=(d_in, d_out)), jnp.float32)
  project = jax.jit(optim.kfac_project)
  project_seconds = _timed(project, x, basis, repeats=10)
  project_memory = _memory_mb(project, x, basis)
  dense_bytes = 4.0 * (d_in * d_out) ** 2
  small = [_dense_vs_free(*shape) for shape in small_shapes]
  kfac_jax_record = _kfac_jax(model, batches, ours)
  results = {
      "collect": {"seconds_per_batch": collect_seconds, "memory_mb": collect_memory},
      "eigendecomposition": {"seconds": eig_seconds, "memory_mb": eig_memory,
                             "num_removed": int(basis.num_removed),
                             "removed_fraction": int(basis.num_removed) / (d_in * d_out)},
      "projection": {"matrix_free_seconds": project_seconds, "matrix_free_memory_mb": project_memory,
                     "dense_projector_bytes": dense_bytes,
                     "dense_fits": False},
      "dense_vs_matrix_free_small": small,
      "kfac_jax": kfac_jax_record,
  }
  record = bench.bench_record(
      "crispedit", results,
      description="K-FAC projector cost for a Dense layer: factor collection, eigendecomposition, "
                  "matrix-free vs dense projection; kfac-jax's estimator as a cross-check",
      config={"layer": [d_in, d_out], "tokens_per_batch": tokens, "batches": BATCHES,
              "energy": 0.9, "statistic": "fastest repeat after one warm-up call"},
      targets={f"kfac_jax_{f}_relative_difference": bench.target(
          kfac_jax_record.get(f"{f}_relative_difference"), "<=", MAX_KFAC_JAX_DIFFERENCE)
               for f in ("a", "g")})
  fmt = lambda v: "n/a" if v is None else f"{v:.1f}"
  rows = [("what", "time", "XLA memory (MiB)"),
          (f"collect A, G ({tokens} tokens)", f"{collect_seconds * 1e3:.1f} ms", fmt(collect_memory)),
          ("eigh A, G + energy rule", f"{eig_seconds:.2f} s", fmt(eig_memory)),
          ("project (matrix-free)", f"{project_seconds * 1e3:.2f} ms", fmt(project_memory)),
          ("project (dense)", "does not fit", f"{dense_bytes / 2**20:.3g} (projector alone)")]
  for s in small:
    rows.append((f"{s['shape'][0]}x{s['shape'][1]}: free / dense",
                 f"{s['matrix_free_seconds'] * 1e6:.0f} / {s['dense_seconds'] * 1e6:.0f} us",
                 f"{fmt(s['matrix_free_memory_mb'])} / {fmt(s['dense_memory_mb'])}"))
  if kfac_jax_record["available"]:
    rows.append((f"kfac-jax {kfac_jax_record['version']} estimator ({tokens} tokens)",
                 f"{kfac_jax_record['seconds_per_batch'] * 1e3:.1f} ms", fmt(kfac_jax_record["memory_mb"])))
    rows.append(("kfac-jax vs ours (rel. diff after scale)",
                 f"A {kfac_jax_record['a_relative_difference']:.1e}, G {kfac_jax_record['g_relative_difference']:.1e}",
                 f"scales A {kfac_jax_record['a_scale']:.4g}, G {kfac_jax_record['g_scale']:.4g}"))
  else:
    rows.append(("kfac-jax", "not run", kfac_jax_record["reason"][:60]))
  return rows, record
