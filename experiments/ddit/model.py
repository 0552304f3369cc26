"""Teacher and adapter tasks of the DDiT experiment (arXiv 2602.16968, Sec. 3.1).

* Stage `teacher`: a DiT at the base patch size trained with the rectified-flow loss
  (`jaxpapers.diffusion.flow_matching_loss`, t ~ U(0, 1)), Adam with warm-up and clipping.
* Stage `adapters`: the multi-patch DiT (`jaxpapers.nn.multipatch_dit`) built on the trained
  teacher (PI-resized embed, up-sampled de-embed, zero LoRA B, zero R_phi output, zero size
  embedding) and distilled towards the frozen base path,
  `||v(x_t; p', t) - sg v(x_t; p, t)||^2` with p' drawn uniformly from the coarse sizes per
  mini-batch (paper Sec. 3.1, the distillation loss). Only the new parameters are trained
  (`wrt=ADAPTERS`); the optimizer is Prodigy at lr 1.0 (the paper's T2I choice) or Adam.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxpapers import diffusion
from jaxpapers.core.train import Task
from jaxpapers.nn import dit
from jaxpapers.nn import multipatch_dit as mp

from . import data
from .config import DDiTConfig


def _noisy(batch, rng):
  x0 = batch["x0"]
  noise_rng, time_rng = jax.random.split(rng)
  noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
  t = diffusion.sample_times(time_rng, x0.shape[0], "uniform")
  return x0, noise, t


def teacher_loss(model: dit.DiT, batch, rng):
  """The rectified-flow loss ||v(x_t, t) - (eps - x_0)||^2 of the base DiT."""
  x0, noise, t = _noisy(batch, rng)
  return diffusion.flow_matching_loss(model, x0, batch["label"], noise, t, mask=batch.get("mask")), {}


def distillation_loss(config: DDiTConfig):
  """`||v(x_t; p', t) - sg v(x_t; p, t)||^2`, p' uniform over the coarse sizes per mini-batch."""
  coarse = config.model.sizes[1:]

  def loss_fn(model: mp.MultiPatchDiT, batch, rng):
    x0, noise, t = _noisy(batch, rng)
    x_t = diffusion.interpolate(x0, noise, t)
    labels = batch["label"]
    target = jax.lax.stop_gradient(model(x_t, t, labels))  # the frozen base path = the teacher
    losses = [lambda size=size: diffusion.mean_squared_error(model(x_t, t, labels, size=size),
                                                             target, batch.get("mask"))
              for size in coarse]
    if len(losses) == 1:
      return losses[0](), {}
    pick = jax.random.randint(jax.random.fold_in(rng, 1), (), 0, len(losses))
    return jax.lax.switch(pick, losses), {}
  return loss_fn


def teacher_optimizer(config: DDiTConfig) -> optax.GradientTransformation:
  schedule = optax.join_schedules(
      [optax.linear_schedule(0.0, config.lr, max(config.warmup_steps, 1)),
       optax.constant_schedule(config.lr)], [max(config.warmup_steps, 1)])
  return optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(schedule))


def distill_optimizer(config: DDiTConfig) -> optax.GradientTransformation:
  if config.distill_optimizer == "prodigy":
    return optax.contrib.prodigy(config.distill_lr)
  return optax.adam(config.distill_lr)


def make_teacher_task(config: DDiTConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Stage `teacher`: flow matching of the base DiT."""
  return Task(init_model=functools.partial(dit.DiT, config.model.dit),
              optimizer=teacher_optimizer(config), loss_fn=teacher_loss,
              train_data=data.train_data(config, config.teacher.seed, mesh.size))


def student(config: DDiTConfig, teacher_state, rngs: nnx.Rngs) -> mp.MultiPatchDiT:
  """The multi-patch DiT on the teacher's weights, its new parts initialised from them."""
  model = mp.MultiPatchDiT(config.model, rngs=rngs)
  nnx.update(model.dit, jax.tree.map(jnp.asarray, teacher_state))
  model.init_from_base()
  return model


def make_adapter_task(config: DDiTConfig, mesh: jax.sharding.Mesh, inputs) -> Task:
  """Stage `adapters`: distillation of the coarse sizes from `inputs["teacher"]`."""
  return Task(init_model=functools.partial(student, config, inputs["teacher"]),
              optimizer=distill_optimizer(config), loss_fn=distillation_loss(config),
              train_data=data.train_data(config, 1000 + config.adapters.seed, mesh.size),
              wrt=mp.ADAPTERS)


def graphdef(config: DDiTConfig):
  """The multi-patch DiT's graph definition (abstract build)."""
  return nnx.graphdef(nnx.eval_shape(lambda: mp.MultiPatchDiT(config.model, rngs=nnx.Rngs(0))))
