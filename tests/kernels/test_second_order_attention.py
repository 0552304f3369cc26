"""second_order_attention (arXiv 2602.17363): Pallas kernels (interpret mode) against the dense
reference, forward and custom-VJP gradients for q, k, v and the decay."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kernels_pallas
from kernels_pallas.second_order_attention import reference


def _inputs(n, heads=2, dim=16, seed=0, q_scale=1.0):
  ks = jax.random.split(jax.random.key(seed), 4)
  q, k, v = (jax.random.normal(ks[i], (1, n, heads, dim)) for i in range(3))
  log_decay = -jax.nn.softplus(jax.random.normal(ks[3], (1, n, heads)) - 1.0)
  return q * q_scale, k, v, log_decay


def _reference(variant):
  if variant == "square":
    return reference.squared_attention
  return reference.exp_attention


# One tile layout per variant (block_q < block_k and block_q > block_k), shared by the tests
# below so that each kernel is compiled once.
_BLOCKS = {"square": (16, 32), "exp": (32, 16)}


def _kernel(variant, q, k, v, a):
  block_q, block_k = _BLOCKS[variant]
  return kernels_pallas.second_order_attention(q, k, v, a, variant=variant, block_q=block_q,
                                               block_k=block_k)


@pytest.mark.parametrize("variant", ["square", "exp"])
def test_forward_matches_reference(variant):
  q, k, v, a = _inputs(64)
  np.testing.assert_allclose(_kernel(variant, q, k, v, a), _reference(variant)(q, k, v, a),
                             atol=2e-5, rtol=1e-5)


def test_bfloat16_inputs_accumulate_in_float32():
  q, k, v, a = _inputs(64)
  low = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  out = _kernel("square", *low, a)
  assert out.dtype == jnp.bfloat16
  want = reference.squared_attention(*[x.astype(jnp.float32) for x in low], a)
  # bf16 output rounding (2^-8 relative) plus bf16 weights in the P @ V product.
  np.testing.assert_allclose(out.astype(jnp.float32), want, atol=2e-2 * float(jnp.max(jnp.abs(want))))


@functools.cache
def _grad_fns(variant, block):
  def loss(fn, q, k, v, a):
    out = fn(q, k, v, a)
    return jnp.sum(jnp.sin(out) * jnp.arange(out.shape[-1]))
  kernel = functools.partial(kernels_pallas.second_order_attention, variant=variant,
                             block_q=block, block_k=block)
  grad = lambda fn: jax.jit(jax.grad(functools.partial(loss, fn), argnums=(0, 1, 2, 3)))
  return grad(kernel), grad(_reference(variant))


@pytest.mark.parametrize("variant", ["square", "exp"])
def test_gradients_match_autodiff_of_reference(variant):
  q, k, v, a = _inputs(128, heads=1)  # N = 128, d = 16, block 32
  kernel_grads, ref_grads = _grad_fns(variant, 32)
  for name, got, want in zip("qkvA", kernel_grads(q, k, v, a), ref_grads(q, k, v, a)):
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(got / scale, want / scale, atol=2e-5, err_msg=f"d{name}")


def test_clamped_denominator_gradients_are_exact():
  # q ~ 1e-4 makes every row sum r_i ~ 1e-8 < eps: the op is then num / eps, whose gradient
  # keeps a row term in dAcs that the unclamped formula (cf. App. C.5) drops.
  q, k, v, a = _inputs(128, heads=1, dim=16, seed=3, q_scale=1e-4)
  kernel_grads, ref_grads = _grad_fns("square", 32)
  assert float(jnp.max(jnp.sum(reference.squared_weights(q, k, a), -1))) < 1e-6
  for name, got, want in zip("qkvA", kernel_grads(q, k, v, a), ref_grads(q, k, v, a)):
    scale = float(jnp.max(jnp.abs(want)))
    assert scale > 0
    np.testing.assert_allclose(got / scale, want / scale, atol=1e-5, err_msg=f"d{name}")


def test_strong_decay_stays_finite():
  # Acs reaches -3,840: differences of cumulative sums must not overflow or give NaN.
  q, k, v, _ = _inputs(64)
  a = jnp.full((1, 64, 2), -60.0)
  for variant in ("square", "exp"):
    out = _kernel(variant, q, k, v, a)
    want = _reference(variant)(q, k, v, a)
    assert bool(jnp.all(jnp.isfinite(out)))
    # exp(-60) ~ 1e-26: each token attends (almost) only to itself.
    np.testing.assert_allclose(out, v if variant == "square" else want, atol=1e-5)


def test_bad_inputs_raise_one_clear_error():
  q, k, v, a = _inputs(32, heads=1)
  with pytest.raises(ValueError, match="log_decay must be"):
    kernels_pallas.second_order_attention(q, k, v, a[:, :16])
  with pytest.raises(ValueError, match="divide the sequence length"):
    kernels_pallas.second_order_attention(q, k, v, a, block_q=24)
  with pytest.raises(ValueError, match="variant"):
    kernels_pallas.second_order_attention(q, k, v, a, variant="cube")
  with pytest.raises(ValueError, match=r"must share the shape \[batch, seq, heads, dim\]; got q\(1, 32, 1, 16\) "
                     r"k\(1, 16, 1, 16\)"):
    kernels_pallas.second_order_attention(q, k[:, :16], v, a)
  with pytest.raises(ValueError, match=r"must share the shape \[batch, seq, heads, dim\]"):
    kernels_pallas.exp_decay_attention(q[0], k[0], v[0], a)
  with pytest.raises(ValueError, match="must be floating"):
    kernels_pallas.second_order_attention(q, k, v, a.astype(jnp.int32))
  with pytest.raises(ValueError, match="log_decay must be"):  # static checks: raised while tracing
    jax.jit(kernels_pallas.second_order_attention)(q, k, v, a[:, :, :, None])


@functools.cache
def _padded_fns(variant):
  """Output and gradients (one program per length) with the default tiles, which pad."""
  def loss(fn, q, k, v, a):
    out = fn(q, k, v, a)
    return jnp.sum(jnp.sin(out) * jnp.arange(out.shape[-1])), out
  kernel = functools.partial(kernels_pallas.second_order_attention, variant=variant)
  both = lambda fn: jax.jit(jax.grad(functools.partial(loss, fn), argnums=(0, 1, 2, 3),
                                     has_aux=True))
  return both(kernel), both(_reference(variant))


@pytest.mark.parametrize("variant", ["square", "exp"])
@pytest.mark.parametrize("n", [1, 97, 160, pytest.param(1000, marks=pytest.mark.slow)])
def test_any_length_pads_internally(variant, n):
  # Default tiles at lengths no tile divides (N 1, 97, 1000 pad; 160 takes tile 32).
  q, k, v, a = _inputs(n, heads=1, dim=8, seed=n)
  kernel, ref = _padded_fns(variant)
  (grads, out), (ref_grads, ref_out) = kernel(q, k, v, a), ref(q, k, v, a)
  assert out.shape == q.shape
  np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
  for name, got, want in zip("qkvA", grads, ref_grads):
    assert got.shape == want.shape
    scale = max(float(jnp.max(jnp.abs(want))), 1.0)  # N 1: dq, dk, dA are exactly 0
    np.testing.assert_allclose(got / scale, want / scale, atol=2e-5, err_msg=f"d{name}")


def test_default_tiles_follow_the_length():
  from kernels_pallas.second_order_attention import ops
  assert [ops.default_block(n) for n in (1, 64, 97, 160, 1000, 1024, 4096)] == [
      16, 64, 16, 32, 128, 128, 128]
  assert ops._blocks(None, None, 1000) == (128, 128, 1024)
  assert ops._blocks(None, None, 160) == (32, 32, 160)
  assert ops._blocks(40, None, 160) == (40, 32, 160)  # explicit tiles never pad
  assert ops._blocks(None, 24, 120) == (24, 24, 120)  # 128 does not divide 120
