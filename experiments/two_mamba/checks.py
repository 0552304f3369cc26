"""Non-training observables of the 2Mamba reproduction (arXiv 2602.17363).

Part of our CPU-scale protocol, see experiments/two_mamba/README.md.

* `forms_agree`: quadratic == recurrent == chunked and the feature-map identity of
  Sec. 5.1.
* `kernel_gradients`: the Pallas kernel's custom-VJP gradients against autodiff of the dense
  reference for q, k, v and the decay.
* `memory`: decode-state bytes against KV-cache bytes, from the arrays a decoder allocates
  (paper Sec. 5.1, Eq. (6) and Fig. 7).
* `decode_vs_parallel`: a 2Mamba mixer decoded token by token against its parallel form.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import kernels_pallas
from jaxpapers.nn import second_order
from jaxpapers.nn.flat_random import flat_normal
from jaxpapers.nn.mixers import Mixer, MixerConfig
from kernels_pallas.second_order_attention import reference

_normal = flat_normal  # the N-d draw's bits, cheaper to compile


def _random_inputs(key, batch, seq, heads, dim, dtype=jnp.float32):
  ks = jax.random.split(key, 4)
  q, k, v = (_normal(ks[i], (batch, seq, heads, dim), dtype) for i in range(3))
  log_decay = -jax.nn.softplus(_normal(ks[3], (batch, seq, heads), dtype))
  return q, k, v, log_decay


def _max_rel(a, b) -> jax.Array:
  return jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))


def forms_agree() -> dict[str, float]:
  """Max relative deviation of the recurrent and chunked forms from the quadratic one (fp32,
  N = 40, d = 8, chunk 8), and of `phi(q).phi(k)` from `(q.k)^2`."""
  out = {k: float(v) for k, v in _forms_deviations().items()}
  out["feature_dim_d64"] = second_order.feature_dim(64)
  return out


# The CI checks below compare formulas, not compiler output: XLA's backend optimisations (level
# 0) cut their compile time by about a third to a half; their results move by float rounding.
_CHECK_COMPILE = {"xla_backend_optimization_level": 0}


@functools.partial(jax.jit, compiler_options=_CHECK_COMPILE)
def _forms_deviations():
  q, k, v, a = _random_inputs(jax.random.key(0), 2, 40, 2, 8)
  out = {}
  for variant, quadratic in (("square", reference.squared_attention),
                             ("linear", reference.linear_attention)):
    want = quadratic(q, k, v, a)
    rec, _ = second_order.recurrent_attention(q, k, v, a, variant=variant)
    chunk, _ = second_order.chunked_attention(q, k, v, a, chunk=8, variant=variant)
    out[f"{variant}_recurrent"] = _max_rel(rec, want)
    out[f"{variant}_chunked"] = _max_rel(chunk, want)
  x, y = q[0, :, 0], k[0, :, 0]
  kernel = jnp.sum(second_order.feature_map(x) * second_order.feature_map(y), -1)
  out["feature_map"] = _max_rel(kernel, jnp.sum(x * y, -1) ** 2)
  return out


def kernel_gradients(variant: str = "square") -> float:
  """Max over q, k, v, A of max|kernel grad - reference grad| / max|reference grad|
  (interpret mode on CPU; N = 128, d = 16, 1 head, block 32)."""
  return float(_kernel_grad_deviation(variant))


@functools.partial(jax.jit, static_argnums=0, compiler_options=_CHECK_COMPILE)
def _kernel_grad_deviation(variant: str) -> jax.Array:
  q, k, v, a = _random_inputs(jax.random.key(1), 1, 128, 1, 16)

  def loss(fn, *args):
    return jnp.sum(jnp.sin(fn(*args)))

  kernel = functools.partial(kernels_pallas.second_order_attention, variant=variant,
                             block_q=32, block_k=32)
  quadratic = reference.squared_attention if variant == "square" else reference.exp_attention
  got = jax.grad(functools.partial(loss, kernel), argnums=(0, 1, 2, 3))(q, k, v, a)
  want = jax.grad(functools.partial(loss, quadratic), argnums=(0, 1, 2, 3))(q, k, v, a)
  return jnp.max(jnp.stack([_max_rel(g, w) for g, w in zip(got, want)]))


def _nbytes(tree) -> int:
  """Bytes of the arrays (or `jax.ShapeDtypeStruct`s) of `tree`."""
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def memory(dims=(16, 32, 64, 128)) -> dict[int, dict[str, float]]:
  """Per head and layer (fp32): 2Mamba decode cache (recurrent state + conv window) against a
  softmax KV cache (keys + values), both read off the arrays the mixers' `init_cache` allocates
  (their shapes and dtypes).

  The crossover is the first context N at which the KV cache is larger; the paper's Eq. (6)
  gives N > (d + 1)^2 / 4 + 3/2.
  """
  out = {}
  for d in dims:
    config = dict(num_heads=1, head_dim=d)  # 2mamba: conv window 2; softmax: none
    # Abstract mixers (no parameter init); their caches are real, zero-filled arrays.
    two = nnx.eval_shape(lambda: Mixer(8, MixerConfig(kind="2mamba", **config), rngs=nnx.Rngs(0)))
    soft = nnx.eval_shape(lambda: Mixer(8, MixerConfig(kind="softmax", **config),
                                        rngs=nnx.Rngs(0)))
    # The caches' arrays as `init_cache` allocates them (their shapes and dtypes: eval_shape, so
    # no zero-filling op is compiled per shape).
    kv_cache = lambda n, soft=soft: jax.eval_shape(lambda: soft.init_cache(1, max_len=n))
    cache = jax.eval_shape(lambda two=two: two.init_cache(1))
    state = _nbytes((cache.state, cache.conv))
    kv = {n: _nbytes((c.keys, c.values)) for n in (1, 2) for c in [kv_cache(n)]}
    per_token = kv[2] - kv[1]
    crossover = state // per_token + 1  # smallest N with N * per_token > state
    check = kv_cache(int(crossover))
    below = kv_cache(int(crossover) - 1)
    out[d] = {
        "state_bytes": state, "kv_bytes_per_token": per_token, "crossover": int(crossover),
        "formula": (d + 1) ** 2 / 4 + 1.5,
        "kv_larger_at_crossover": _nbytes((check.keys, check.values)) > state,
        "kv_smaller_below": _nbytes((below.keys, below.values)) < state,
    }
  return out


def decode_vs_parallel(seq: int, d_model: int = 64, heads: int = 4, head_dim: int = 16,
                       seed: int = 0) -> dict[str, float]:
  """A 2Mamba mixer on `seq` random tokens: decode_step scanned token by token against the
  parallel (dense) form, fp32. Returns the relative error ||y_dec - y_par|| / ||y_par|| and
  the cache bytes after 0 and after `seq` tokens.

  The mixer and the tokens are built by one jitted call (the same values as built eagerly,
  without one compile per initializer op), then run by another.
  """
  config = MixerConfig(kind="2mamba", num_heads=heads, head_dim=head_dim, decay_bias=True)
  graph = nnx.graphdef(nnx.eval_shape(lambda: Mixer(d_model, config, rngs=nnx.Rngs(seed))))

  @jax.jit
  def build():
    params = nnx.state(Mixer(d_model, config, rngs=nnx.Rngs(seed)))
    return params, _normal(jax.random.key(seed + 1), (1, seq, d_model))

  @jax.jit
  def run(params, x):
    model = nnx.merge(graph, params)
    parallel = model(x)

    def step(cache, xt):
      y, cache = nnx.merge(graph, params).decode_step(cache, xt)
      return cache, y

    start = model.init_cache(1)
    cache, ys = jax.lax.scan(step, start, jnp.swapaxes(x, 0, 1))
    return parallel, jnp.swapaxes(ys, 0, 1), start, cache

  parallel, decoded, start, cache = run(*build())
  rel = float(jnp.linalg.norm(decoded - parallel) / jnp.linalg.norm(parallel))
  return {"rel_err": rel, "max_abs_err": float(jnp.max(jnp.abs(decoded - parallel))),
          "cache_bytes_start": _nbytes((start.state, start.conv)),
          "cache_bytes_end": _nbytes((cache.state, cache.conv)), "seq": seq,
          "finite": bool(np.all(np.isfinite(np.asarray(decoded))))}
