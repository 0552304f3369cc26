"""Top-p boundary and SpargeAttn v1's self-similarity option of `jaxpapers.nn.sparse_mask`.

The references are written here in numpy from the rules' statements: SpargeAttention2's hybrid
(arXiv 2602.13515, Sec. 4.1, Eq. (9)) and SpargeAttn v1's `get_block_map_meansim`
(arXiv 2502.18137; thu-ml/SpargeAttn `spas_sage_attn/utils.py`: -inf on dissimilar key
columns before the pooled softmax, `searchsorted(cdf, p, right=True)` or `int(topk * nk)`
blocks with at least one, then dissimilar rows and columns kept whole). `kept_blocks_bound`
is checked on flat rows (Top-p's worst case) and the "xla" path under it against the dense
reference.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.nn import sparse_mask


def _kept(row, **kw):
  mask = sparse_mask.select_blocks(jnp.asarray(row, jnp.float32), **kw)
  return set(np.nonzero(np.asarray(mask))[0].tolist())


def _reference_rows(scores, top_k, top_p, boundary):
  """Per-row loop: Top-k count max(1, floor(k nk)), Top-p by the cdf of the sorted row."""
  out = np.zeros(scores.shape, bool)
  flat, kept = scores.reshape(-1, scores.shape[-1]), out.reshape(-1, scores.shape[-1])
  nk = scores.shape[-1]
  for row, keep in zip(flat, kept):
    order = np.argsort(-row, kind="stable")
    cdf = np.cumsum(row[order])
    count = 1
    if top_k is not None:
      count = max(count, int(math.floor(top_k * nk + 1e-9)))
    if top_p is not None:
      if boundary == "include":  # shortest prefix reaching p
        count = max(count, int(np.searchsorted(cdf, top_p, side="left")) + 1)
      else:  # v1: longest prefix within p, at least one block
        count = max(count, int(np.searchsorted(cdf, top_p, side="right")))
    keep[order[:min(count, nk)]] = True
  return out


def test_top_p_boundary_on_hand_made_rows():
  uniform = np.full(32, 1 / 32)
  assert len(_kept(uniform, top_p=0.2)) == 7  # 6.4 blocks of mass: the 7th crosses p
  assert len(_kept(uniform, top_p=0.2, top_p_boundary="exclude")) == 6  # v1 stops before it
  sink = np.array([0.6, 0.2, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01])
  assert _kept(sink, top_p=0.85) == {0, 1, 2}  # 0.6 + 0.2 < 0.85 <= 0.9
  assert _kept(sink, top_p=0.85, top_p_boundary="exclude") == {0, 1}
  assert _kept(sink, top_p=0.55, top_p_boundary="exclude") == {0}  # the sink alone exceeds p
  assert _kept(sink, top_k=0.25, top_p=0.85, top_p_boundary="exclude") == {0, 1}
  with pytest.raises(ValueError, match="top_p_boundary"):
    sparse_mask.select_blocks(jnp.asarray(sink), top_p=0.5, top_p_boundary="crossing")


@pytest.mark.parametrize("boundary", sparse_mask.TOP_P_BOUNDARIES)
def test_select_blocks_matches_a_row_loop(boundary):
  rng = np.random.default_rng(0)
  logits = 2.5 * rng.standard_normal((2, 3, 5, 40))
  scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  for top_k, top_p in ((0.05, 0.2), (None, 0.5), (0.1, None), (0.2, 0.7)):
    got = sparse_mask.select_blocks(jnp.asarray(scores, jnp.float32), top_k=top_k, top_p=top_p,
                                    top_p_boundary=boundary)
    np.testing.assert_array_equal(np.asarray(got),
                                  _reference_rows(scores.astype(np.float32), top_k, top_p, boundary))


def _v1_reference(q, k, block_q, block_k, top_k, top_p, threshold, boundary="include"):
  """SpargeAttn v1's block map (numpy, [N, D], one head): v1's own modes are Top-p alone with
  `boundary="exclude"` (`cdfthreshd`) or Top-k alone (`topk`); both set gives the hybrid."""
  def pool_and_similarity(x, block):
    blocks = [x[s:s + block] for s in range(0, len(x), block)]
    pooled = np.stack([b.mean(0) for b in blocks])
    unit = [b / np.linalg.norm(b, axis=-1, keepdims=True) for b in blocks]
    similarity = np.array([(u @ u.T).sum() / len(u) ** 2 for u in unit])
    return pooled, similarity > threshold
  qbar, similar_q = pool_and_similarity(q, block_q)
  kbar, similar_k = pool_and_similarity(k, block_k)
  logits = qbar @ kbar.T / math.sqrt(q.shape[-1])
  logits[:, ~similar_k] = -np.inf
  scores = np.exp(logits - logits.max(-1, keepdims=True))
  scores /= scores.sum(-1, keepdims=True)
  mask = _reference_rows(scores, top_k, top_p, boundary)
  mask[:, ~similar_k] = True
  mask[~similar_q, :] = True
  return mask, scores


def _v1_inputs():
  """Key block 2: tokens of opposite signs along the queries' direction (mean strongly aligned
  with the queries, tokens not self-similar); query block 3: random directions."""
  rng = np.random.default_rng(3)
  n, d, bq, bk = 64, 8, 16, 8
  direction = rng.standard_normal(d)
  q = direction + 0.3 * rng.standard_normal((n, d))
  k = rng.standard_normal((n, d)) * 0.2 + rng.standard_normal((n // bk, 1, d)).repeat(bk, 0).reshape(n, d)
  # Key block 2: tokens of opposite signs along `direction` (mean strongly aligned with the
  # queries, tokens not self-similar); query block 3: random directions.
  k[16:24] = np.where(np.arange(8)[:, None] % 2 == 0, 8.0, -4.0) * direction[None] \
      + 0.1 * rng.standard_normal((8, d))
  q[48:64] = rng.standard_normal((16, d))
  return q, k, bq, bk


@pytest.mark.parametrize("rule,boundary", [("topp", "exclude"), ("topk", "include"),
                                           ("topp", "include"), ("hybrid", "exclude")])
def test_keep_dissimilar_blocks_matches_v1_in_each_mode(rule, boundary):
  """v1's own modes (Top-p with its boundary, Top-k) and the other combinations."""
  q, k, bq, bk = _v1_inputs()
  top_k, top_p = (0.25, 0.5)
  params = sparse_mask.rule_params(rule, top_k, top_p)
  expected, _ = _v1_reference(q, k, bq, bk, params["top_k"], params["top_p"], 0.3, boundary)
  qj, kj = (jnp.asarray(x[None, :, None], jnp.float32) for x in (q, k))
  got = sparse_mask.predict_block_mask(qj, kj, block_q=bq, block_k=bk, top_k=top_k,
                                       top_p=top_p, rule=rule, top_p_boundary=boundary,
                                       keep_dissimilar_blocks=True, similarity_threshold=0.3)
  np.testing.assert_array_equal(np.asarray(got)[0, 0], expected)
  assert 0 < expected.mean() < 1  # neither empty nor everything


