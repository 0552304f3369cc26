"""selective_scan (Mamba-1's scan, the hot path of StereoAdapter-2's ConvSS2D, arXiv 2602.16915):
sequential == associative == the Pallas GPU kernel and the TPU kernel (interpret mode on CPU),
forward and custom-VJP gradients against autodiff of the `lax.scan` reference; padding of any
length; vmap over directions; the platform dispatch; VMEM scratch bytes; and ahead-of-time
compiles for a TPU v5e topology with the real TPU compiler (when libtpu is importable)."""

from __future__ import annotations

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kernels_pallas
from kernels_pallas.selective_scan import ops, reference, tpu_kernel

# Tiny shapes (interpret mode is slow per step): L 70 (padded to 96 by the default chunk 32),
# N 4 states, 8 channels, batch 2; Pallas' TPU interpreter is slower per step still, so the TPU
# kernel runs on L 21 in chunks of 8 (padded to 24: three chunks carried in VMEM scratch).
SHAPE = (2, 70, 8, 4)
TPU_SHAPE, TPU_CHUNK = (1, 21, 8, 4), 8


_inputs = reference.random_inputs


def _loss(fn):
  def loss(*args):
    y = fn(*args)
    return jnp.sum(jnp.sin(y) * jnp.arange(y.shape[-1])), y
  return jax.grad(loss, argnums=tuple(range(6)), has_aux=True)


@functools.cache
def _fns(name):
  """jit of (grads, y) for one path, compiled once per test session."""
  if name == "sequential":
    fn = reference.sequential
  elif name == "associative":
    fn = reference.associative
  else:
    fn = functools.partial(kernels_pallas.selective_scan, backend=name,
                           chunk=TPU_CHUNK if name == "tpu" else None)
  return jax.jit(_loss(fn))


@pytest.fixture(scope="module")
def results():
  """name -> (inputs, (grads, y), (reference grads, reference y))."""
  args, tpu_args = _inputs(*SHAPE), _inputs(*TPU_SHAPE, seed=2)
  ref = _fns("sequential")(*args)
  out = {name: (args, _fns(name)(*args), ref) for name in ("associative", "gpu")}
  out["sequential"] = (args, ref, ref)
  out["tpu"] = (tpu_args, _fns("tpu")(*tpu_args), _fns("sequential")(*tpu_args))
  return out


def _numpy_scan(u, delta, A, B, C, D):
  """An independent float64 loop over time (numpy)."""
  u, delta, A, B, C, D = (np.asarray(x, np.float64) for x in (u, delta, A, B, C, D))
  batch, length, channels = u.shape
  y = np.zeros_like(u)
  for b in range(batch):
    s = np.zeros((channels, A.shape[1]))
    for t in range(length):
      s = np.exp(delta[b, t, :, None] * A) * s + (delta[b, t] * u[b, t])[:, None] * B[b, t]
      y[b, t] = s @ C[b, t] + D * u[b, t]
  return y


@pytest.mark.parametrize("name", ["sequential", "associative", "gpu", "tpu"])
def test_forward_matches_a_float64_loop(results, name):
  args, (_, y), _ = results[name]
  np.testing.assert_allclose(y, _numpy_scan(*args), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["associative", "gpu", "tpu"])
def test_forward_and_gradients_match_the_sequential_reference(results, name):
  args, (grads, y), (ref_grads, ref_y) = results[name]
  assert y.shape == ref_y.shape == args[0].shape
  np.testing.assert_allclose(y, ref_y, atol=1e-5)
  for label, got, want in zip(("u", "delta", "A", "B", "C", "D"), grads, ref_grads):
    assert got.shape == want.shape
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(got / scale, want / scale, atol=1e-4, err_msg=f"d{label}")


def test_default_chunks_and_tiles_follow_the_shapes():
  assert [ops.default_chunk(n) for n in (1, 20, 70, 19200)] == [8, 24, 32, 32]
  assert ops._gpu_tiles(8, 4) == (8, 8, 4) and ops._gpu_tiles(48, 8) == (32, 64, 8)
  assert ops._gpu_tiles(6, 3) == (8, 8, 4)  # powers of two for Triton, zero-padded
  assert tpu_kernel.channel_block(48) == (48, 48) and tpu_kernel.channel_block(200) == (128, 256)


def test_vmap_over_directions_matches_a_python_loop():
  # ConvSS2D's four directions, each with its own A and D: one vmap, grid axis added. Channels 6
  # and N 3 pad to the GPU tiles (8, 4); L 1 pads to one chunk of 8.
  args = [jnp.stack(x) for x in zip(*(_inputs(1, 1, 6, 3, seed=k) for k in range(4)))]
  fn = jax.vmap(functools.partial(kernels_pallas.selective_scan, backend="gpu"))
  got = jax.jit(fn)(*args)
  want = jnp.stack([reference.sequential(*(x[k] for x in args)) for k in range(4)])
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_bad_inputs_raise_one_clear_error():
  u, delta, A, B, C, D = _inputs(1, 16, 8, 4)
  with pytest.raises(ValueError, match=r"B must have shape \(1, 16, 4\)"):
    kernels_pallas.selective_scan(u, delta, A, B[:, :8], C)
  with pytest.raises(ValueError, match="D must have shape"):
    kernels_pallas.selective_scan(u, delta, A, B, C, D[:4])
  with pytest.raises(ValueError, match="multiple of 8"):
    kernels_pallas.selective_scan(u, delta, A, B, C, chunk=12)
  with pytest.raises(ValueError, match="implementation"):
    kernels_pallas.selective_scan(u, delta, A, B, C, implementation="cuda")
  with pytest.raises(ValueError, match="backend must be None"):
    kernels_pallas.selective_scan(u, delta, A, B, C, backend="mosaic")


