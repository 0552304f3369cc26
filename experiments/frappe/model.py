"""Stages of the FRAPPE experiment (arXiv 2602.17259, Sec. 3.3 and 4.3).

* `teacher`: the Theia-like S (a small CNN) regresses standardised [T1 | T2 | T3] (Adam).
* `pretrain`: the toy RDT on the pretraining demos, `L_action` (x0-prediction MSE, Sec. 3.1).
* `finetune` (R0): full fine-tune on the task set, `L_action` only.
* `mid` (mid-training, Sec. 3.3 step 1): full fine-tune, `L_action + lambda_1 L_align(S)`, with
  the prefix read out at 3/4 depth.
* `post` (post-training with MiPA, Sec. 3.3 step 2 and 3.4): the backbone frozen, M = 3 experts
  aligned to T1, T2, T3, `L_action + lambda_1 sum_i L_align_i + lambda_2 L_balance`; samples
  without actions (`has_action = 0`, the action-free set, Sec. 3.5) keep only the alignment loss.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data as data_lib
from jaxpapers.core.train import Task
from jaxpapers.diffusion import ddpm
from jaxpapers.nn import rdt_policy as rp

from . import data
from .config import FrappeConfig


@dataclasses.dataclass
class Datasets:
  """Every data set of a run (host arrays) and the fitted frozen teachers."""

  pretrain: dict
  task: dict
  action_free: dict
  probe: dict
  teachers: data.Teachers
  task_targets: np.ndarray  # [3, N, dim]
  action_free_targets: np.ndarray


_CACHE: dict = {}


def datasets(config: FrappeConfig) -> Datasets:
  """The run's data sets, built once per (data, chunk, teacher width)."""
  key = (config.data, config.model.chunk, config.mipa.target_dim)
  if key not in _CACHE:
    d = config.data
    pretrain = data.demos(config, d.pretrain_demos, seed=1)
    task = data.demos(config, d.task_demos, seed=2)
    action_free = data.demos(config, d.action_free_demos, seed=3, shifted=True,
                             texture_offset=d.textures)
    probe = data.demos(config, d.probe_demos, seed=4)
    teachers = data.Teachers(config, task)
    _CACHE.clear()
    _CACHE[key] = Datasets(pretrain, task, action_free, probe, teachers, teachers(task),
                           teachers(action_free))
  return _CACHE[key]


def schedule(config: FrappeConfig) -> ddpm.CosineSchedule:
  return ddpm.CosineSchedule(config.model.diffusion_steps)


def _batches(config: FrappeConfig, arrays: dict, seed: int, mesh_size: int):
  return data_lib.batches(data_lib.ArraySource(arrays), config.batch_size, seed=seed,
                          pad_to_multiple=mesh_size)


def _noisy(config: FrappeConfig, batch, rng):
  k_rng, n_rng = jax.random.split(rng)
  actions = batch["actions"]
  k = ddpm.sample_steps(k_rng, actions.shape[0], schedule(config))
  noise = jax.random.normal(n_rng, actions.shape, actions.dtype)
  return ddpm.q_sample(schedule(config), actions, noise, k), k


def _weight(batch):
  return batch["mask"] * batch.get("has_action", 1.0)


def action_loss(config: FrappeConfig, align: bool):
  """`L_action` (+ `lambda_1 L_align(S)` on the mid-training target when `align`)."""
  def loss_fn(model: rp.RDTPolicy, batch, rng):
    noisy, k = _noisy(config, batch, rng)
    pred, readout = model(data.normalize(batch["images"]), batch["proprio"], noisy, k)
    l_action = ddpm.x0_loss(batch["actions"], pred, _weight(batch))
    if not align:
      return l_action, {"action": l_action}
    l_align = rp.alignment_loss(model.projector(readout), batch["s_target"], batch["mask"])
    return l_action + config.align_weight * l_align, {"action": l_action, "align": l_align}
  return loss_fn


def mipa_loss(config: FrappeConfig):
  """`L_action + lambda_1 sum_i L_align_i + lambda_2 L_balance` (action loss masked per sample)."""
  def loss_fn(model: rp.MiPAPolicy, batch, rng):
    noisy, k = _noisy(config, batch, rng)
    pred, aux = model(data.normalize(batch["images"]), batch["proprio"], noisy, k)
    l_action = ddpm.x0_loss(batch["actions"], pred, _weight(batch))
    targets = jnp.moveaxis(batch["targets"], 1, 0)  # [3, B, dim]
    l_align = sum(rp.alignment_loss(aux["projections"][i], targets[i], batch["mask"])
                  for i in range(config.mipa.experts))
    l_balance = rp.balance_loss(aux["logits"])
    total = l_action + config.align_weight * l_align + config.balance_weight * l_balance
    return total, {"action": l_action, "align": l_align, "balance": l_balance}
  return loss_fn


