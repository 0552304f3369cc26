"""Stages of the TactAlign experiment (arXiv 2602.13579): encoders, alignment flow, regression.

* `encoder_human`, `encoder_robot` (Sec. III-A): one tactile encoder per embodiment
  (`jaxpapers.nn.tactile`), masked reconstruction, Adam.
* `flow` (Sec. III-C): the rectified-flow velocity field on pairs of standardised latents
  (`jaxpapers.align`): pseudo-pairs (TactAlign), random pairs (B1) or oracle pairs (B3), by
  `config.coupling`.
* `regression` (B2): an MLP h -> r trained with MSE on the same pseudo-pairs.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import align, diffusion
from jaxpapers.core.train import Task
from jaxpapers.data import ArraySource, batches
from jaxpapers.nn.tactile import TactileAutoencoder, TactileConfig, masked_reconstruction_loss

from . import data as data_lib
from .config import TactAlignConfig

TOKENS = {"human": 1, "robot": 16}


def tactile_config(config: TactAlignConfig, domain: str) -> TactileConfig:
  return TactileConfig(tokens=TOKENS[domain], width=config.width, depth=config.depth,
                       heads=config.heads, latent_dim=config.latent_dim)


def _encoder_task(domain: str, config: TactAlignConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  stage = config.encoder_human if domain == "human" else config.encoder_robot
  source = ArraySource({"x": data_lib.encoder_inputs(config.data, domain)})

  def loss_fn(model, batch, rng):
    return masked_reconstruction_loss(model, batch["x"], rng, config.mask_ratio, batch["mask"]), {}

  return Task(init_model=functools.partial(TactileAutoencoder, tactile_config(config, domain)),
              optimizer=optax.adam(config.encoder_lr), loss_fn=loss_fn,
              train_data=batches(source, config.encoder_batch, seed=stage.seed,
                                 pad_to_multiple=mesh.size))


make_human_encoder_task = functools.partial(_encoder_task, "human")
make_robot_encoder_task = functools.partial(_encoder_task, "robot")


def encoder(config: TactAlignConfig, domain: str, state) -> TactileAutoencoder:
  """The trained autoencoder of `domain` from its stage state."""
  model = nnx.eval_shape(lambda: TactileAutoencoder(tactile_config(config, domain), rngs=nnx.Rngs(0)))
  return nnx.merge(nnx.graphdef(model), jax.tree.map(jnp.asarray, state))


@functools.partial(nnx.jit, static_argnames=("chunk",))
def _encode(model: TactileAutoencoder, x: jax.Array, chunk: int) -> jax.Array:
  return jax.lax.map(model, x.reshape(-1, chunk, *x.shape[1:])).reshape(x.shape[0], -1)


def encode(model: TactileAutoencoder, x: np.ndarray, chunk: int = 1024) -> np.ndarray:
  """Latents [M, d_z] of readings [M, T, C], in fixed-size chunks (one compiled program)."""
  n = len(x)
  padded = np.concatenate([x, np.zeros((-n % chunk, *x.shape[1:]), x.dtype)])
  return np.asarray(_encode(model, jnp.asarray(padded), chunk))[:n]


@dataclasses.dataclass(frozen=True)
class Latents:
  """Standardised latents of every set (each domain by its own alignment-set statistics)."""

  human: np.ndarray
  robot: np.ndarray
  human_eval: np.ndarray
  robot_eval: np.ndarray
  robot_of_human: np.ndarray


def latents(config: TactAlignConfig, human_state, robot_state) -> Latents:
  d = data_lib.datasets(config.data)
  eh, er = encoder(config, "human", human_state), encoder(config, "robot", robot_state)
  raw_h = encode(eh, d.human.tactile)
  raw_r = encode(er, d.robot.tactile)
  mh, sh = raw_h.mean(0), raw_h.std(0) + 1e-6
  mr, sr = raw_r.mean(0), raw_r.std(0) + 1e-6
  return Latents(human=(raw_h - mh) / sh, robot=(raw_r - mr) / sr,
                 human_eval=(encode(eh, d.human_eval.tactile) - mh) / sh,
                 robot_eval=(encode(er, d.robot_eval.tactile) - mr) / sr,
                 robot_of_human=(encode(er, d.robot_of_human.tactile) - mr) / sr)


def _features(samples: data_lib.Samples, config: TactAlignConfig) -> np.ndarray:
  pose = samples.pose.astype(np.float64)
  if config.pairs.pose_norm == "standardize":
    pose = align.standardize_poses(pose, samples.finger)
  if config.pairs.phase_weight:
    pose = np.concatenate([pose, config.pairs.phase_weight * samples.phase[:, None]], 1)
  return pose


def contacts(config: TactAlignConfig, samples: data_lib.Samples) -> np.ndarray:
  p = config.pairs
  return align.contact_state(data_lib.tared_magnitude(samples), p.contact_percentile, p.contact_threshold)


def pseudo_pairs(config: TactAlignConfig) -> align.Pairs:
  """TactAlign's pose-matched, contact-consistent pairs between the alignment sets."""
  d = data_lib.datasets(config.data)
  return align.pseudo_pairs(_features(d.human, config), _features(d.robot, config), d.human.finger,
                            d.robot.finger, contacts(config, d.human), contacts(config, d.robot),
                            k=config.pairs.k, both_directions=config.pairs.both_directions)