# ---------------------------------------------------------------------------------------------
# Dispatch by lowering platform, VMEM scratch, ahead-of-time TPU compile (issue 17, item 3).
# ---------------------------------------------------------------------------------------------

def _fwd_bwd(*args):
  y, vjp = jax.vjp(kernels_pallas.selective_scan, *args)
  return y, vjp(jnp.ones_like(y))


def _abstract(batch=2, length=1000, channels=256, n=16, sharding=None):
  sds = lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=sharding)
  return (sds((batch, length, channels)), sds((batch, length, channels)), sds((channels, n)),
          sds((batch, length, n)), sds((batch, length, n)), sds((channels,)))


def test_default_backend_lowers_tpu_kernel_for_tpu_and_triton_for_cuda():
  traced = jax.jit(_fwd_bwd).trace(*_abstract())
  tpu_text = traced.lower(lowering_platforms=("tpu",)).as_text()
  cuda_text = traced.lower(lowering_platforms=("cuda",)).as_text()
  assert tpu_text.count("tpu_custom_call") == 2 and "triton" not in tpu_text  # fwd, bwd
  assert "tpu_custom_call" not in cuda_text and cuda_text.count("__gpu$xla.gpu.triton") == 2


def test_vmem_scratch_bytes_match_the_traced_kernels():
  jaxpr = jax.make_jaxpr(functools.partial(_fwd_bwd_tpu))(*_abstract(length=64, channels=256))
  got = {}
  for eqn in jaxpr.jaxpr.eqns:
    if eqn.primitive.name == "pallas_call":
      n = eqn.params["grid_mapping"].num_scratch_operands
      refs = eqn.params["jaxpr"].invars[len(eqn.params["jaxpr"].invars) - n:]
      got[eqn.params["name"]] = sum(math.prod(r.aval.shape) * r.aval.dtype.itemsize for r in refs)
  want = tpu_kernel.vmem_scratch_bytes(32, 16, 128)
  assert got == {"selective_scan_tpu_fwd": want["forward"], "selective_scan_tpu_bwd": want["backward"]}
  # state [16, 128] fp32; a chunk of states [32, 16, 128] plus carry and dA [16, 128] fp32.
  assert want == {"forward": 8192, "backward": 32 * 8192 + 2 * 8192}


def _fwd_bwd_tpu(*args):
  fn = functools.partial(kernels_pallas.selective_scan, backend="tpu", interpret=False)
  y, vjp = jax.vjp(fn, *args)
  return y, vjp(jnp.ones_like(y))


V5E_SCOPED_VMEM = 16 * 2**20  # Mosaic's default scoped VMEM limit on v5e


@pytest.fixture(scope="module")
def v5e_device():
  pytest.importorskip("libtpu", reason="libtpu (jax[tpu]) is not installed: no TPU compiler")
  for key, value in (("TPU_ACCELERATOR_TYPE", "v5litepod-1"), ("TPU_WORKER_HOSTNAMES", "localhost"),
                     ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")):
    os.environ.setdefault(key, value)
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  return topologies.get_topology_desc("v5e:2x2", "tpu").devices[0]


def test_aot_compiles_for_tpu_v5e(v5e_device):
  args = _abstract(sharding=jax.sharding.SingleDeviceSharding(v5e_device))
  nbytes = lambda tree: sum(math.prod(x.shape) * 4 for x in jax.tree.leaves(tree))
  for name, program, calls in (("forward", kernels_pallas.selective_scan, 1),
                               ("backward", _fwd_bwd, 2)):
    lowered = jax.jit(program).lower(*args)  # default backend: chosen by the lowering platform
    compiled = lowered.compile()
    assert lowered.as_text().count("tpu_custom_call") == calls
    memory = compiled.memory_analysis()
    assert nbytes(args) <= memory.argument_size_in_bytes <= 1.5 * nbytes(args)
    # The saved chunk-boundary states ([2, 32, 16, 256] fp32, 1 MiB) are the only residual:
    # far below all L states ([2, 1000, 256, 16] fp32, 33 MB), which the associative scan keeps.
    assert memory.temp_size_in_bytes < 8 * 2**20
    print(json.dumps({"op": "selective_scan", "program": name,
                      "temp_bytes": memory.temp_size_in_bytes,
                      "code_bytes": memory.generated_code_size_in_bytes}))
  scratch = tpu_kernel.vmem_scratch_bytes(32, 16, 128)
  assert 0 < max(scratch.values()) < V5E_SCOPED_VMEM
