"""Unit-level checks of the CI protocol as claims (SpargeAttention2, arXiv 2602.13515).

Our CPU-scale protocol, see experiments/sparge_attention2/README.md.

* Mask rows: a uniform row of 32 blocks at (k, p) = (0.05, 0.2) keeps 1 (Top-k),
  7 (Top-p) and 7 (hybrid) blocks; the sink row [0.6, 0.2, 0.1, ...] at p = 0.55, k = 0.25 keeps
  {0} (Top-p), {0, 1} (Top-k), {0, 1} (hybrid).
* Kernel: the Pallas block-sparse kernel (interpret mode on CPU) against the dense
  masked reference, B = 1, H = 2, N = 512, d = 64, bq = 128, bkv = 64, a random mask with at
  least one block per row: forward and custom-VJP gradients; the all-ones mask against
  `jax.nn.dot_product_attention`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.core import report
from jaxpapers.nn import sparse_mask
from kernels_pallas.block_sparse_attention import ops, reference


def _kept(row, **kw) -> set[int]:
  mask = sparse_mask.select_blocks(jnp.asarray(row, jnp.float32), **kw)
  return set(np.nonzero(np.asarray(mask))[0].tolist())


def mask_row_claims() -> list[report.Claim]:
  uniform = np.full(32, 1 / 32)
  sink = np.array([0.6, 0.2, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01])
  checks = [
      len(_kept(uniform, top_k=0.05)) == 1,
      len(_kept(uniform, top_p=0.2)) == 7,
      len(_kept(uniform, top_k=0.05, top_p=0.2)) == 7,
      _kept(sink, top_p=0.55) == {0},
      _kept(sink, top_k=0.25) == {0, 1},
      _kept(sink, top_k=0.25, top_p=0.55) == {0, 1},
  ]
  return [report.at_most("mask_rows", "hand-made rows of the CI protocol (uniform: 1 / 7 / 7 "
                         "blocks; sink: {0} / {0,1} / {0,1}), mismatches", 6 - sum(checks), 0)]


def kernel_claims(seed: int = 0) -> list[report.Claim]:
  b, n, h, d, bq, bk = 1, 512, 2, 64, 128, 64
  rng = np.random.default_rng(seed)
  q, k, v, w = (jnp.asarray(rng.normal(size=(b, n, h, d)), jnp.float32) for _ in range(4))
  mask = rng.random((b, h, n // bq, n // bk)) < 0.3
  mask[..., 0] |= ~mask.any(-1)
  mask = jnp.asarray(mask)

  # The mask is an argument, so the all-ones check below reuses the compiled Pallas program.
  def loss(impl):
    def f(q, k, v, mask):
      if impl == "reference":
        out = reference.block_sparse_attention_reference(q, k, v, mask, block_q=bq, block_k=bk)
      else:
        out = ops.block_sparse_attention(q, k, v, mask, block_q=bq, block_k=bk,
                                         implementation=impl, interpret=True)
      return jnp.sum(w * out), out
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

  pallas = loss("pallas")
  (_, out), grads = pallas(q, k, v, mask)
  (_, ref), ref_grads = loss("reference")(q, k, v, mask)
  fwd_err = float(jnp.max(jnp.abs(out - ref)))
  grad_err = max(float(jnp.max(jnp.abs(g - r))) for g, r in zip(grads, ref_grads))
  dense = jax.nn.dot_product_attention(q, k, v)
  (_, full), _ = pallas(q, k, v, jnp.ones_like(mask))
  ones_err = float(jnp.max(jnp.abs(full - dense)))
  return [
      report.less_than("kernel_forward", "Pallas kernel (interpret) vs dense masked reference, "
                       "max |dO|, N=512, H=2, d=64, 128x64 blocks", fwd_err, 1e-5),
      report.less_than("kernel_gradients", "custom-VJP gradients dq, dk, dv vs reference, max "
                       "abs difference", grad_err, 1e-4),
      report.less_than("kernel_all_ones_vs_dense", "all-ones mask vs jax.nn.dot_product_attention,"
                       " max abs difference", ones_err, 1e-5),
  ]