def paired(config: TactAlignConfig, lat: Latents, coupling: str) -> tuple[np.ndarray, np.ndarray]:
  """(h, r) training pairs of a coupling: "pseudo", "random" or "oracle"."""
  if coupling == "oracle":
    return lat.human, lat.robot_of_human
  pairs = pseudo_pairs(config)
  if coupling == "random":
    pairs = align.random_pairs(len(lat.human), len(lat.robot), len(pairs), config.flow.seed)
  return lat.human[pairs.human], lat.robot[pairs.robot]


def _pair_batches(config: TactAlignConfig, mesh, inputs, coupling: str, seed: int):
  lat = latents(config, inputs["encoder_human"], inputs["encoder_robot"])
  h, r = paired(config, lat, coupling)
  source = ArraySource({"h": h.astype(np.float32), "r": r.astype(np.float32)})
  return batches(source, config.flow_batch, seed=seed, pad_to_multiple=mesh.size)


def make_flow_task(config: TactAlignConfig, mesh, inputs) -> Task:
  """Stage `flow`: L_RF on the pairs of `config.coupling`, t ~ U[0, 1]."""
  def loss_fn(model, batch, rng):
    t = diffusion.sample_times(rng, batch["h"].shape[0], "uniform")
    return align.rectified_flow_loss(model, batch["h"], batch["r"], t, batch["mask"]), {}

  return Task(init_model=functools.partial(align.VelocityMLP, config.latent_dim, config.flow_hidden,
                                           config.time_dim),
              optimizer=optax.adam(config.flow_lr), loss_fn=loss_fn,
              train_data=_pair_batches(config, mesh, inputs, config.coupling, config.flow.seed))


def make_regression_task(config: TactAlignConfig, mesh, inputs) -> Task:
  """Stage `regression` (B2): MSE of an MLP h -> r on the pseudo-pairs."""
  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    return diffusion.mean_squared_error(model(batch["h"]), batch["r"], batch["mask"]), {}

  return Task(init_model=functools.partial(align.RegressionMLP, config.latent_dim, config.flow_hidden),
              optimizer=optax.adam(config.flow_lr), loss_fn=loss_fn,
              train_data=_pair_batches(config, mesh, inputs, "pseudo", config.regression.seed))


def velocity(config: TactAlignConfig, state) -> align.VelocityMLP:
  model = nnx.eval_shape(lambda: align.VelocityMLP(config.latent_dim, config.flow_hidden, config.time_dim,
                                                   rngs=nnx.Rngs(0)))
  return nnx.merge(nnx.graphdef(model), jax.tree.map(jnp.asarray, state))


def regressor(config: TactAlignConfig, state) -> align.RegressionMLP:
  model = nnx.eval_shape(lambda: align.RegressionMLP(config.latent_dim, config.flow_hidden, rngs=nnx.Rngs(0)))
  return nnx.merge(nnx.graphdef(model), jax.tree.map(jnp.asarray, state))


@functools.partial(nnx.jit, static_argnames=("steps",))
def transport(model: align.VelocityMLP, h: jax.Array, steps: int) -> jax.Array:
  """g(h): the Euler transport of human latents by the trained field."""
  return align.transport(model, h, steps)


@nnx.jit
def regress(model: align.RegressionMLP, h: jax.Array) -> jax.Array:
  return model(h)