def test_keep_dissimilar_blocks_follows_spargeattn_v1():
  """A dissimilar key block with the largest pooled logit takes no Top-k slot (v1 masks it
  before the softmax) but its column is kept whole; a dissimilar query block keeps its row."""
  q, k, bq, bk = _v1_inputs()
  threshold = 0.3
  expected, scores = _v1_reference(q, k, bq, bk, 0.125, 0.3, threshold)
  qj, kj = (jnp.asarray(x[None, :, None], jnp.float32) for x in (q, k))
  similarity = np.asarray(sparse_mask.block_self_similarity(kj, bk))[0, 0]
  similar = similarity > threshold
  assert similarity[2] <= threshold and similar[[0, 1, 3, 4, 5, 6, 7]].all()
  got = sparse_mask.predict_block_mask(qj, kj, block_q=bq, block_k=bk, top_k=0.125, top_p=0.3,
                                       keep_dissimilar_blocks=True,
                                       similarity_threshold=threshold)
  np.testing.assert_array_equal(np.asarray(got)[0, 0], expected)
  masked = sparse_mask.block_scores(qj, kj, block_q=bq, block_k=bk,
                                    key_mask=jnp.asarray(similar)[None, None])
  np.testing.assert_allclose(np.asarray(masked)[0, 0], scores, rtol=1e-5, atol=1e-7)
  assert expected[3].all()  # the dissimilar query block keeps its row
  # Similar query rows: unmasked, block 2 ranks first and would fill the one Top-k slot and the
  # Top-p mass alone; under v1's rule it is kept as a column and the slot goes to the best
  # similar block.
  plain = np.asarray(sparse_mask.block_scores(qj, kj, block_q=bq, block_k=bk))[0, 0]
  old_rule = np.asarray(sparse_mask.select_blocks(jnp.asarray(plain), top_k=0.125, top_p=0.3))
  for row in range(3):
    assert plain[row].argmax() == 2 and old_rule[row].sum() == 1
    assert expected[row, 2] and expected[row, scores[row].argmax()] and expected[row].sum() >= 2


