"""XLA path of block-sparse attention: gather the kept key blocks (arXiv 2602.13515, Alg. 1).

For each (batch, head, query block) the first `max_kept` entries of its kept-block list are
gathered from K and V, and one softmax runs over the gathered keys (invalid list entries and
keys past `kv_len` masked). Work is proportional to `max_kept / nk`, so with a concrete mask (or
a known bound) it is fast on CPU; differentiable by autodiff (the gather's transpose is a
scatter-add).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def forward(q, k, v, lut, cnt, block_mask, *, block_q: int, block_k: int, kv_len: int | None,
            scale: float, max_kept: int) -> jax.Array:
  """Block-sparse attention on padded inputs.

  Args:
    q: [B, nq*bq, H, D]; k, v: [B, nk*bk, H, D].
    lut: int32 [B, H, nq, nk], kept key blocks first; cnt: int32 [B, H, nq] valid entries.
    block_mask: bool [B, H, nq, nk]; used instead of the lists when every block is gathered
      (then K and V are read in place, not copied per query block).
    kv_len: real key count (None: keys fill the blocks).
    max_kept: how many list entries are gathered per query block (>= the largest count, else
      the surplus blocks of a row are dropped).

  Returns:
    [B, nq*bq, H, D] in q's dtype.
  """
  b, seq_q, h, d = q.shape
  nq, nk = seq_q // block_q, k.shape[1] // block_k
  qb = q.reshape(b, nq, block_q, h, d).transpose(0, 3, 1, 2, 4)  # [B, H, nq, bq, D]
  kb = k.reshape(b, nk, block_k, h, d).transpose(0, 3, 1, 2, 4)  # [B, H, nk, bk, D]
  vb = v.reshape(b, nk, block_k, h, d).transpose(0, 3, 1, 2, 4)
  if max_kept >= nk:  # every block: no gather, the mask itself says what counts
    idx = jnp.broadcast_to(jnp.arange(nk, dtype=jnp.int32), lut.shape)
    kg, vg, kv = kb, vb, "bhmkd"  # [B, H, nk, bk, D], shared by all query blocks
    valid = block_mask[..., None]
  else:
    idx = lut[..., :max_kept]  # [B, H, nq, M]
    take = jax.vmap(jax.vmap(lambda blocks, rows: blocks[rows]))
    kg, vg, kv = take(kb, idx), take(vb, idx), "bhimkd"  # [B, H, nq, M, bk, D]
    valid = (jnp.arange(max_kept) < cnt[..., None])[..., None]  # [B, H, nq, M, 1]
  logits = jnp.einsum(f"bhiqd,{kv}->bhiqmk", qb, kg,
                      preferred_element_type=jnp.float32) * scale
  if kv_len is not None:
    cols = idx[..., None] * block_k + jnp.arange(block_k)
    valid = valid & (cols < kv_len)
  valid = valid[:, :, :, None]  # [B, H, nq, 1, M, bk]
  masked = jnp.where(valid, logits, -jnp.inf)
  row_max = jnp.max(masked, axis=(-2, -1), keepdims=True)
  row_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
  weights = jnp.where(valid, jnp.exp(logits - row_max), 0.0)
  total = jnp.sum(weights, axis=(-2, -1), keepdims=True)
  probs = weights / jnp.where(total > 0, total, 1.0)
  out = jnp.einsum(f"bhiqmk,{kv}->bhiqd", probs.astype(v.dtype), vg,
                   preferred_element_type=jnp.float32)
  return out.transpose(0, 2, 3, 1, 4).reshape(b, seq_q, h, d).astype(q.dtype)
