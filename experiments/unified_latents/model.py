"""Data, training tasks and held-out measurements of the Unified Latents experiment.

Stage `stage1` trains encoder, prior and decoder jointly on `L_z + L_x` (arXiv 2602.17270,
Sec. 3: the prior's unweighted ELBO with the terminal KL is the latent bitrate; the decoder's
sigmoid-weighted loss, scaled by c_lf, is the reconstruction term). Stage `base` freezes them and
trains the base model on the encoder's clean latents (Sec. 3.3). Both go through the shared
training loop; the losses are `jaxpapers.diffusion.unified_latents`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data
from jaxpapers.core.errors import UsageError
from jaxpapers.core.train import Task
from jaxpapers.data.shapes import shapes16
from jaxpapers.diffusion import ddim
from jaxpapers.diffusion import unified_latents as ul
from jaxpapers.nn.ul_models import BaseModel, UnifiedLatents

from .config import DataConfig, UnifiedLatentsConfig

SHAPES_SEED = 0


# ------------------------------------------------------------------ data


class _TfdsImages:
  """A TFDS source's `image` feature, center-cropped and resized to (H, W), in [-1, 1]."""

  def __init__(self, source, shape: tuple[int, ...]):
    self.source, self.shape = source, shape

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    image = jnp.asarray(self.source[index]["image"], jnp.float32)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = jax.image.resize(image[top:top + side, left:left + side], self.shape, "bilinear")
    return {"x": np.asarray(image / 127.5 - 1.0, np.float32)}


@functools.lru_cache(maxsize=4)
def images(config: DataConfig, split: str, shape: tuple[int, ...]):
  """The split's images: a numpy array [n, H, W, C] in [-1, 1] (shapes16, digits) or a source."""
  if config.source == "shapes16":
    if split == "train":
      return shapes16(config.train_examples, seed=SHAPES_SEED)
    return shapes16(config.eval_examples, seed=SHAPES_SEED, start=config.train_examples)
  if config.source == "digits":
    source = data.digits_source("train" if split == "train" else "test")
    x = np.asarray([source[i]["image"] for i in range(len(source))], np.float32)
    x = (2 * x - 1).reshape(-1, 8, 8, 1)
    return x if split == "train" else x[:config.eval_examples]
  name_split = config.tfds_split if split == "train" else f"{config.tfds_eval_split}[:{config.eval_examples}]"
  source = data.tfds_source(config.tfds_name, name_split, data_dir=config.tfds_data_dir or None)
  return _TfdsImages(source, shape)


def eval_images(config: UnifiedLatentsConfig) -> np.ndarray:
  """The held-out images as one array [n, H, W, C]."""
  x = images(config.data, "eval", config.model.image_shape)
  if isinstance(x, np.ndarray):
    return x
  return np.stack([x[i]["x"] for i in range(len(x))])


def _source(config: UnifiedLatentsConfig):
  x = images(config.data, "train", config.model.image_shape)
  return data.ArraySource({"x": x}) if isinstance(x, np.ndarray) else x


def _iterator(config: UnifiedLatentsConfig, source, mesh: jax.sharding.Mesh,
              seed: int) -> grain.DatasetIterator:
  return data.batches(source, config.batch_size, seed=seed, pad_to_multiple=mesh.size,
                      process_index=jax.process_index(), process_count=jax.process_count())


def _optimizer(config: UnifiedLatentsConfig, lr: float, steps: int) -> optax.GradientTransformation:
  """Adam with linear warm-up and cosine decay to 0, global-norm clipping (spec of the small
  reproduction: Adam 1e-3, cosine, clip 1.0)."""
  schedule = optax.warmup_cosine_decay_schedule(0.0 if config.warmup_steps else lr, lr,
                                                max(config.warmup_steps, 1), max(steps, 2))
  return optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(schedule))


# ------------------------------------------------------------------ schedules and losses


def prior_schedule(config: UnifiedLatentsConfig) -> ul.LinearLogSNR:
  """lambda_z(t) = lambda_0 - (lambda_0 - lambda_min) t: its top is the encoder's noise level."""
  return ul.LinearLogSNR(config.lambda_0, config.prior_lambda_min)


def decoder_schedule(config: UnifiedLatentsConfig) -> ul.LinearLogSNR:
  return ul.LinearLogSNR(config.decoder_lambda_max, config.decoder_lambda_min)