def test_all_keys_dissimilar_keeps_every_block_without_nans():
  rng = np.random.default_rng(1)
  q = jnp.asarray(rng.standard_normal((1, 16, 1, 4)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((1, 16, 1, 4)), jnp.float32)
  scores = sparse_mask.block_scores(q, k, block_q=4, block_k=4,
                                    key_mask=jnp.zeros((1, 1, 4), bool))
  np.testing.assert_allclose(np.asarray(scores), 0.25)
  mask = sparse_mask.predict_block_mask(q, k, block_q=4, block_k=4, top_k=0.25, top_p=0.1,
                                        keep_dissimilar_blocks=True, similarity_threshold=1.1)
  assert bool(mask.all())


@pytest.mark.parametrize("boundary", sparse_mask.TOP_P_BOUNDARIES)
def test_kept_blocks_bound_holds_on_adversarial_rows(boundary):
  """No row keeps more than the bound: flat rows (the Top-p worst case) and random ones."""
  nk = 32
  rng = np.random.default_rng(4)
  flat = np.full((4, nk), 1 / nk)
  peaked = rng.dirichlet(np.full(nk, 0.3), size=64)
  near_flat = rng.dirichlet(np.full(nk, 200.0), size=64)
  rows = jnp.asarray(np.concatenate([flat, peaked, near_flat]), jnp.float32)
  for top_k, top_p in ((0.05, 0.2), (0.0, 0.25), (0.3, 0.1), (0.05, 1.0)):
    bound = sparse_mask.kept_blocks_bound(nk, top_k, top_p)
    counts = np.asarray(sparse_mask.select_blocks(rows, top_k=top_k, top_p=top_p,
                                                  top_p_boundary=boundary)).sum(-1)
    assert counts.max() <= bound
    assert bound <= max(sparse_mask.topk_count(nk, top_k), math.ceil(top_p * nk) + 1)
  assert sparse_mask.kept_blocks_bound(nk, 0.05, 0.2) == 8  # ceil(6.4) + 1 slack
  assert sparse_mask.kept_blocks_bound(nk, 0.05, 0.2, rule="topk") == 1


def test_xla_path_with_the_bound_equals_the_dense_reference_under_jit():
  """Inside jit the mask is traced; gathering `kept_blocks_bound` blocks computes the same
  attention (and gradient) as the dense masked reference."""
  rng = np.random.default_rng(5)
  q, k, v = (jnp.asarray(rng.standard_normal((2, 96, 2, 8)), jnp.float32) for _ in range(3))
  kw = dict(block_q=16, block_k=8, top_k=0.05, top_p=0.3)
  bound = sparse_mask.kept_blocks_bound(12, 0.05, 0.3)
  assert bound < 12

  def loss(impl, kept):
    def f(q):
      return jnp.sum(jnp.sin(sparse_mask.sparge_attention(q, k, v, **kw, implementation=impl,
                                                          max_kept_blocks=kept)))
    return jax.jit(jax.value_and_grad(f))(q)

  (ref, ref_grad), (got, grad) = loss("reference", None), loss("xla", bound)
  np.testing.assert_allclose(got, ref, rtol=1e-5)
  np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5)
