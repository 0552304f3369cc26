"""MiPA's CI checks as claims (FRAPPE, arXiv 2602.17259; the smoke preset runs them all)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.core import report
from jaxpapers.nn import rdt_policy as rp

from . import data, model
from .config import FrappeConfig


def _exact(id: str, statement: str, measured: float, bound: float = 0.0) -> report.Claim:
  return report.at_most(id, statement, float(measured), bound)


def _batch(arrays: dict, n: int = 8) -> dict:
  out = {k: jnp.asarray(v[:n]) for k, v in arrays.items()}
  out["mask"] = jnp.ones(n)
  return out


@functools.partial(jax.jit, static_argnames=("eps", "m"))
def _gate_figures(eps: float, m: int):
  """(max |sum w' - 1|, min w', L_balance([[0] * 3])) in one compiled call."""
  logits = jax.random.normal(jax.random.key(0), (64, m)) * 20
  w = rp.gate_weights(logits, eps)
  return jnp.abs(w.sum(-1) - 1).max(), w.min(), rp.balance_loss(jnp.zeros((1, 3)))


def gate_claims(config: FrappeConfig) -> list[report.Claim]:
  eps, m = config.mipa.smoothing, config.mipa.experts
  err, floor, uniform = _gate_figures(eps, m)
  return [
      _exact("gates_sum_to_one", "max |sum_i w'_i - 1| over 64 random logit rows (x20)",
             err, 1e-6),
      report.at_least("gates_floor", f"min w'_i (eps / M = {eps / m:.4f})", float(floor),
                      eps / m - 1e-7),
      report.within("balance_loss_uniform", "L_balance on logits [[0, 0, 0]] (log 3)^2 = 1.2069",
                    float(uniform), math.log(3) ** 2 - 1e-5,
                    math.log(3) ** 2 + 1e-5, paper_value=1.2069),
  ]


def _fresh(config: FrappeConfig, fresh_state) -> rp.MiPAPolicy:
  """`model.mipa_model(config, None, nnx.Rngs(0))`, its values from `fresh_state` when given
  (the state of one such model, so that the checks build it once)."""
  if fresh_state is None:
    return model.mipa_model(config, None, nnx.Rngs(0))
  return model.restored(lambda: model.mipa_model(config, None, nnx.Rngs(0)), fresh_state)


def identity_claim(config: FrappeConfig, mid_state, frames: dict,
                   fresh_state=None) -> report.Claim:
  """At the start of post-training (B = 0, equal prefixes) MiPA = the mid model, any router."""
  exact = _fresh(config, fresh_state)
  exact.mipa = rp.MiPAConfig(**{**config.mipa.__dict__, "prefix_noise": 0.0})
  exact.from_base(jax.tree.map(jnp.asarray, mid_state))
  exact.router2.bias[...] = jnp.arange(config.mipa.experts, dtype=jnp.float32) * 3.0
  b = _batch(frames)
  noisy = jax.random.normal(jax.random.key(1), b["actions"].shape)
  k = jnp.arange(8) * 5
  x = data.normalize(b["images"])
  ours = nnx.jit(lambda m: m(x, b["proprio"], noisy, k)[0])(exact)
  ref = nnx.jit(lambda m: m(x, b["proprio"], noisy, k)[0])(exact.base)
  return _exact("identity_at_post_start", "max |MiPA(x) - mid(x)| at the start of post-training "
                "(LoRA B = 0, identical prefixes, router biased to [0, 3, 6])",
                jnp.abs(ours - ref).max(), 1e-5)


def gradient_claims(config: FrappeConfig, mid_state, arrays: dict,
                    fresh_state=None) -> list[report.Claim]:
  """Stop-gradient on the targets; frozen backbone; action-free samples drop L_action."""
  m = _fresh(config, fresh_state).from_base(jax.tree.map(jnp.asarray, mid_state))
  b = _batch(arrays)
  loss_fn = model.mipa_loss(config)
  rng = jax.random.key(3)
  diff = nnx.DiffState(0, rp.TRAINABLE)
  free = {**b, "has_action": jnp.zeros_like(b["has_action"])}

  @nnx.jit
  def gradients(mm, batch, free_batch):  # one compile for the three gradients
    grads_t = jax.grad(lambda t: loss_fn(mm, {**batch, "targets": t}, rng)[0])(batch["targets"])
    g_action = nnx.grad(lambda m_, fb: loss_fn(m_, fb, rng)[1]["action"], argnums=diff)(mm, free_batch)
    g_align = nnx.grad(lambda m_, fb: loss_fn(m_, fb, rng)[1]["align"], argnums=diff)(mm, free_batch)
    return grads_t, g_action, g_align
  grads_t, g_action, g_align = gradients(m, b, free)
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(g_align)[0]]
  head = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_action["head"]))
  prefix = float(jnp.abs(g_align["experts"]["prefix"][...]).max())
  return [
      _exact("stop_gradient_targets", "max |d L_total / d teacher targets|",
             max(float(jnp.abs(x).max()) for x in jax.tree.leaves(grads_t))),
      _exact("backbone_frozen", "differentiated variables under `base` in post-training",
             sum("'base'" in p for p in paths)),
      _exact("action_free_no_action_grad", "max |d L_action / d head| on a has_action = 0 batch",
             head),
      report.greater_than("action_free_align_grad", "max |d L_align / d prefixes| on a "
                          "has_action = 0 batch", prefix, 0.0),
  ]


def loss_decrease_claim(id: str, config: FrappeConfig, loss_fn, build, before, after,
                        arrays: dict) -> report.Claim:
  """L_total on a fixed batch and draw, after / before training."""
  b = _batch(arrays, 32)
  loss = nnx.jit(lambda mm: loss_fn(mm, b, jax.random.key(4))[0])  # compiled once, used twice
  values = [float(loss(build(state))) for state in (before, after)]
  return report.less_than(id, f"L_total on a fixed batch after / before ({values[0]:.4g} -> "
                          f"{values[1]:.4g})", values[1] / values[0], 1.0)