def stage1_losses(config: UnifiedLatentsConfig, model: UnifiedLatents, x: jax.Array,
                  rng: jax.Array, prior_gradient: bool | None = None):
  """Per-example (L_z, L_x) of one draw of times and noises (paper Sec. 3).

  `z_0 = alpha_0 E(x) + sigma_0 eps` feeds the decoder (re-parameterised: its gradient reaches
  E); the prior sees `z_t` of the clean latent, stop-gradient on it when `prior_gradient` is
  False (the ablation).
  """
  prior_gradient = config.prior_gradient if prior_gradient is None else prior_gradient
  k_tz, k_tx, k_e0, k_ez, k_ex = jax.random.split(rng, 5)
  b = x.shape[0]
  z_clean = model.encoder(x)
  z_0 = ul.noisy_latent(z_clean, jax.random.normal(k_e0, z_clean.shape), config.lambda_0)
  z_prior = z_clean if prior_gradient else jax.lax.stop_gradient(z_clean)
  t_z = ul.stratified_times(k_tz, b, config.antithetic)
  t_x = ul.stratified_times(k_tx, b, config.antithetic)
  l_z = ul.prior_loss(model.prior, z_prior, t_z, jax.random.normal(k_ez, z_clean.shape),
                      prior_schedule(config))
  l_x = ul.decoder_loss(lambda x_t, lam: model.decoder(x_t, lam, z_0), x, t_x,
                        jax.random.normal(k_ex, x.shape), decoder_schedule(config),
                        config.loss_factor, config.bias, config.weight_convention)
  return l_z, l_x


def stage1_loss_fn(config: UnifiedLatentsConfig):
  """Task loss: mean over the batch of L_z + L_x (nats per image), padded rows masked."""
  def loss_fn(model: UnifiedLatents, batch, rng):
    l_z, l_x = stage1_losses(config, model, batch["x"], rng)
    mask = batch["mask"].astype(jnp.float32)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    prior, decoder = jnp.sum(l_z * mask) / count, jnp.sum(l_x * mask) / count
    return prior + decoder, {"prior_nats": prior, "decoder_loss": decoder,
                             "latent_bits": prior / math.log(2)}
  return loss_fn


