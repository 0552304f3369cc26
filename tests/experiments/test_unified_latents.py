"""Unified Latents experiment (arXiv 2602.17270): smoke results, config checks, the stage-1 loss's
gradient paths, the base stage's latents, and the paper architectures' shapes."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers.core.errors import ConfigError
from jaxpapers.diffusion import unified_latents as ul
from jaxpapers.experiments.unified_latents import model
from jaxpapers.experiments.unified_latents.run import EXPERIMENT
from jaxpapers.nn import ul_models


def test_smoke_report_covers_the_analytic_checks_and_joint_training(smoke_report):
  """The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed."""
  run = smoke_report("unified_latents")
  ids = {c["id"] for c in run.record["claims"]}
  assert ids == {"bitrate_gaussian_s1", "bitrate_gaussian_s0_5", "eps_x_form_identity",
                 "weight_limits", "decoder_unit_weight_is_elbo", "sigma_0",
                 "variance_preserving", "joint_steps_reduce_loss"}
  assert (run.folder / "unified_latents.png").read_bytes()[:4] == b"\x89PNG"
  measured = json.loads((run.folder / "measurements.json").read_text())
  analytic = measured["analytic"]
  assert analytic["gaussian_s1"]["exact_nats"] == pytest.approx(20.03, abs=0.005)
  assert analytic["gaussian_s0.5"]["exact_nats"] == pytest.approx(14.56, abs=0.005)
  joint = measured["runs"]["joint"]
  # bits = nats / ln 2; bpp divides by the 256 pixels of a shapes16 image.
  assert joint["latent_bits"] == pytest.approx(joint["prior_nats"] / np.log(2), rel=1e-6)
  assert joint["latent_bpp"] == pytest.approx(joint["latent_bits"] / 256, rel=1e-6)
  assert 0 < joint["psnr"] < 40


def test_config_refuses_bad_values():
  with pytest.raises(ConfigError, match="weight_convention"):
    EXPERIMENT.config("smoke", ["weight_convention=upside_down"])
  with pytest.raises(ConfigError, match="prior_lambda_min"):
    EXPERIMENT.config("smoke", ["prior_lambda_min=6"])
  with pytest.raises(ConfigError, match="data.source"):
    EXPERIMENT.config("smoke", ["data.source=mnist"])
  with pytest.raises(ConfigError, match="rate_loss_factors"):
    EXPERIMENT.config("smoke", ["rate_loss_factors=1.0,1.5"])
  with pytest.raises(ConfigError, match="eval.sampler"):
    EXPERIMENT.config("smoke", ["eval.sampler=heun"])
  digits = EXPERIMENT.config("smoke", ["data.source=digits", "data.eval_examples=100"])
  assert digits.model.image_shape == (8, 8, 1) and digits.model.pixels == 64
  x = model.eval_images(digits)
  assert x.shape == (100, 8, 8, 1) and x.min() == -1.0 and x.max() == 1.0
  assert EXPERIMENT.stage_names == ("stage1", "base")


@pytest.fixture(scope="module")
def tiny():
  config = EXPERIMENT.config("smoke", ["data.train_examples=64", "data.eval_examples=16"])
  # Initialised in one compiled program (eager construction compiles every initializer op).
  state = jax.jit(lambda: nnx.state(ul_models.UnifiedLatents(config.model, rngs=nnx.Rngs(0))))()
  return config, state


def test_stop_gradient_cuts_only_the_prior_path_into_the_encoder(tiny):
  """R4's ablation: d L_z / d E is zero with prior_gradient=False and not with True; the
  decoder's path (through the re-parameterised z_0) reaches E in both."""
  config, state = tiny
  graphdef = model.stage1_graphdef(config)
  x = jnp.asarray(model.eval_images(config)[:8])
  # The decoder's output layer starts at zero (no gradient reaches z_0 then): perturb it.
  net = nnx.merge(graphdef, state)
  out = net.decoder.net.out.kernel
  out[...] = 0.1 * jax.random.normal(jax.random.key(1), out.shape)
  state = nnx.state(net)

  def encoder_grad_norm(state, which, prior_gradient):
    def loss(s):
      l_z, l_x = model.stage1_losses(config, nnx.merge(graphdef, s), x, jax.random.key(0),
                                     prior_gradient)
      return jnp.mean(l_z if which == "prior" else l_x)
    grads = jax.grad(loss)(state)
    return sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads["encoder"]))

  # The three gradients in one compiled program (eager autodiff compiles every op on its own).
  norms = jax.jit(lambda s: [encoder_grad_norm(s, *case) for case in
                             (("prior", False), ("prior", True), ("decoder", False))])(state)
  no_prior, with_prior, decoder = (float(n) for n in norms)
  assert no_prior == 0.0
  assert with_prior > 0.0
  assert decoder > 0.0


