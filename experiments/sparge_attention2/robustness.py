"""Experiment A of SpargeAttention2 (arXiv 2602.13515): mask robustness, no training.

Our CPU-scale protocol (see experiments/sparge_attention2/README.md), after the paper's synthetic
study (Sec. 3.2, Table 1).

Synthetic "video" attention heads in three regimes on a T x H x W token grid (frame-major):
"uniform" (near-flat rows: Top-k keeps too little mass), "sink" (one key block draws a large
pooled mass: Top-p stops at the sink and drops informative blocks) and "local" (smooth local
structure). For each head the exact attention output O is compared with the output under the
hybrid mask at (k, p) and under Top-k-only and Top-p-only masks whose parameters are calibrated
to the hybrid's global sparsity. Error: relative L1, sum|O_mask - O| / sum|O|, per head,
averaged per regime.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.nn import sparse_mask

from .config import MaskStudyConfig

REGIMES = ("uniform", "sink", "local")


def _smooth(rng: np.random.Generator, grid: tuple[int, int, int], channels: int) -> np.ndarray:
  """Box-blurred normal field (half-widths 1, 3, 3 along T, H, W, wrap-around), unit std."""
  x = rng.standard_normal((*grid, channels))
  for axis, half in enumerate((1, 3, 3)):
    x = sum(np.roll(x, s, axis=axis) for s in range(-half, half + 1)) / (2 * half + 1)
  x = x / x.std()
  return x.reshape(-1, channels)


def make_heads(setup: MaskStudyConfig) -> dict[str, list[tuple[np.ndarray, ...]]]:
  """(q, k, v) [N, d] float32 of every head, by regime (the study's generator)."""
  rng = np.random.default_rng(setup.seed)
  n, d = int(np.prod(setup.grid)), setup.dim
  heads = {}
  for regime in REGIMES:
    heads[regime] = []
    for _ in range(setup.heads_per_regime):
      base = _smooth(rng, setup.grid, d)
      q = 1.5 * (base + 0.5 * rng.standard_normal((n, d)))
      k = base + 0.5 * rng.standard_normal((n, d))
      v = _smooth(rng, setup.grid, d) + 0.3 * rng.standard_normal((n, d)) + rng.standard_normal(d)
      if regime == "uniform":
        q = 0.1 * q
      elif regime == "sink":
        g = rng.standard_normal(d)
        g /= np.linalg.norm(g)
        q = q + 2.5 * g
        k[:setup.block_k] += 14.4 * g  # the first key block becomes a sink
      heads[regime].append(tuple(a.astype(np.float32) for a in (q, k, v)))
  return heads


@jax.jit
def _masked_error(q, k, v, token_mask):
  """Relative L1 error of attention restricted to token_mask [N, N] against full attention."""
  logits = (q @ k.T) / math.sqrt(q.shape[-1])
  p = jnp.exp(logits - logits.max(-1, keepdims=True))
  exact = (p @ v) / p.sum(-1, keepdims=True)
  pm = p * token_mask
  approx = (pm @ v) / pm.sum(-1, keepdims=True)
  return jnp.sum(jnp.abs(approx - exact)) / jnp.sum(jnp.abs(exact))


def _scores(heads, setup: MaskStudyConfig) -> jax.Array:
  """Pooled maps Pbar [1, heads, nq, nk] of all heads, in REGIMES order."""
  flat = [h for regime in REGIMES for h in heads[regime]]
  q = jnp.stack([h[0] for h in flat], axis=1)[None]  # [1, N, heads, d]
  k = jnp.stack([h[1] for h in flat], axis=1)[None]
  return sparse_mask.block_scores(q, k, block_q=setup.block_q, block_k=setup.block_k)


def _sparsity(mask) -> float:
  return float(sparse_mask.block_sparsity(mask))


def calibrate_topk(scores, target: float) -> tuple[float, float]:
  """Top-k fraction whose (integer per-row) count gives the sparsity closest to `target`."""
  nk = scores.shape[-1]
  best = min(range(1, nk + 1), key=lambda c: abs((1 - c / nk) - target))
  k = (best + 0.5) / nk
  return k, _sparsity(sparse_mask.select_blocks(scores, top_k=k))


def calibrate_topp(scores, target: float, iters: int = 40,
                   boundary: str = "include") -> tuple[float, float]:
  """Top-p mass whose global sparsity matches `target` (bisection; sparsity falls as p rises)."""
  def sparsity(p):
    return _sparsity(sparse_mask.select_blocks(scores, top_p=p, top_p_boundary=boundary))
  lo, hi = 0.0, 1.0
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    if sparsity(mid) > target:
      lo = mid
    else:
      hi = mid
  p = min((abs(sparsity(p) - target), p) for p in (lo, hi))[1]
  return p, sparsity(p)


def run(setup: MaskStudyConfig) -> dict:
  """Errors per rule and regime, sparsities and calibrated parameters.

  `boundary_sparsity` also gives the hybrid's global sparsity at the same (k, p) under both
  Top-p boundaries ("include": the paper's rule; "exclude": SpargeAttn v1's).
  """
  heads = make_heads(setup)
  scores = _scores(heads, setup)
  boundary = setup.top_p_boundary

  def hybrid_mask(b):
    return sparse_mask.select_blocks(scores, top_k=setup.top_k, top_p=setup.top_p,
                                     top_p_boundary=b)
  hybrid = hybrid_mask(boundary)
  target = _sparsity(hybrid)
  k_cal, k_sparsity = calibrate_topk(scores, target)
  p_cal, p_sparsity = calibrate_topp(scores, target, boundary=boundary)
  masks = {"hybrid": hybrid, "topk": sparse_mask.select_blocks(scores, top_k=k_cal),
           "topp": sparse_mask.select_blocks(scores, top_p=p_cal, top_p_boundary=boundary)}
  n = int(np.prod(setup.grid))
  errors = {rule: {} for rule in masks}
  for rule, mask in masks.items():
    token = jnp.repeat(jnp.repeat(mask[0], setup.block_q, axis=-2), setup.block_k, axis=-1)
    index = 0
    for regime in REGIMES:
      values = []
      for q, k, v in heads[regime]:
        values.append(float(_masked_error(q, k, v, token[index, :n, :n])))
        index += 1
      errors[rule][regime] = float(np.mean(values))
  worst = {rule: max(e.values()) for rule, e in errors.items()}
  return {
      "errors": errors, "worst": worst,
      "sparsity": {"hybrid": target, "topk": k_sparsity, "topp": p_sparsity},
      "boundary_sparsity": {b: target if b == boundary else _sparsity(hybrid_mask(b))
                            for b in sparse_mask.TOP_P_BOUNDARIES},
      "calibrated": {"topk_fraction": k_cal, "topp_mass": p_cal},
      "setup": dataclasses.asdict(setup),
  }
