"""Search episodes, the proposer, action search with each world model, and fidelity metrics.

* Episodes: a random consistent ToyUI state, a random goal different from it, the logged expert
  action, and the frozen noisy proposer's logits `(expert scores + noise * N(0, 1)) / T` (the
  corruption is drawn once per episode). The proposer's k candidates are a Gumbel-top-k draw
  from those logits; its top-1 (the agent without a world model) is the first candidate.
* Search (`jaxpapers.worldmodel.action_search`): each candidate's next screen is imagined, read
  back into flags (`ToyUI.parse`, as the agent reads a screenshot) and scored by minus the
  distance to the goal; ties go to the proposer's order.
* Fidelity on every (state, click) pair once: changed-pixel F1 (pooled over pixels that change
  in truth or in the prediction), exact next-screen rate and, for the two-stage model, the
  greedy change set's F1.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.envs.toy_ui import ToyUI
from jaxpapers.evals.coverage import coverage_accuracy
from jaxpapers.worldmodel import action_search, change_f1, gumbel_top_k


@functools.partial(jax.jit, static_argnums=(0, 1))
def episodes(ui: ToyUI, n: int, key: jax.Array, noise: float, temperature: float) -> dict[str, jax.Array]:
  """`n` search episodes: flags, goal, logged action, proposer logits, proposer keys."""
  k_state, k_goal, k_noise, k_prop = jax.random.split(key, 4)
  flags = jax.vmap(ui.sample_state)(jax.random.split(k_state, n))
  goal = jax.vmap(ui.sample_goal)(jax.random.split(k_goal, n), flags)
  scores = jax.vmap(ui.expert_scores)(flags, goal)
  logits = (scores + noise * jax.random.normal(k_noise, scores.shape)) / temperature
  return {"flags": flags, "goal": goal, "logged": jax.vmap(ui.expert_action)(flags, goal),
          "logits": logits, "keys": jax.random.split(k_prop, n)}


def _true_simulator(ui: ToyUI):
  return lambda obs, a: ui.render(ui.step(ui.parse(obs), a))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _search(ui: ToyUI, k: int, graphdef, state, ep: dict[str, jax.Array]):
  imagine = _true_simulator(ui) if graphdef is None else nnx.merge(graphdef, state).imagine

  def one(flags, goal, logits, key, logged):
    propose = lambda obs, key, k: gumbel_top_k(logits, key, k)  # noqa: E731
    score = lambda img: -ui.distance(ui.parse(img), goal)  # noqa: E731
    r = action_search(propose, imagine, score, k, ui.render(flags), key, logged)
    return r.action, r.candidates, r.covered

  return jax.vmap(one)(ep["flags"], ep["goal"], ep["logits"], ep["keys"], ep["logged"])


def search(ui: ToyUI, k: int, model: nnx.Module | None, ep: dict[str, jax.Array]) -> dict[str, float]:
  """Action search over the episodes with `model.imagine` (None: the true simulator).

  Returns:
    `jaxpapers.evals.coverage_accuracy` of the chosen actions, plus "top1" (the proposer's first
    candidate's accuracy) and "covered_flag" (the search's own coverage bookkeeping, equal to
    "coverage").
  """
  graphdef, state = (None, None) if model is None else nnx.split(model)
  chosen, candidates, covered = jax.device_get(_search(ui, k, graphdef, state, ep))
  logged = np.asarray(ep["logged"])
  out = coverage_accuracy(chosen, logged, candidates)
  out["top1"] = float(np.mean(candidates[:, 0] == logged))
  out["covered_flag"] = float(np.mean(covered))
  return out


@functools.partial(jax.jit, static_argnums=0)
def _fidelity(graphdef, state, data):
  model = nnx.merge(graphdef, state)
  pred = model.imagine(data["obs"], data["action"])
  obs, nxt = data["obs"] > 0.5, data["next_obs"] > 0.5
  p_change, t_change = (pred > 0.5) != obs, nxt != obs
  tp = jnp.sum(p_change & t_change)
  out = {"tp": tp, "pred": jnp.sum(p_change), "true": jnp.sum(t_change),
         "exact": jnp.mean(jnp.all((pred > 0.5) == nxt, axis=(-2, -1)))}
  if hasattr(model, "describe"):
    out["delta_f1"] = change_f1(model.describe(data["obs"], data["action"]), data["delta"]).mean()
  return out


def fidelity(model: nnx.Module, data: dict[str, np.ndarray]) -> dict[str, float]:
  """Changed-pixel F1 and exact next-screen rate (and greedy change-set F1) on `data`."""
  graphdef, state = nnx.split(model)
  keys = ("obs", "action", "delta", "next_obs")
  r = jax.device_get(_fidelity(graphdef, state, {k: jnp.asarray(data[k]) for k in keys}))
  denom = float(r["pred"] + r["true"])
  out = {"pixel_f1": 2.0 * float(r["tp"]) / denom if denom else 1.0, "exact": float(r["exact"])}
  if "delta_f1" in r:
    out["delta_f1"] = float(r["delta_f1"])
  return out
