"""Data, stages and world models of the CUWM experiment (arXiv 2602.17365; protocol in README.md).

* Transitions: random consistent ToyUI states and uniformly random clicks, with the true change
  set (the stand-in for the paper's GPT-5-annotated descriptions) and the next screen.
* Stages (shared training loop, full batch, Adam): `delta` (stage 1 of `TwoStageWM`, only the
  delta head's parameters), `renderer` (stage 2, only the renderer's, on the true change sets,
  starting from the `delta` stage's model), `direct` (the caveat's direct pixel model) and
  `grpo_sft` (the short SFT of the delta head that GRPO starts from).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.core.train import Task
from jaxpapers.data import ArraySource, full_batch
from jaxpapers.envs.toy_ui import ToyUI
from jaxpapers.worldmodel import (
  DELTA_PARAMS,
  RENDERER_PARAMS,
  DirectWM,
  TwoStageWM,
  delta_loss,
  pixel_loss,
  render_loss,
)

from .config import CUWMConfig


def ui_of(config: CUWMConfig) -> ToyUI:
  return ToyUI.default(config.widgets)


@functools.partial(jax.jit, static_argnums=0)
def _arrays(ui: ToyUI, flags: jax.Array, action: jax.Array) -> dict[str, jax.Array]:
  nxt = jax.vmap(ui.step)(flags, action)
  return {"flags": flags, "obs": ui.render(flags), "action": action.astype(jnp.int32),
          "delta": ui.delta(flags, nxt), "next_flags": nxt, "next_obs": ui.render(nxt)}


def transitions(ui: ToyUI, n: int, key: jax.Array) -> dict[str, jax.Array]:
  """`n` random (state, click) transitions: flags, obs, action, delta, next_flags, next_obs."""
  k_state, k_action = jax.random.split(key)
  flags = jax.vmap(ui.sample_state)(jax.random.split(k_state, n))
  return _arrays(ui, flags, jax.random.randint(k_action, (n,), 0, ui.num_actions))


def all_transitions(ui: ToyUI) -> dict[str, np.ndarray]:
  """Every (consistent state, click) pair once: the fidelity test set."""
  n = ui.num_widgets
  bits = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
  keep = np.all([(p < 0) | ~bits[:, i] | bits[:, max(p, 0)] for i, p in enumerate(ui.parents)], axis=0)
  states = bits[keep]
  flags = np.repeat(states, ui.num_actions, axis=0)
  action = np.tile(np.arange(ui.num_actions, dtype=np.int32), len(states))
  return jax.device_get(_arrays(ui, jnp.asarray(flags), jnp.asarray(action)))


def train_data(config: CUWMConfig, n: int | None = None) -> dict[str, np.ndarray]:
  """The training transitions of `config.seed` (`n`: another size, same key)."""
  key = jax.random.fold_in(jax.random.key(config.seed), 1)
  return jax.device_get(transitions(ui_of(config), n or config.train_transitions, key))


def make_wm(config: CUWMConfig, rngs: nnx.Rngs, zero_init_renderer: bool = True) -> TwoStageWM:
  ui = ui_of(config)
  return TwoStageWM(ui.image_shape, ui.num_actions, ui.num_changes, config.hidden,
                    zero_init_renderer=zero_init_renderer, rngs=rngs)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_state(shapes: tuple, key: jax.Array, zero_init_renderer: bool):
  return nnx.state(TwoStageWM(*shapes, zero_init_renderer=zero_init_renderer, rngs=nnx.Rngs(key)))


def untrained_wm(config: CUWMConfig, seed: int, zero_init_renderer: bool = True) -> TwoStageWM:
  """A freshly initialized model (initialized under jit: one program, no eager op compiles)."""
  ui = ui_of(config)
  shapes = (ui.image_shape, ui.num_actions, ui.num_changes, tuple(config.hidden))
  abstract = nnx.eval_shape(lambda: TwoStageWM(*shapes, zero_init_renderer=zero_init_renderer,
                                               rngs=nnx.Rngs(0)))
  return nnx.merge(nnx.graphdef(abstract), _init_state(shapes, jax.random.key(seed), zero_init_renderer))


def make_direct(config: CUWMConfig, rngs: nnx.Rngs) -> DirectWM:
  ui = ui_of(config)
  return DirectWM(ui.image_shape, ui.num_actions, config.hidden, rngs=rngs)


def with_state(module: nnx.Module, state: Any) -> nnx.Module:
  nnx.update(module, jax.tree.map(jnp.asarray, state))
  return module


def _source(config: CUWMConfig, mesh):
  data = train_data(config)
  keys = ("obs", "action", "delta", "next_obs")
  return full_batch(ArraySource({k: np.asarray(data[k]) for k in keys}), pad_to_multiple=mesh.size)


def make_delta_task(config: CUWMConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Stage `delta`: the delta head on the true change sets (the renderer is not optimized)."""

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    return delta_loss(model, batch["obs"], batch["action"], batch["delta"], batch["mask"]), {}

  return Task(init_model=functools.partial(make_wm, config), optimizer=optax.adam(config.lr),
              loss_fn=loss_fn, train_data=_source(config, mesh), wrt=DELTA_PARAMS)


def make_renderer_task(config: CUWMConfig, mesh, inputs) -> Task:
  """Stage `renderer`: from the `delta` stage's model, the renderer on the true change sets."""

  def init(rngs):
    return with_state(make_wm(config, rngs), inputs["delta"])

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    return render_loss(model, batch["obs"], batch["delta"], batch["next_obs"], batch["mask"]), {}

  return Task(init_model=init, optimizer=optax.adam(config.lr), loss_fn=loss_fn,
              train_data=_source(config, mesh), wrt=RENDERER_PARAMS)


def make_direct_task(config: CUWMConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Stage `direct`: the direct pixel model on the next screens."""

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    return pixel_loss(model(batch["obs"], batch["action"]), batch["next_obs"], batch["mask"]), {}

  return Task(init_model=functools.partial(make_direct, config), optimizer=optax.adam(config.lr),
              loss_fn=loss_fn, train_data=_source(config, mesh))
