"""SpargeAttention2's block-mask predictor (arXiv 2602.13515, Alg. 1, Eq. (9))."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.nn import sparse_mask


def _kept(row, **kw):
  return set(np.nonzero(np.asarray(sparse_mask.select_blocks(jnp.asarray(row), **kw)))[0].tolist())


def test_uniform_row_counts():
  row = np.full(32, 1 / 32, np.float32)
  assert len(_kept(row, top_k=0.05)) == 1  # floor(1.6)
  assert len(_kept(row, top_p=0.2)) == 7  # 0.2 / (1/32) = 6.4 -> 7
  assert len(_kept(row, top_k=0.05, top_p=0.2)) == 7


def test_sink_row():
  row = np.array([0.6, 0.2, 0.1, 0.05, 0.02, 0.01, 0.01, 0.01], np.float32)
  assert _kept(row, top_p=0.55) == {0}
  assert _kept(row, top_k=0.25) == {0, 1}
  assert _kept(row, top_k=0.25, top_p=0.55) == {0, 1}
  assert _kept(row[::-1].copy(), top_k=0.25, top_p=0.55) == {7, 6}


def test_hybrid_is_union_and_every_row_keeps_a_block():
  scores = jax.nn.softmax(3 * jax.random.normal(jax.random.key(0), (2, 3, 16, 24)), -1)
  topk = sparse_mask.select_blocks(scores, top_k=0.1)
  topp = sparse_mask.select_blocks(scores, top_p=0.5)
  hybrid = sparse_mask.select_blocks(scores, top_k=0.1, top_p=0.5)
  np.testing.assert_array_equal(np.asarray(hybrid), np.asarray(topk | topp))
  np.testing.assert_array_equal(np.asarray(topk.sum(-1)), 2)  # floor(2.4)
  # Top-p keeps the minimal sorted prefix reaching p: without its last block the mass is < p.
  s, kept = np.asarray(scores), np.asarray(topp)
  mass = (s * kept).sum(-1)
  smallest = np.where(kept, s, np.inf).min(-1)
  assert (mass >= 0.5 - 1e-6).all() and (mass - smallest < 0.5).all()
  for kw in ({"top_k": 0.0}, {"top_p": 0.0}, {"top_k": 0.0, "top_p": 0.0}):
    assert bool(jnp.all(sparse_mask.select_blocks(scores, **kw).sum(-1) >= 1))


def test_block_scores_pool_partial_blocks_and_carry_no_gradient():
  rng = np.random.default_rng(0)
  q = rng.normal(size=(1, 10, 1, 4)).astype(np.float32)
  k = rng.normal(size=(1, 7, 1, 4)).astype(np.float32)
  scores = sparse_mask.block_scores(jnp.asarray(q), jnp.asarray(k), block_q=4, block_k=3)
  qbar = np.stack([q[0, s:s + 4, 0].mean(0) for s in (0, 4, 8)])
  kbar = np.stack([k[0, s:s + 3, 0].mean(0) for s in (0, 3, 6)])
  logits = qbar @ kbar.T / 2.0
  expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  np.testing.assert_allclose(np.asarray(scores[0, 0]), expected, rtol=1e-5)
  grad = jax.grad(lambda q: jnp.sum(sparse_mask.block_scores(q, jnp.asarray(k), block_q=4,
                                                             block_k=3) ** 2))(jnp.asarray(q))
  assert float(jnp.max(jnp.abs(grad))) == 0.0


def test_predict_mask_shapes_rules_and_sparsity():
  q = jax.random.normal(jax.random.key(1), (2, 100, 3, 8))
  k = jax.random.normal(jax.random.key(2), (2, 90, 3, 8))
  masks = {rule: sparse_mask.predict_block_mask(q, k, block_q=16, block_k=8, top_k=0.2,
                                                top_p=0.3, rule=rule)
           for rule in sparse_mask.RULES}
  assert masks["hybrid"].shape == (2, 3, 7, 12)
  np.testing.assert_array_equal(np.asarray(masks["hybrid"]),
                                np.asarray(masks["topk"] | masks["topp"]))
  ones = jnp.ones((2, 3, 7, 12), bool)
  assert float(sparse_mask.block_sparsity(ones, 100, 90, 16, 8)) == pytest.approx(0.0, abs=1e-6)
  # Only the partial last query block (4 of 100 rows) against all keys: 1 - 4/100.
  last = jnp.zeros((7, 12), bool).at[6].set(True)
  assert float(sparse_mask.block_sparsity(last, 100, 90, 16, 8)) == pytest.approx(0.96, abs=1e-6)
  with pytest.raises(ValueError, match="unknown mask rule"):
    sparse_mask.predict_block_mask(q, k, block_q=16, block_k=8, rule="topq")


def test_keep_dissimilar_blocks_keeps_rows_of_incoherent_query_blocks():
  rng = np.random.default_rng(0)
  coherent = np.ones((1, 32, 1, 8)) + 0.01 * rng.normal(size=(1, 32, 1, 8))
  q = coherent.copy()
  q[0, 8:16] = rng.normal(size=(8, 1, 8))  # query block 1: random directions
  q, k = jnp.asarray(q, jnp.float32), jnp.asarray(coherent, jnp.float32)
  sim = sparse_mask.block_self_similarity(q, 8)
  assert float(sim[0, 0, 0]) > 0.99 and float(sim[0, 0, 1]) < 0.5
  plain = sparse_mask.predict_block_mask(q, k, block_q=8, block_k=8, top_k=0.25, top_p=0.01)
  kept = sparse_mask.predict_block_mask(q, k, block_q=8, block_k=8, top_k=0.25, top_p=0.01,
                                        keep_dissimilar_blocks=True, similarity_threshold=0.5)
  assert int(plain[0, 0, 1].sum()) == 1 and bool(kept[0, 0, 1].all())
  np.testing.assert_array_equal(np.asarray(kept[0, 0, 0]), np.asarray(plain[0, 0, 0]))
