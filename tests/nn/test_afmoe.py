"""AFMoE language model: layer pattern, shapes, loads, document-causal masking, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM
from jaxpapers.nn.moe import MoE

TINY = AfmoeConfig(vocab_size=32, d_model=16, num_layers=4, num_dense_layers=1, num_heads=2,
                   num_kv_heads=1, head_dim=8, dense_width=32, num_experts=4, top_k=2,
                   expert_width=8, window=3)


def test_three_local_layers_per_global_one_and_a_dense_prefix():
  model = AfmoeLM(TINY, rngs=nnx.Rngs(0))
  assert [layer.attn.window for layer in model.layers] == [3, 3, 3, None]
  assert [isinstance(layer.mlp, MoE) for layer in model.layers] == [False, True, True, True]
  np.testing.assert_allclose(model.layers[0].attn_out.scale[...], 0.5)  # 1/sqrt(L) post-norm gain


def test_loads_count_every_real_token_k_times():
  model = AfmoeLM(TINY, rngs=nnx.Rngs(0))
  tokens = jax.random.randint(jax.random.key(1), (2, 10), 0, 32)
  mask = jnp.arange(10)[None, :] < jnp.array([[10], [6]])
  logits, counts = model(tokens, mask=mask)
  assert logits.shape == (2, 10, 32) and counts.shape == (3, 4)
  np.testing.assert_array_equal(counts.sum(-1), (10 + 6) * TINY.top_k)


def test_documents_in_one_row_do_not_see_each_other():
  model = AfmoeLM(TINY, rngs=nnx.Rngs(0))
  tokens = jax.random.randint(jax.random.key(2), (1, 8), 0, 32)
  segments = jnp.array([[1, 1, 1, 1, 2, 2, 2, 2]])
  base, _ = model(tokens, segments)
  alone, _ = model(tokens[:, 4:], segments[:, 4:] * 0 + 1)
  np.testing.assert_allclose(base[0, 4:], alone[0], atol=1e-5)  # the second document alone


def test_batch_sharded_forward_matches_one_device():
  model = AfmoeLM(TINY, rngs=nnx.Rngs(0))
  tokens = jax.random.randint(jax.random.key(3), (8, 6), 0, 32)
  expected, expected_counts = model(tokens)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  with jax.set_mesh(mesh):
    sharded = jax.device_put(tokens, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
    graphdef, state = nnx.split(model)
    logits, counts = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t))(state, sharded)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(counts, expected_counts)  # global loads, not per shard