def make_stage1_task(config: UnifiedLatentsConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Stage `stage1`: E, P and D trained jointly by one Adam."""
  return Task(
      init_model=functools.partial(UnifiedLatents, config.model),
      optimizer=_optimizer(config, config.lr, config.stage1.steps),
      loss_fn=stage1_loss_fn(config),
      train_data=_iterator(config, _source(config), mesh, config.stage1.seed),
  )


def stage1_graphdef(config: UnifiedLatentsConfig):
  return nnx.graphdef(nnx.eval_shape(lambda: UnifiedLatents(config.model, rngs=nnx.Rngs(0))))


def stage1_model(config: UnifiedLatentsConfig, state) -> UnifiedLatents:
  """The trained stage-1 model from its state (host arrays)."""
  return nnx.merge(stage1_graphdef(config), jax.tree.map(jnp.asarray, state))


def encode_clean(config: UnifiedLatentsConfig, state, x: np.ndarray, batch: int = 1024) -> np.ndarray:
  """z_clean = E(x) of every image, on the host [n, *latent_shape]."""
  graphdef = stage1_graphdef(config)
  encode = jax.jit(lambda s, xb: nnx.merge(graphdef, s).encoder(xb))
  state = jax.tree.map(jnp.asarray, state)
  return np.concatenate([np.asarray(encode(state, jnp.asarray(x[i:i + batch])))
                         for i in range(0, len(x), batch)])


def make_base_task(config: UnifiedLatentsConfig, mesh: jax.sharding.Mesh, inputs) -> Task:
  """Stage `base`: the base model on the frozen encoder's clean latents of the training set,
  sigmoid-weighted ELBO with bias `base_bias`, v-prediction, z_clean targets (Sec. 3.3)."""
  x = images(config.data, "train", config.model.image_shape)
  if not isinstance(x, np.ndarray):
    raise UsageError("stage base with data.source=tfds is not supported: the base stage encodes "
                     "the training set in memory; use data.source=shapes16 or digits for it")
  z = encode_clean(config, inputs["stage1"], x)
  schedule = prior_schedule(config)

  def loss_fn(model: BaseModel, batch, rng):
    k_t, k_e = jax.random.split(rng)
    z_clean = batch["z"]
    t = ul.stratified_times(k_t, z_clean.shape[0], config.antithetic)
    loss = ul.base_loss(model, z_clean, t, jax.random.normal(k_e, z_clean.shape), schedule,
                        config.base_bias, config.weight_convention)
    mask = batch["mask"].astype(jnp.float32)
    return jnp.sum(loss * mask) / jnp.maximum(jnp.sum(mask), 1.0), {}

  return Task(
      init_model=functools.partial(BaseModel, config.model),
      optimizer=_optimizer(config, config.base_lr, config.base.steps),
      loss_fn=loss_fn,
      train_data=_iterator(config, data.ArraySource({"z": z}), mesh, config.base.seed),
  )


# ------------------------------------------------------------------ held-out measurements


class Evaluator:
  """Held-out observables of a trained stage 1 (and base model), compiled once per config shape.

  Args:
    config: the run (its model shape, schedules and eval settings).
    x: held-out images [n, H, W, C] in [-1, 1].
  """

  def __init__(self, config: UnifiedLatentsConfig, x: np.ndarray):
    self.config, self.x = config, jnp.asarray(x)
    self._graphdef = stage1_graphdef(config)
    self._base_graphdef = nnx.graphdef(nnx.eval_shape(
        lambda: BaseModel(config.model, rngs=nnx.Rngs(0))))
    self._losses = jax.jit(self._losses_impl)
    self._reconstruct = jax.jit(self._reconstruct_impl)
    self._generate = jax.jit(self._generate_impl, static_argnums=(2,))

  def _model(self, state):
    return nnx.merge(self._graphdef, state)

  def _losses_impl(self, state, x, rng):
    # The decoder's term without its loss factor, so runs of different c_lf compare.
    return stage1_losses(dataclasses.replace(self.config, loss_factor=1.0), self._model(state), x, rng)

  def _decode(self, model, z_0, rng):
    e = self.config.eval
    lambdas = ddim.lambda_grid(self.config.decoder_lambda_min, self.config.decoder_lambda_max,
                               e.sampler_steps)
    x_1 = jax.random.normal(rng, (z_0.shape[0], *self.config.model.image_shape))
    return ddim.vp_sample(lambda x_t, lam: model.decoder(x_t, lam, z_0), x_1, lambdas, e.sampler)

  def _reconstruct_impl(self, state, x, rng):
    model = self._model(state)
    k_e, k_x = jax.random.split(rng)
    z_clean = model.encoder(x)
    z_0 = ul.noisy_latent(z_clean, jax.random.normal(k_e, z_clean.shape), self.config.lambda_0)
    return self._decode(model, z_0, k_x)

  def _generate_impl(self, states, rng, n):
    state, base_state = states
    model, base = self._model(state), nnx.merge(self._base_graphdef, base_state)
    k_z, k_x = jax.random.split(rng)
    e = self.config.eval
    lambdas = ddim.lambda_grid(self.config.prior_lambda_min, self.config.lambda_0, e.sampler_steps)
    z_start = jax.random.normal(k_z, (n, *self.config.model.latent_shape))
    z_0 = ddim.vp_sample(base, z_start, lambdas, e.sampler, denoise=False)  # stop at lambda_0
    return self._decode(model, z_0, k_x)

  def bits(self, state, seed: int = 0, batch: int = 500) -> dict[str, float]:
    """Latent bits per image (L_z / ln 2, bits_times stratified draws per image), bpp, and the
    decoder's weighted loss L_x / c_lf."""
    e = self.config.eval
    x = self.x[:e.bits_examples]
    state = jax.tree.map(jnp.asarray, state)
    l_z, l_x = [], []
    for r in range(e.bits_times):
      for i in range(0, len(x), batch):
        lz, lx = self._losses(state, x[i:i + batch], jax.random.key(1000 * seed + 7919 * r + i))
        l_z.append(np.asarray(lz))
        l_x.append(np.asarray(lx))
    nats, dec = float(np.mean(np.concatenate(l_z))), float(np.mean(np.concatenate(l_x)))
    bits = nats / math.log(2)
    return {"latent_bits": bits, "latent_bpp": bits / self.config.model.pixels,
            "prior_nats": nats, "decoder_loss_unscaled": dec}

  def reconstruct(self, state, seed: int = 0) -> np.ndarray:
    n = self.config.eval.psnr_examples
    state = jax.tree.map(jnp.asarray, state)
    return np.asarray(self._reconstruct(state, self.x[:n], jax.random.key(seed)))

  def generate(self, state, base_state, seed: int = 0) -> np.ndarray:
    states = jax.tree.map(jnp.asarray, (state, base_state))
    return np.asarray(self._generate(states, jax.random.key(seed), self.config.eval.base_samples))


def to_unit(x: np.ndarray) -> np.ndarray:
  """[-1, 1] -> [0, 1], clipped (PSNR's value range)."""
  return np.clip((np.asarray(x) + 1) / 2, 0, 1)


def band_errors(reconstruction: np.ndarray, reference: np.ndarray, pool: int = 4) -> dict[str, float]:
  """Mean squared error of the low-pass part (pool x pool block means) and of the rest."""
  def low(x):
    n, h, w, c = x.shape
    m = x.reshape(n, h // pool, pool, w // pool, pool, c).mean((2, 4), keepdims=True)
    return np.broadcast_to(m, (n, h // pool, pool, w // pool, pool, c)).reshape(x.shape)
  err = to_unit(reconstruction) - to_unit(reference)
  if err.shape[1] % pool or err.shape[2] % pool:
    return {"low_pass_mse": float("nan"), "high_pass_mse": float("nan")}
  lo = low(err)
  return {"low_pass_mse": float(np.mean(lo ** 2)), "high_pass_mse": float(np.mean((err - lo) ** 2))}
