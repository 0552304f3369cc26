"""Calibrating the roofline against a measured decode step: our own model, timed on this host.

"Hardware Co-Design Scaling Laws via Roofline Modelling for On-Device LLMs" (Sun et al., arXiv
2602.10377, section 4.3.5) reports 10-20% deviation of its roofline from measured latency. Here
the measured step is the batch-1 KV-cache decode of our shared tiny LM
(`jaxpapers.nn.tiny_lm.TinyLM` with `CausalSelfAttention` mixers and the GELU MLP):

  x = E[token];  per layer: q, k, v = split(RMSNorm(x) W_qkv), RoPE at the position, k and v
  written into the cache at the position, o = softmax(q K^T / sqrt(d_h), keys <= position) V,
  x += o W_out;  x += down(gelu(up(RMSNorm(x))));  logits = head(RMSNorm(x))

the same function as the model's full causal forward at the last position (the tests check
it). `decode_arch` describes the model for the roofline, `time_decode` times one step with
`jaxpapers.core.bench.time_fn`, and `fit_efficiency` fits the memory efficiency eta_m and a
per-operator overhead to measured times (least squares on relative errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import optimize

from jaxpapers.core import bench
from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.rope import rope
from jaxpapers.nn.tiny_lm import TinyLM
from jaxpapers.roofline import latency
from jaxpapers.roofline.arch import Arch
from jaxpapers.roofline.devices import Device

Cache = dict[str, jax.Array]


def _check(model: TinyLM) -> None:
  if not isinstance(model, TinyLM) or model.scan_layers:
    raise ValueError("the decode step runs an unscanned jaxpapers.nn.tiny_lm.TinyLM")
  for layer in model.layers:
    if not isinstance(layer.mixer, CausalSelfAttention) or layer.mlp is not None:
      raise ValueError("the decode step needs CausalSelfAttention mixers and the GELU MLP")


def decode_arch(model: TinyLM) -> Arch:
  """The `Arch` of a TinyLM with attention mixers: untied head with bias, GELU MLP, 2 norms."""
  _check(model)
  layer = model.layers[0]
  vocab, d = model.embed.shape
  heads = layer.mixer.num_heads
  return Arch(d_model=d, num_layers=len(model.layers), num_heads=heads, num_kv_heads=heads,
              head_dim=d // heads, ffn=layer.up.kernel.shape[1], vocab=vocab, tied=False,
              mlp_matrices=2, mlp_bias=layer.up.bias is not None,
              head_bias=model.head.bias is not None, norms_per_layer=2, final_norm=True)


def empty_cache(model: TinyLM, max_context: int, dtype=jnp.float32) -> Cache:
  """Zero k and v caches `[layers, max_context, heads, head_dim]`."""
  _check(model)
  heads = model.layers[0].mixer.num_heads
  d = model.embed.shape[1]
  shape = (len(model.layers), max_context, heads, d // heads)
  return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}


def decode_step(model: TinyLM, cache: Cache, token: jax.Array, position: jax.Array
                ) -> tuple[jax.Array, Cache]:
  """One batch-1 decode step (module docstring): logits `[V]` of the token after `token` at
  `position`, and the cache with this token's k and v written at `position`."""
  x = model.embed[...][token][None]  # [1, d]
  ks, vs = [], []
  pos = jnp.asarray(position, jnp.int32)
  for i, layer in enumerate(model.layers):
    mixer = layer.mixer
    h, d = mixer.num_heads, x.shape[-1]
    q, k, v = jnp.split(mixer.qkv(layer.mixer_norm(x)).reshape(1, 1, 3 * h, d // h), 3, 2)
    q = rope(q, pos[None, None], mixer.rope_theta)[0, 0]  # [h, dh]
    k = rope(k, pos[None, None], mixer.rope_theta)[0, 0]
    kc = jax.lax.dynamic_update_slice(cache["k"][i], k[None], (pos, 0, 0))  # [C, h, dh]
    vc = jax.lax.dynamic_update_slice(cache["v"][i], v[0, 0][None], (pos, 0, 0))
    scores = jnp.einsum("hd,chd->hc", q, kc) / jnp.sqrt(jnp.float32(d // h))
    scores = jnp.where(jnp.arange(kc.shape[0])[None] <= pos, scores, -jnp.inf)
    o = jnp.einsum("hc,chd->hd", jax.nn.softmax(scores, axis=-1), vc).reshape(1, d)
    x = x + mixer.out(o)
    x = x + layer.down(jax.nn.gelu(layer.up(layer.mlp_norm(x))))
    ks.append(kc)
    vs.append(vc)
  logits = model.head(model.norm(x))[0]
  return logits, {"k": jnp.stack(ks), "v": jnp.stack(vs)}


def jitted_decode(model: TinyLM) -> tuple[Callable[..., Any], Any]:
  """`(step, state)`: `step(state, cache, token, position) -> (logits, cache)` jitted over the
  model's `nnx.split` state (the house's fast path), and that state."""
  _check(model)
  graphdef, state = nnx.split(model)

  @jax.jit
  def step(state, cache, token, position):
    return decode_step(nnx.merge(graphdef, state), cache, token, position)

  return step, state


def time_decode(model: TinyLM, context: int, *, repeats: int = 7, warmup: int = 2,
                min_repeat_seconds: float = 0.05) -> bench.Timing:
  """Seconds per decode step at `context` tokens already cached (positions 0..context-1
  filled with random keys and values; the new token goes to position `context`)."""
  step, state = jitted_decode(model)
  cache = empty_cache(model, context + 1)
  noise = jax.random.normal(jax.random.key(0), cache["k"].shape, cache["k"].dtype)
  cache = {"k": noise, "v": noise[::-1]}
  args = (state, cache, jnp.int32(1), jnp.int32(context))
  return bench.time_fn(step, *args, warmup=warmup, repeats=repeats,
                       min_repeat_seconds=min_repeat_seconds)


def predicted_tpot(archs: Sequence[Arch], context: int, device: Device,
                   precision: latency.Precision, efficiency: latency.Efficiency) -> np.ndarray:
  """The roofline's TPOT of each architecture (seconds)."""
  return np.array([float(latency.tpot(a, context, device, precision, efficiency)) for a in archs])


def fit_efficiency(archs: Sequence[Arch], measured: Sequence[float], context: int,
                   device: Device, precision: latency.Precision) -> latency.Efficiency:
  """eta_m and the per-operator overhead (eta_c = 1) that fit `measured` TPOTs (seconds) in
  relative least squares; with two architectures the fit is exact when it exists."""
  measured = np.asarray(measured, float)

  def residuals(p):
    eff = latency.Efficiency(1.0, float(np.exp(p[0])), float(p[1]))
    return predicted_tpot(archs, context, device, precision, eff) / measured - 1

  result = optimize.least_squares(residuals, np.array([0.0, 0.0]), x_scale=np.array([1.0, 1e-5]),
                                  bounds=([-10.0, 0.0], [10.0, 1.0]))
  return latency.Efficiency(1.0, float(np.exp(result.x[0])), float(result.x[1]))
