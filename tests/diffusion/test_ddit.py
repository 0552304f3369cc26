"""DDiT's scheduler, FLOP counter and grouped sampler (arXiv 2602.16968) against references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpapers import diffusion
from jaxpapers.diffusion import ddit
from jaxpapers.nn import dit
from jaxpapers.nn import multipatch_dit as mp

TINY = mp.MultiPatchConfig(dit=dit.DiTConfig(input_shape=(16, 16), patch=(2, 2), width=16,
                                             depth=1, num_heads=2, num_classes=2,
                                             frequency_dim=16), scales=(2,), lora_rank=2)


def test_third_diff_is_the_formula_and_vanishes_on_quadratic_trajectories():
  rng = np.random.default_rng(0)
  a, b, c = (rng.standard_normal((3, 4, 4, 2)) for _ in range(3))
  z = [a + b * k + c * k ** 2 for k in range(4)]  # newest (k = 3) passed first
  np.testing.assert_allclose(ddit.third_diff(z[3], z[2], z[1], z[0]), 0, atol=1e-10)
  cubic = [k ** 3 * a for k in range(4)]
  np.testing.assert_allclose(ddit.third_diff(cubic[3], cubic[2], cubic[1], cubic[0]), 6 * a,
                             atol=1e-10)  # the third difference of k^3 is 3! = 6


def _numpy_statistic(delta, size, rho, per_channel):
  b, h, w, c = delta.shape
  out = np.zeros(b)
  for i in range(b):
    stds = []
    for y in range(0, h, size):
      for x in range(0, w, size):
        patch = delta[i, y:y + size, x:x + size]
        stds.append(patch.std(axis=(0, 1)).mean() if per_channel else patch.std())
    out[i] = np.quantile(stds, rho, method="linear")
  return out


@pytest.mark.parametrize("per_channel", [False, True])
def test_schedule_statistics_and_decision_match_a_numpy_loop(per_channel):
  rng = np.random.default_rng(1)
  history = rng.standard_normal((4, 5, 16, 16, 2)) * rng.uniform(0.1, 2, (1, 5, 1, 1, 1))
  delta = history[0] - 3 * history[1] + 3 * history[2] - history[3]
  stats = np.asarray(ddit.schedule_statistics(jnp.asarray(history, jnp.float32), 0.4, (4, 8),
                                              per_channel))
  for j, size in enumerate((4, 8)):
    np.testing.assert_allclose(stats[:, j], _numpy_statistic(delta, size, 0.4, per_channel),
                               rtol=1e-5)
  tau = float(np.median(stats))
  chosen = np.asarray(ddit.ddit_schedule(jnp.asarray(history, jnp.float32), tau, 0.4, (4, 8), 2,
                                         per_channel))
  expected = [max([s for s, v in zip((4, 8), row) if v < tau], default=2) for row in stats]
  np.testing.assert_array_equal(chosen, expected)


def test_scheduler_on_synthetic_histories():
  tau = 1e-3
  rng = np.random.default_rng(2)
  k = np.arange(4)[::-1].reshape(4, 1, 1, 1, 1)
  smooth = 0.3 - 0.1 * k + 0.02 * k ** 2 + np.zeros((4, 2, 32, 32, 1))
  noisy = smooth + rng.normal(0, 100 * tau, smooth.shape)
  assert list(ddit.ddit_schedule(jnp.asarray(smooth), tau, 0.4, (4, 8), 2)) == [8, 8]
  assert list(ddit.ddit_schedule(jnp.asarray(noisy), tau, 0.4, (4, 8), 2)) == [2, 2]
  patches = np.zeros((8, 8))
  patches.flat[rng.choice(64, 19, replace=False)] = 1  # 30 % of the 4 x 4 patches noisy
  part = smooth + np.kron(patches, np.ones((4, 4)))[None, None, :, :, None] * (noisy - smooth)
  assert list(ddit.ddit_schedule(jnp.asarray(part), tau, 0.4, (4,), 2)) == [4, 4]
  assert list(ddit.ddit_schedule(jnp.asarray(part), tau, 0.8, (4,), 2)) == [2, 2]


def test_forward_flops_match_the_spec_and_xla_cost_analysis():
  small = mp.MultiPatchConfig(dit=dit.DiTConfig(input_shape=(16, 16), patch=(2, 2), width=48,
                                                depth=4, num_heads=4, num_classes=1))
  blocks = [small.dit.depth * ddit.block_flops(small.num_tokens(p), 48) for p in (2, 4)]
  # Our protocol's estimates: about 17 MFLOP per sample at p = 2 and 3.7 at p = 4.
  assert blocks[0] == pytest.approx(17.4e6, rel=0.01) and blocks[1] == pytest.approx(3.85e6, rel=0.01)
  graphdef, state = nnx.split(nnx.eval_shape(lambda: mp.MultiPatchDiT(TINY, rngs=nnx.Rngs(0))))
  x = jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32)
  t, labels = jax.ShapeDtypeStruct((1,), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.int32)
  for size in (2, 4):
    fn = jax.jit(lambda s, x, t, l, size=size: nnx.merge(graphdef, s).blocks(
        *nnx.merge(graphdef, s).tokens(x, t, l, size), size))
    xla = fn.lower(state, x, t, labels).compile().cost_analysis()["flops"]
    counted = TINY.dit.depth * ddit.block_flops(TINY.num_tokens(size), 16)
    if size == 4:  # LoRA's extra matmuls (rank 2) run only off the base size
      counted += 2 * 2 * TINY.num_tokens(size) * 2 * (16 + 64)
    # XLA also counts the norms, softmax, GELU and embeddings: within 30 %.
    assert counted == pytest.approx(xla, rel=0.3), (size, counted, xla)


def test_flop_ratio_all_coarse_equals_the_forward_ratio_and_teacache_skips_cost_less():
  sizes = np.full((10, 3), 4)
  ratio = ddit.forward_flops(TINY, 4) / ddit.forward_flops(TINY, 2)
  assert ddit.flop_ratio(sizes, TINY) == pytest.approx(ratio, rel=1e-12)
  mixed = np.full((10, 2), 2)
  mixed[5:, 1] = 4
  assert ddit.flop_ratio(mixed, TINY) == pytest.approx((1 + (5 + 5 * ratio) / 10) / 2)
  computed = np.ones((10, 2), bool)
  computed[3:7] = False
  skip = ddit.skipped_flops(TINY, 2) / ddit.forward_flops(TINY, 2)
  assert ddit.flop_ratio(np.full((10, 2), 2), TINY, computed) == pytest.approx(0.6 + 0.4 * skip)


@pytest.fixture(scope="module")
def forwards():
  def build():
    m = mp.MultiPatchDiT(TINY, rngs=nnx.Rngs(0))
    leaves, treedef = jax.tree.flatten(nnx.state(m))
    keys = jax.random.split(jax.random.key(3), len(leaves))
    nnx.update(m, jax.tree.unflatten(treedef, [v + 0.2 * jax.random.normal(k, v.shape)
                                               for k, v in zip(keys, leaves)]))
    return nnx.state(m)
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: mp.MultiPatchDiT(TINY, rngs=nnx.Rngs(0))))
  return ddit.PatchForwards(nnx.merge(graphdef, jax.jit(build)()))


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(4)
  return rng.standard_normal((8, 16, 16, 1)).astype(np.float32), rng.integers(0, 2, 8).astype(np.int32)


def test_base_schedule_equals_the_shared_euler_sampler(forwards, batch):
  noise, labels = batch
  steps = 6
  out = ddit.ddit_sample(forwards, noise, labels, steps, tau=0.0)
  assert (out.sizes == 2).all() and out.computed.all()
  reference = diffusion.euler_sample(lambda x, t, l, a: forwards.velocity(x, t, l, 2),
                                     jnp.asarray(noise), jnp.asarray(labels), steps)
  np.testing.assert_allclose(out.samples, reference, atol=1e-4)  # scan vs per-step programs


def test_grouped_mixed_schedule_equals_each_sample_run_alone(forwards, batch):
  noise, labels = batch
  steps = 6
  rng = np.random.default_rng(5)
  schedule = np.where(rng.random((steps, 8)) < 0.5, 4, 2).astype(np.int32)
  out = ddit.ddit_sample(forwards, noise, labels, steps, schedule=schedule, min_chunk=2)
  np.testing.assert_array_equal(out.sizes, schedule)
  for i in (0, 5):
    alone = ddit.ddit_sample(forwards, noise[i:i + 1], labels[i:i + 1], steps,
                             schedule=schedule[:, i:i + 1], min_chunk=1)
    np.testing.assert_allclose(out.samples[i], alone.samples[0], atol=1e-5)
  padded = ddit.ddit_sample(forwards, noise, labels, steps, schedule=schedule, min_chunk=8)
  np.testing.assert_allclose(padded.samples, out.samples, atol=1e-5)  # padding rows dropped


def test_threshold_extremes_give_base_and_all_coarse(forwards, batch):
  noise, labels = batch
  coarse = ddit.ddit_sample(forwards, noise, labels, 6, tau=np.inf)
  assert (coarse.sizes[:3] == 2).all() and (coarse.sizes[3:] == 4).all()
  assert np.isnan(coarse.statistics[:3]).all() and np.isfinite(coarse.statistics[3:]).all()
  assert (ddit.ddit_sample(forwards, noise, labels, 6, tau=0.0).sizes == 2).all()
  assert ddit._chunks(37, 1) == [32, 4, 1] and ddit._chunks(37, 8) == [32, 8]  # pylint: disable=protected-access


def test_teacache_reuses_the_residual_and_never_across_a_size_change(forwards, batch):
  noise, labels = batch
  steps = 6
  plain = ddit.ddit_sample(forwards, noise, labels, steps, tau=np.inf)
  never = ddit.ddit_sample(forwards, noise, labels, steps, tau=np.inf,
                           teacache=ddit.TeaCache(threshold=0.0))
  assert never.computed.all()
  np.testing.assert_allclose(never.samples, plain.samples, atol=1e-5)
  always = ddit.ddit_sample(forwards, noise, labels, steps, tau=np.inf,
                            teacache=ddit.TeaCache(threshold=1e9))
  # Computed: the first and last steps, and step 3 where the size changes from 2 to 4.
  np.testing.assert_array_equal(always.computed.all(axis=1), [1, 0, 0, 1, 0, 1])
  assert not always.computed[[1, 2, 4]].any()
  # A skipped step = head(tokens + cached residual): with the residual of the same input it is
  # the full forward.
  x, t = jnp.asarray(noise[:4]), jnp.full((4,), 0.7)
  for size in (2, 4):
    u, residual = forwards.full(x, t, labels[:4], size)
    np.testing.assert_allclose(forwards.skip(x, t, labels[:4], residual, size), u, atol=1e-5)
    np.testing.assert_allclose(u, forwards.velocity(x, t, labels[:4], size), atol=1e-5)


def test_teacache_polynomial_fit_recovers_a_known_polynomial():
  x = np.linspace(0.0, 0.5, 50)
  coefficients = ddit.fit_teacache_coefficients(x, 3 * x ** 2 - x + 0.1, degree=2)
  np.testing.assert_allclose(coefficients, [3, -1, 0.1], atol=1e-8)
