"""AFMoE language model: layer pattern, shapes, loads, document-causal masking, sharding.

Speed: one model (`_model()`, built once) and one token shape `[2, 10]` for every forward pass,
so that the eager op-by-op programs compiled by the first forward pass serve all the others.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM
from jaxpapers.nn.moe import MoE

TINY = AfmoeConfig(vocab_size=32, d_model=16, num_layers=4, num_dense_layers=1, num_heads=2,
                   num_kv_heads=1, head_dim=8, dense_width=32, num_experts=4, top_k=2,
                   expert_width=8, window=3)
TOKENS = jax.random.randint(jax.random.key(1), (2, 10), 0, 32)
MASK = jnp.arange(10)[None, :] < jnp.array([[10], [6]])


@functools.cache
def _model() -> AfmoeLM:
  """The TINY model; tests only read it."""
  return AfmoeLM(TINY, rngs=nnx.Rngs(0))


@functools.cache
def _masked_forward():
  """`_model().call_with_stats(TOKENS, mask=MASK)`, run once."""
  return _model().call_with_stats(TOKENS, mask=MASK)


def test_three_local_layers_per_global_one_and_a_dense_prefix():
  model = _model()
  assert [layer.attn.window for layer in model.layers] == [3, 3, 3, None]
  assert [isinstance(layer.mlp, MoE) for layer in model.layers] == [False, True, True, True]
  np.testing.assert_allclose(model.layers[0].attn_out.scale[...], 0.5)  # 1/sqrt(L) post-norm gain


def test_loads_count_every_real_token_k_times():
  logits, stats = _masked_forward()
  counts = stats.counts
  assert logits.shape == (2, 10, 32) and counts.shape == (3, 4)
  np.testing.assert_array_equal(counts.sum(-1), (10 + 6) * TINY.top_k)


def test_documents_in_one_row_do_not_see_each_other():
  # Row 0: two documents (positions 0-4 and 5-9); row 1 starts with row 0's second document
  # alone (then row 0's first one). Rows do not interact (no capacity: no token is dropped).
  tokens = jax.random.randint(jax.random.key(2), (1, 10), 0, 32)
  tokens = jnp.concatenate([tokens, jnp.roll(tokens, -5, axis=1)])
  segments = jnp.array([[1] * 5 + [2] * 5] * 2)
  out, _ = _model()(tokens, segments)
  np.testing.assert_allclose(out[0, 5:], out[1, :5], atol=1e-5)  # the second document alone


def test_batch_sharded_forward_matches_one_device():
  # Two shards of the [2, 10] batch (one row each), with the padding mask sharded alike.
  expected, stats = _masked_forward()
  expected_counts = stats.counts
  mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,),
                       devices=jax.devices()[:2])
  with jax.set_mesh(mesh):
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    tokens, mask = jax.device_put(TOKENS, rows), jax.device_put(MASK, rows)
    graphdef, state = nnx.split(_model())
    logits, counts = jax.jit(lambda s, t, m: nnx.merge(graphdef, s)(t, mask=m))(state, tokens, mask)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(counts, expected_counts)  # global loads, not per shard


def _np_balance(scores, selected, top_k, mask):
  s, sel, m = np.asarray(scores, np.float64), np.asarray(selected), np.asarray(mask, bool)
  e, total = s.shape[-1], 0.0
  for seq in range(s.shape[0]):
    real = m[seq]
    f = np.bincount(sel[seq][real].ravel(), minlength=e) * e / (top_k * real.sum())
    total += (f * (s[seq][real] / s[seq][real].sum(-1, keepdims=True)).mean(0)).sum()
  return total / s.shape[0]


def test_call_with_stats_gives_each_moe_layer_its_router_losses():
  model, tokens, mask = _model(), TOKENS, MASK
  logits, stats = _masked_forward()
  plain_logits, counts = model(tokens, mask=mask)
  np.testing.assert_array_equal(logits, plain_logits)
  np.testing.assert_array_equal(stats.counts, counts)
  assert stats.balance_loss.shape == stats.z_loss.shape == (TINY.num_moe_layers,)
  # the layers by hand: each MoE layer's routing of its own input, losses from numpy formulas
  x = model.embed[...][tokens] * np.sqrt(TINY.d_model)
  balance, z = [], []
  for layer in model.layers:
    x = x + layer.attn_out(layer.attn(layer.attn_in(x), None))
    h = layer.mlp_in(x)
    if isinstance(layer.mlp, MoE):
      routing = layer.mlp.route(h)
      balance.append(_np_balance(routing.scores, routing.selected, TINY.top_k, mask))
      lse = np.log(np.exp(np.asarray(routing.logits, np.float64)).sum(-1))
      z.append((lse[np.asarray(mask)] ** 2).mean())
      h = layer.mlp(h, mask)[0]
    else:
      h = layer.mlp(h)
    x = x + layer.mlp_out(h)
  np.testing.assert_allclose(stats.balance_loss, balance, rtol=1e-5)
  np.testing.assert_allclose(stats.z_loss, z, rtol=1e-5)


def test_zero_router_init_gives_uniform_router_losses_scanned_and_not():
  """Zero routers: every score 0.5, so balance loss 1 and z-loss (log E)^2 in every layer."""
  tokens = TOKENS
  for config in (TINY, dataclasses.replace(TINY, num_layers=6, global_every=2, scan_layers=True)):
    config = dataclasses.replace(config, router_init="zeros")
    model = AfmoeLM(config, rngs=nnx.Rngs(0))
    for layer in model.moe_layers():
      np.testing.assert_array_equal(layer.router[...], 0.0)
    _, stats = model.call_with_stats(tokens)
    assert stats.counts.shape == (config.num_moe_layers, config.num_experts)
    np.testing.assert_allclose(stats.balance_loss, 1.0, rtol=1e-6)
    np.testing.assert_allclose(stats.z_loss, np.log(config.num_experts) ** 2, rtol=1e-5)
    # zero routers tie every score: the first top_k experts take all tokens
    np.testing.assert_array_equal(stats.counts[:, :config.top_k], tokens.size)
