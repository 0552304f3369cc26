"""Tasks (one stage per updater arm) and the evaluation of the StereoAdapter-2 experiment
(arXiv 2602.16915): a tiny RAFT-Stereo, `jaxpapers.nn.raft_stereo`, with the ConvGRU or the
ConvSS2D updater, trained with RAFT-Stereo's sequence loss on generated pairs."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.core.train import Task
from jaxpapers.data import batches
from jaxpapers.data.stereo_pairs import stereo_pairs, stereo_source
from jaxpapers.nn.raft_stereo import RAFTStereo, RAFTStereoConfig, sequence_loss

from .config import StereoConfig


def model_config(config: StereoConfig, arm: str) -> RAFTStereoConfig:
  return dataclasses.replace(config.model, updater=arm)


def _decays(params) -> object:
  """AdamW's mask: no weight decay on A_log and D (Mamba's `_no_weight_decay`)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not any(getattr(k, "key", None) in ("A_log", "Ds") for k in path), params)


def optimizer(config: StereoConfig, steps: int) -> optax.GradientTransformation:
  """AdamW with a cosine decay (our spec: lr 2e-4 on CPU; the official script 1e-4)."""
  schedule = optax.cosine_decay_schedule(config.lr, max(steps, 1))
  return optax.adamw(schedule, weight_decay=config.weight_decay, mask=_decays)


def make_task(arm: str, config: StereoConfig, mesh, inputs) -> Task:  # pylint: disable=unused-argument
  """Stage `gru` or `ss2d`: the sequence loss over `train_iters` iterations."""
  train = getattr(config, arm)
  source = stereo_source(config.train_pairs, config.data_seed, config.data)

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    preds = model(batch["left"], batch["right"], config.train_iters)
    valid = batch["valid"] * batch["mask"][:, None, None]
    loss = sequence_loss(preds, batch["disparity"], valid, config.gamma)
    epe = jnp.sum(jnp.abs(preds[-1] - batch["disparity"]) * valid) / jnp.maximum(jnp.sum(valid), 1)
    return loss, {"epe": epe}

  return Task(init_model=functools.partial(RAFTStereo, model_config(config, arm)),
              optimizer=optimizer(config, train.steps), loss_fn=loss_fn,
              train_data=batches(source, config.batch_size, seed=train.seed,
                                 pad_to_multiple=mesh.size))


def param_count(config: StereoConfig, arm: str, part: str | None = None) -> int:
  """Parameters of an arm's model (or of one of its submodules, e.g. "updater")."""
  model = nnx.eval_shape(lambda: RAFTStereo(model_config(config, arm), rngs=nnx.Rngs(0)))
  module = getattr(model, part) if part else model
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(nnx.state(module, nnx.Param))))


@functools.partial(nnx.jit, static_argnums=(6,))
def _error_sums(model, left, right, disp, valid, flat, iters: int):
  """Per iteration: sums of |error| over valid and valid-textureless pixels, D1 counts, and the
  pixel counts (one compile per shape and iteration count, shared by every evaluation)."""
  err = jnp.abs(model(left, right, iters) - disp)  # [iters, b, H, W]
  bad = (err > 3.0) & (err > 0.05 * disp)
  tl = valid * flat
  return (jnp.sum(err * valid, (1, 2, 3)), jnp.sum(err * tl, (1, 2, 3)),
          jnp.sum(bad * valid, (1, 2, 3)), jnp.sum(valid), jnp.sum(tl))


def evaluate(config: StereoConfig, model: RAFTStereo, batch_size: int = 8) -> dict:
  """EPE (overall, textureless) and D1 (> 3 px and > 5 %) at each of `eval_iters`, over the
  evaluation pairs' valid pixels; one run of `max(eval_iters)` iterations per batch (the last
  batch padded with pairs of no valid pixel, so every batch has one shape)."""
  data = stereo_pairs(config.eval_pairs, config.eval_seed, config.data)
  # One placement for every model (the trainer's mesh-sharded state and host copies such as the
  # smoke run's untrained model alike), so `_error_sums` compiles once per shape, not per sharding.
  graphdef, state = nnx.split(model)
  model = nnx.merge(graphdef, jax.device_put(state, jax.devices()[0]))
  size = min(batch_size, config.eval_pairs)
  totals = None
  for start in range(0, config.eval_pairs, size):
    part = {}
    for k, v in data.items():
      rows = v[start:start + size]
      pad = np.zeros((size - len(rows), *rows.shape[1:]), rows.dtype)
      part[k] = jnp.asarray(np.concatenate([rows, pad]))
    out = jax.device_get(_error_sums(model, part["left"], part["right"], part["disparity"],
                                     part["valid"], part["textureless"], max(config.eval_iters)))
    totals = out if totals is None else tuple(a + b for a, b in zip(totals, out))
  epe, tl, d1, n_valid, n_tl = totals
  at = lambda x, n: {str(i): float(x[i - 1] / max(n, 1)) for i in config.eval_iters}
  return {"epe": at(epe, n_valid), "epe_textureless": at(tl, n_tl), "d1": at(d1, n_valid),
          "valid_pixels": int(n_valid), "textureless_pixels": int(n_tl)}
