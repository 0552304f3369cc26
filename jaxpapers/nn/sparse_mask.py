"""Block-mask prediction of SpargeAttention2 (Zhang et al., arXiv 2602.13515, Alg. 1 and Eq. (9)).

Queries and keys are mean-pooled per block (Alg. 1, Sec. 2.2), the pooled attention map
`Pbar = softmax(mean(Q_i) mean(K_j)^T / sqrt(d))` is computed per (batch, head, query block),
and a block mask is chosen per row by one of three rank-based rules (Sec. 4.1):

* Top-k: the `max(1, floor(k * nk))` largest entries (k is a fraction of the key blocks);
* Top-p: the shortest prefix of the sorted row whose cumulative mass reaches `p`, i.e. the
  block that crosses `p` is kept (`top_p_boundary="include"`, the default: SpargeAttention2's
  rule, Sec. 4.1, as the readings of the paper we could consult state it: "the smallest set
  whose cumulative probability is at least p"); SpargeAttn v1 (arXiv 2502.18137,
  `get_block_map_meansim`: `searchsorted(cdf, p, right=True)`) keeps the longest prefix whose
  mass stays <= p, one block fewer in general (`top_p_boundary="exclude"`, an option);
* hybrid (SpargeAttention2, Eq. 9): the union of the two.

Selection is by rank (argsort), not by threshold, so counts are exact under ties. No gradient
flows through the mask (`stop_gradient` on `Pbar`). Layout follows `jax.nn.dot_product_attention`:
q, k are `[batch, seq, heads, dim]`; masks are `[batch, heads, n_q_blocks, n_k_blocks]`.

SpargeAttn v1's self-similarity filter is an option (`keep_dissimilar_blocks`, off in
SpargeAttention2), applied as v1 applies it: key blocks whose tokens are not self-similar are
set to -inf in the pooled logits before the softmax (so they take no Top-k slot and no Top-p
mass), and then every dissimilar key column and every dissimilar query row is kept whole.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

RULES = ("hybrid", "topk", "topp")
TOP_P_BOUNDARIES = ("include", "exclude")


def pool_blocks(x: jax.Array, block: int) -> jax.Array:
  """Mean of each run of `block` tokens: [B, N, H, D] -> [B, H, ceil(N / block), D].

  A partial last block is averaged over the tokens it has (as SpargeAttn's pooling
  kernels do).
  """
  b, n, h, d = x.shape
  nb = -(-n // block)
  pad = nb * block - n
  xf = jnp.pad(x.astype(jnp.float32), ((0, 0), (0, pad), (0, 0), (0, 0)))
  sums = xf.reshape(b, nb, block, h, d).sum(axis=2)
  counts = jnp.minimum(block, n - block * jnp.arange(nb)).astype(jnp.float32)
  return jnp.transpose(sums / counts[None, :, None, None], (0, 2, 1, 3))


@functools.partial(jax.jit, static_argnames=("block_q", "block_k", "scale"))
def block_scores(q: jax.Array, k: jax.Array, *, block_q: int, block_k: int,
                 scale: float | None = None, key_mask: jax.Array | None = None) -> jax.Array:
  """Pooled attention map Pbar [B, H, nq, nk], one distribution per query block (Alg. 1).

  Args:
    q, k: queries and keys [B, N, H, D].
    block_q, block_k: block sizes.
    scale: logit scale (default 1/sqrt(d)).
    key_mask: optional [B, H, nk] bool; False key blocks get logit -inf before the softmax
      (probability 0; SpargeAttn v1's treatment of dissimilar key blocks). A row whose key
      blocks are all masked is returned uniform.
  """
  _check_qk(q, k)
  scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
  qbar = pool_blocks(q, block_q)
  kbar = pool_blocks(k, block_k)
  logits = jnp.einsum("bhid,bhjd->bhij", qbar, kbar) * scale
  if key_mask is not None:
    keep = jnp.broadcast_to(key_mask[..., None, :], logits.shape)
    none_left = ~jnp.any(keep, axis=-1, keepdims=True)
    logits = jnp.where(keep | none_left, jnp.where(none_left, 0.0, logits), -jnp.inf)
  return jax.lax.stop_gradient(jax.nn.softmax(logits, axis=-1))


def topk_count(num_blocks: int, top_k: float) -> int:
  """Blocks kept per row by Top-k: max(1, floor(k * nk)) (our rounding, as thu-ml's codes
  round; the paper gives k as a fraction)."""
  return max(1, int(math.floor(top_k * num_blocks + 1e-9)))


def select_blocks(scores: jax.Array, *, top_k: float | None = None,
                  top_p: float | None = None, top_p_boundary: str = "include") -> jax.Array:
  """Rank-based block selection on each row of `scores` [..., nk] (Sec. 4.1, Eq. (9)).

  Args:
    scores: non-negative row distributions (e.g. `block_scores`).
    top_k: fraction of blocks kept by rank (None: rule off).
    top_p: the Top-p mass (None: rule off).
    top_p_boundary: "include" (default): the shortest sorted prefix whose mass reaches
      `top_p`, the block crossing `top_p` included; "exclude" (SpargeAttn v1): the longest
      prefix whose mass stays <= `top_p`.

  Returns:
    Boolean mask, same shape as `scores`: the union of the enabled rules. Every row keeps at
    least one block.
  """
  if top_k is None and top_p is None:
    raise ValueError("select_blocks needs top_k, top_p or both; got neither")
  if top_k is not None and not 0 <= top_k <= 1:
    raise ValueError(f"top_k={top_k} must be a fraction in [0, 1]")
  if top_p is not None and not 0 <= top_p <= 1:
    raise ValueError(f"top_p={top_p} must be in [0, 1]")
  if top_p_boundary not in TOP_P_BOUNDARIES:
    raise ValueError(f"unknown top_p_boundary {top_p_boundary!r}; choose one of "
                     f"{', '.join(TOP_P_BOUNDARIES)}")
  n_k = None if top_k is None else topk_count(scores.shape[-1], top_k)
  p = jnp.asarray(-1.0 if top_p is None else top_p, jnp.float32)  # -1: Top-p off
  return _select(scores, p, n_k, top_p_boundary == "include")


@functools.partial(jax.jit, static_argnums=(2, 3))
def _select(scores: jax.Array, top_p: jax.Array, n_k: int | None, include: bool) -> jax.Array:
  """Rank-space union of the top `n_k` entries and the Top-p prefix of `top_p`."""
  scores = jax.lax.stop_gradient(scores.astype(jnp.float32))
  nk = scores.shape[-1]
  order = jnp.argsort(-scores, axis=-1, stable=True)
  ranks = jnp.arange(nk)
  keep = ranks == 0  # every row keeps its top block
  if n_k is not None:
    keep = keep | (ranks < n_k)
  ordered = jnp.take_along_axis(scores, order, axis=-1)
  through = jnp.cumsum(ordered, axis=-1)  # mass of the prefix ending at each rank
  if include:  # the mass ranked strictly above the entry is still short of p
    keep = keep | (through - ordered < top_p)  # never true when top_p = -1
  else:  # the prefix through the entry stays within p (v1's searchsorted(cdf, p, right=True))
    keep = keep | (through <= top_p)
  keep = jnp.broadcast_to(keep, scores.shape)
  # Scatter the rank-space decision back to block positions.
  inverse = jnp.argsort(order, axis=-1)
  return jnp.take_along_axis(keep, inverse, axis=-1)


def kept_blocks_bound(num_blocks: int, top_k: float, top_p: float, rule: str = "hybrid") -> int:
  """An upper bound on the blocks any row keeps under `rule` (no self-similarity option).

  Top-k keeps `topk_count` blocks. Top-p keeps at most `ceil(p * nk)`: the `n` largest of a
  row summing to 1 hold at least `n / nk` of its mass, so the prefix reaches `p` by then (one
  block of slack covers float rounding of the cumulative sum). Used as the "xla" block-sparse
  path's gather size inside a jitted step, where the mask's own largest count is not known.
  """
  params = rule_params(rule, top_k, top_p)
  bound = 1
  if params["top_k"] is not None:
    bound = max(bound, topk_count(num_blocks, params["top_k"]))
  if params["top_p"] is not None:
    bound = max(bound, math.ceil(params["top_p"] * num_blocks - 1e-9) + 1)
  return min(num_blocks, bound)


def rule_params(rule: str, top_k: float, top_p: float) -> dict[str, float | None]:
  """The `select_blocks` arguments of a named rule ("hybrid", "topk" or "topp")."""
  if rule not in RULES:
    raise ValueError(f"unknown mask rule {rule!r}; choose one of {', '.join(RULES)}")
  return {"top_k": None if rule == "topp" else top_k, "top_p": None if rule == "topk" else top_p}


def block_self_similarity(x: jax.Array, block: int) -> jax.Array:
  """Mean pairwise cosine similarity of the tokens of each block: [B, N, H, D] -> [B, H, nb].

  SpargeAttn v1's reliability check of mean pooling (arXiv 2502.18137, `get_block_map_meansim`;
  option `keep_dissimilar_blocks`, not part of SpargeAttention2); self-pairs are included and a
  partial last block is averaged over its real tokens (as v1), so a block of identical
  directions scores 1.
  """
  b, n, h, d = x.shape
  nb = -(-n // block)
  unit = x.astype(jnp.float32)
  unit = unit / jnp.maximum(jnp.linalg.norm(unit, axis=-1, keepdims=True), 1e-6)
  unit = jnp.pad(unit, ((0, 0), (0, nb * block - n), (0, 0), (0, 0)))
  sums = unit.reshape(b, nb, block, h, d).sum(axis=2)
  counts = jnp.minimum(block, n - block * jnp.arange(nb)).astype(jnp.float32)
  sim = jnp.sum(sums * sums, axis=-1) / (counts ** 2)[None, :, None]
  return jnp.transpose(sim, (0, 2, 1))


def predict_block_mask(q: jax.Array, k: jax.Array, *, block_q: int, block_k: int,
                       top_k: float = 0.03, top_p: float = 0.2, rule: str = "hybrid",
                       scale: float | None = None, top_p_boundary: str = "include",
                       keep_dissimilar_blocks: bool = False,
                       similarity_threshold: float = 0.1) -> jax.Array:
  """SpargeAttention2's block mask [B, H, ceil(Nq / bq), ceil(Nk / bk)] from q, k [B, N, H, D].

  Args:
    q, k: queries and keys.
    block_q, block_k: block sizes (paper: 128 and 64).
    top_k, top_p: the hybrid rule's k (fraction) and p (paper, Wan2.1-1.3B: 0.03 and 0.2).
    rule: "hybrid" (Eq. 9), "topk" or "topp".
    scale: logit scale of the pooled softmax (default 1/sqrt(d)).
    top_p_boundary: "include" (the block crossing p is kept; default) or "exclude"
      (SpargeAttn v1's rule), see `select_blocks`.
    keep_dissimilar_blocks: SpargeAttn v1's option (off in SpargeAttention2), as v1's
      `get_block_map_meansim` applies it: a block is dissimilar when its self-similarity is
      <= `similarity_threshold`; dissimilar key blocks are masked (-inf) in the pooled
      logits before the softmax, so they take no Top-k slot and no Top-p mass, and then
      every dissimilar key column and every dissimilar query row is kept whole.
    similarity_threshold: see `keep_dissimilar_blocks` (v1's `simthreshd1`, default 0.1).

  Returns:
    Boolean block mask (True = computed); no gradient flows through it.
  """
  params = rule_params(rule, top_k, top_p)
  if not keep_dissimilar_blocks:
    scores = block_scores(q, k, block_q=block_q, block_k=block_k, scale=scale)
    return select_blocks(scores, **params, top_p_boundary=top_p_boundary)
  similar_q = block_self_similarity(q, block_q) > similarity_threshold
  similar_k = block_self_similarity(k, block_k) > similarity_threshold
  scores = block_scores(q, k, block_q=block_q, block_k=block_k, scale=scale, key_mask=similar_k)
  mask = select_blocks(scores, **params, top_p_boundary=top_p_boundary)
  return mask | ~similar_q[..., :, None] | ~similar_k[..., None, :]


def block_sparsity(mask: jax.Array, seq_q: int | None = None, seq_k: int | None = None,
                   block_q: int = 1, block_k: int = 1, axis=None) -> jax.Array:
  """Fraction of skipped attention entries, 1 - mean(mask) weighted by tile area (the
  quantity behind the paper's "95 % sparsity").

  Args:
    mask: boolean block mask [..., nq, nk].
    seq_q, seq_k: token lengths (default: full blocks); partial last blocks weigh less.
    block_q, block_k: block sizes.
    axis: axes to average over (None: all, the paper's global figure).
  """
  nq, nk = mask.shape[-2:]
  seq_q = nq * block_q if seq_q is None else seq_q
  seq_k = nk * block_k if seq_k is None else seq_k
  rows = jnp.minimum(block_q, seq_q - block_q * jnp.arange(nq)).astype(jnp.float32)
  cols = jnp.minimum(block_k, seq_k - block_k * jnp.arange(nk)).astype(jnp.float32)
  area = rows[:, None] * cols[None, :]
  kept = jnp.sum(mask * area, axis=(-2, -1))
  density = kept / (seq_q * seq_k)
  return 1.0 - (jnp.mean(density) if axis is None else jnp.mean(density, axis=axis))


def _check_qk(q: jax.Array, k: jax.Array) -> None:
  if q.ndim != 4 or k.ndim != 4:
    raise ValueError(f"q and k must be [batch, seq, heads, dim]; got {q.shape} and {k.shape}")
  if q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
    raise ValueError(f"q {q.shape} and k {k.shape} must share batch, heads and dim")


def sparge_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, block_q: int, block_k: int,
                     top_k: float = 0.03, top_p: float = 0.2, rule: str = "hybrid",
                     implementation: str = "pallas", interpret: bool | None = None,
                     max_kept_blocks: int | None = None, top_p_boundary: str = "include",
                     keep_dissimilar_blocks: bool = False,
                     similarity_threshold: float = 0.1) -> jax.Array:
  """SpargeAttention2's sparse attention (Alg. 1): predict the block mask from q, k, then run
  block-sparse attention over the kept blocks. Layout [batch, seq, heads, dim]; the mask
  options are `predict_block_mask`'s."""
  from kernels_pallas.block_sparse_attention import ops  # pylint: disable=g-import-not-at-top
  mask = predict_block_mask(q, k, block_q=block_q, block_k=block_k, top_k=top_k, top_p=top_p,
                            rule=rule, top_p_boundary=top_p_boundary,
                            keep_dissimilar_blocks=keep_dissimilar_blocks,
                            similarity_threshold=similarity_threshold)
  return ops.block_sparse_attention(q, k, v, mask, block_q=block_q, block_k=block_k,
                                    implementation=implementation, interpret=interpret,
                                    max_kept_blocks=max_kept_blocks)