def _policy(config: FrappeConfig, state, rngs: nnx.Rngs) -> rp.RDTPolicy:
  model = rp.RDTPolicy(config.model, rngs=rngs)
  if state is not None:
    nnx.update(model, jax.tree.map(jnp.asarray, state))
  return model


def _adam(config: FrappeConfig):
  return optax.adam(config.lr)


def _frames(arrays: dict, keys=("images", "proprio", "actions", "has_action")) -> dict:
  return {k: arrays[k] for k in keys}


def make_teacher_task(config: FrappeConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Stage `teacher`: S regresses the standardised [T1 | T2 | T3] of the future frame."""
  ds = datasets(config)
  target = np.concatenate(list(ds.task_targets), axis=-1)

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    err = jnp.mean(jnp.square(model(batch["future_images"]) - batch["target"]), -1)
    return jnp.sum(err * batch["mask"]) / jnp.sum(batch["mask"]), {}
  return Task(init_model=lambda rngs: data.ConvEncoder(config.model.target_dim, rngs=rngs),
              optimizer=optax.adam(config.teacher_lr), loss_fn=loss_fn,
              train_data=_batches(config, {"future_images": ds.task["future_images"],
                                           "target": target}, config.teacher.seed, mesh.size))


def restored(build, state) -> nnx.Module:
  """The module `build()` would make, every variable set from the full `state` (no random init:
  the structure is traced with `nnx.eval_shape`, so nothing is computed or compiled)."""
  model = nnx.eval_shape(build)
  nnx.update(model, jax.tree.map(jnp.asarray, state))
  return model


def s_targets(config: FrappeConfig, teacher_state, frames: dict) -> np.ndarray:
  """S's embedding of each frame's future image."""
  model = restored(lambda: data.ConvEncoder(config.model.target_dim, rngs=nnx.Rngs(0)),
                   teacher_state)
  return np.asarray(_encode(model, jnp.asarray(frames["future_images"])))


@nnx.jit
def _encode(model: data.ConvEncoder, images: jax.Array) -> jax.Array:
  """S's forward, one compile per shape shared by the mid stage and the checks."""
  return model(images)


def make_pretrain_task(config: FrappeConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Stage `pretrain`: L_action on the pretraining demos."""
  ds = datasets(config)
  return Task(init_model=functools.partial(_policy, config, None), optimizer=_adam(config),
              loss_fn=action_loss(config, align=False),
              train_data=_batches(config, _frames(ds.pretrain), config.pretrain.seed, mesh.size))


def make_finetune_task(config: FrappeConfig, mesh, inputs) -> Task:
  """Stage `finetune` (R0): L_action on the task set, from the pretrained policy."""
  ds = datasets(config)
  return Task(init_model=functools.partial(_policy, config, inputs["pretrain"]),
              optimizer=_adam(config), loss_fn=action_loss(config, align=False),
              train_data=_batches(config, _frames(ds.task), config.finetune.seed, mesh.size))


def make_mid_task(config: FrappeConfig, mesh, inputs) -> Task:
  """Stage `mid`: full fine-tune with L_action + lambda_1 L_align(S)."""
  ds = datasets(config)
  arrays = {**_frames(ds.task), "s_target": s_targets(config, inputs["teacher"], ds.task)}
  return Task(init_model=functools.partial(_policy, config, inputs["pretrain"]),
              optimizer=_adam(config), loss_fn=action_loss(config, align=True),
              train_data=_batches(config, arrays, config.mid.seed, mesh.size))


def mipa_model(config: FrappeConfig, base_state, rngs: nnx.Rngs) -> rp.MiPAPolicy:
  """MiPA on a trained single-stream policy (experts initialised from it)."""
  model = rp.MiPAPolicy(config.model, config.mipa, rngs=rngs)
  if base_state is not None:
    model.from_base(jax.tree.map(jnp.asarray, base_state))
  return model


def post_arrays(config: FrappeConfig) -> dict:
  """The post-training frames: the task set, plus (R4) as many action-free frames, 1:1."""
  ds = datasets(config)
  arrays = {**_frames(ds.task), "targets": np.moveaxis(ds.task_targets, 0, 1)}
  if config.action_free:
    n = len(ds.task["images"])
    pick = np.random.default_rng(config.data.seed).permutation(len(ds.action_free["images"]))[:n]
    extra = {**_frames(ds.action_free), "targets": np.moveaxis(ds.action_free_targets, 0, 1)}
    arrays = {k: np.concatenate([v, extra[k][pick]]) for k, v in arrays.items()}
  return arrays


def make_post_task(config: FrappeConfig, mesh, inputs) -> Task:
  """Stage `post`: MiPA with the backbone frozen (`wrt=TRAINABLE`)."""
  return Task(init_model=functools.partial(mipa_model, config, inputs["mid"]),
              optimizer=_adam(config), loss_fn=mipa_loss(config),
              train_data=_batches(config, post_arrays(config), config.post.seed, mesh.size),
              wrt=rp.TRAINABLE)