def test_stage1_losses_match_the_library_losses_by_hand(tiny):
  """The task's L_z is `prior_loss` of E(x) (w = 1, KL included), L_x `decoder_loss` given z_0,
  with the same draws of times and noises, written out here."""
  config, state = tiny
  graphdef = model.stage1_graphdef(config)
  x = jnp.asarray(model.eval_images(config)[:8])
  rng = jax.random.key(3)

  @jax.jit  # library and hand computation in one compiled program (eager ops compile one by one)
  def both(state):
    net = nnx.merge(graphdef, state)
    l_z, l_x = model.stage1_losses(config, net, x, rng)
    k_tz, k_tx, k_e0, k_ez, k_ex = jax.random.split(rng, 5)
    z = net.encoder(x)
    a0, s0 = ul.encoder_noise(5.0)
    z_0 = a0 * z + s0 * jax.random.normal(k_e0, z.shape)
    t_z, t_x = ul.stratified_times(k_tz, 8), ul.stratified_times(k_tx, 8)
    eps_z, eps_x = jax.random.normal(k_ez, z.shape), jax.random.normal(k_ex, x.shape)
    lam_z = 5.0 - 15.0 * t_z
    a, s = jnp.sqrt(jax.nn.sigmoid(lam_z))[:, None], jnp.sqrt(jax.nn.sigmoid(-lam_z))[:, None]
    z_t = a * z + s * eps_z
    eps_hat = s * z_t + a * net.prior(z_t, lam_z)
    kl = 0.5 * jnp.sum(jax.nn.sigmoid(-10.0) * z ** 2 + jax.nn.sigmoid(10.0) - 1
                       - jnp.log(jax.nn.sigmoid(10.0)), 1)
    expected_z = 0.5 * 15 * jnp.sum((eps_z - eps_hat) ** 2, 1) + kl
    lam_x = 10.0 - 20.0 * t_x
    a, s = (jnp.sqrt(jax.nn.sigmoid(lam_x))[:, None, None, None],
            jnp.sqrt(jax.nn.sigmoid(-lam_x))[:, None, None, None])
    x_t = a * x + s * eps_x
    eps_hat = s * x_t + a * net.decoder(x_t, lam_x, z_0)
    expected_x = 1.5 * 0.5 * 20 * jax.nn.sigmoid(-lam_x) * jnp.sum((eps_x - eps_hat) ** 2, (1, 2, 3))
    return l_z, expected_z, l_x, expected_x

  l_z, expected_z, l_x, expected_x = both(jax.tree.map(jnp.asarray, state))
  np.testing.assert_allclose(np.asarray(l_z), np.asarray(expected_z), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(l_x), np.asarray(expected_x), rtol=1e-5)


def test_base_stage_trains_on_the_frozen_encoders_clean_latents(tiny):
  config, state = tiny
  mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
  task = model.make_base_task(config, mesh, {"stage1": state})
  batch = next(task.train_data)
  x = model.images(config.data, "train", config.model.image_shape)
  z = model.encode_clean(config, state, x)
  assert batch["z"].shape == (config.batch_size, 16)
  # Every training latent is E(x) of a training image (rows shuffled by grain).
  distance = np.abs(batch["z"][:, None] - z[None]).max(-1).min(-1)
  np.testing.assert_allclose(distance, 0, atol=1e-6)
  # The base model built and its loss evaluated in one compiled program (eager is op by op).
  loss = jax.jit(lambda b: task.loss_fn(task.init_model(rngs=nnx.Rngs(0)), b, jax.random.key(0))[0])(
      {k: jnp.asarray(v) for k, v in batch.items()})
  assert np.isfinite(float(loss)) and float(loss) > 0


@pytest.mark.slow
def test_paper_architectures_have_the_papers_shapes():
  """ResNet encoder 512 -> 32 x 32 x 32 latents (16x), ViT prior and UViT decoder predict
  tensors of their inputs' shapes (abstract evaluation: nothing is computed; about 100 s of
  tracing on 2 cores)."""
  paper = EXPERIMENT.config("paper").model
  assert paper.latent_shape == (32, 32, 32)
  net = nnx.eval_shape(lambda: ul_models.UnifiedLatents(paper, rngs=nnx.Rngs(0)))
  x = jax.ShapeDtypeStruct((1, 512, 512, 3), jnp.float32)
  lam = jax.ShapeDtypeStruct((1,), jnp.float32)
  z = jax.ShapeDtypeStruct((1, 32, 32, 32), jnp.float32)
  build = lambda: ul_models.UnifiedLatents(paper, rngs=nnx.Rngs(0))  # noqa: E731
  assert jax.eval_shape(lambda x: build().encoder(x), x).shape == (1, 32, 32, 32)
  assert jax.eval_shape(lambda z, lam: build().prior(z, lam), z, lam).shape == (1, 32, 32, 32)
  assert jax.eval_shape(lambda x, lam, z: build().decoder(x, lam, z), x, lam, z).shape == (1, 512, 512, 3)
  assert len(net.prior.body.blocks) == 8 and net.prior.body.pos.shape == (1024, 1024)


@pytest.mark.slow  # eager construction and forward of three networks: ~40 s of dispatch
def test_reduced_paper_architectures_run():
  """The ResNet / ViT / UViT networks at 32 x 32: 4x down-sampling, zero-initialised outputs."""
  small = ul_models.ULConfig(architecture="paper", image_shape=(32, 32, 3), latent_channels=4,
                             encoder_channels=(8, 16), encoder_blocks=(1, 1), prior_width=32,
                             prior_depth=1, decoder_channels=(8,), decoder_width=32,
                             decoder_depth=1, base_width=32, base_depth=1, num_heads=2)
  net = ul_models.UnifiedLatents(small, rngs=nnx.Rngs(0))
  xs = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  zs = net.encoder(xs)
  assert zs.shape == (2, 8, 8, 4)
  lam2 = jnp.array([-3.0, 4.0])
  # Zero-initialised output layers: v = 0 at initialisation, so x_hat = alpha z_t.
  np.testing.assert_array_equal(np.asarray(net.prior(zs, lam2)), 0)
  np.testing.assert_array_equal(np.asarray(net.decoder(xs, lam2, zs)), 0)
  assert ul_models.BaseModel(small, rngs=nnx.Rngs(0))(zs, lam2).shape == zs.shape
