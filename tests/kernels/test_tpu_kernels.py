"""TPU (Mosaic) kernels of block-sparse attention (SpargeAttention2, arXiv 2602.13515) and 2Mamba
second-order attention (arXiv 2602.17363, Secs. 5-6): in Pallas' TPU interpret mode on CPU
against the dense jnp references (forward and gradients), the platform dispatch in programs
lowered for TPU and for CUDA from this host, VMEM scratch bytes against the traced kernels, and
ahead-of-time compiles for a TPU v5e topology with the real TPU compiler (when libtpu is
importable; CI installs it)."""

from __future__ import annotations

import functools
import json
import math
import os
import time

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
import pytest

import kernels_pallas
from kernels_pallas.block_sparse_attention import tpu_kernel as bs_tpu
from kernels_pallas.second_order_attention import reference as so_reference
from kernels_pallas.second_order_attention import tpu_kernel as so_tpu


def _max_err(a, b) -> float:
  return float(jnp.max(jnp.abs(jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32))))


# ---------------------------------------------------------------------------------------------
# Block-sparse attention.
# ---------------------------------------------------------------------------------------------

def _bs_inputs(seq_q, seq_k, block_q, block_k, heads=1, dim=32, seed=0):
  rng = np.random.default_rng(seed)
  q = jnp.asarray(rng.normal(size=(1, seq_q, heads, dim)), jnp.float32)
  k, v = (jnp.asarray(rng.normal(size=(1, seq_k, heads, dim)), jnp.float32) for _ in range(2))
  nq, nk = -(-seq_q // block_q), -(-seq_k // block_k)
  mask = rng.random((1, heads, nq, nk)) < 0.5
  mask[..., 0, :] = False
  mask[..., 0, nk - 1] = True  # the padded last key block (kv_len masking) is kept
  mask[..., -1, :] = False  # an empty row: zeros out
  weights = jnp.asarray(rng.normal(size=q.shape), jnp.float32)
  return (q, k, v), jnp.asarray(mask), weights


def _bs_loss(mask, weights, block_q, block_k, **kw):
  def loss(q, k, v):
    out = kernels_pallas.block_sparse_attention(q, k, v, mask, block_q=block_q, block_k=block_k,
                                                **kw)
    return jnp.sum(weights * out), out
  return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)


# (seq_q, seq_k, block_q, block_k): lane-dense rows (block_q 128) and column rows (block_q 32);
# both pad the keys (kv_len masking) and the queries.
BS_CASES = {"lane_dense": (200, 150, 128, 64), "columns": (60, 40, 32, 16)}


@pytest.mark.parametrize("case", list(BS_CASES))
def test_block_sparse_tpu_interpret_matches_reference(case):
  seq_q, seq_k, bq, bk = BS_CASES[case]
  (q, k, v), mask, weights = _bs_inputs(seq_q, seq_k, bq, bk)
  (_, out), grads = jax.jit(_bs_loss(mask, weights, bq, bk, backend="tpu"))(q, k, v)
  (_, ref), ref_grads = _bs_loss(mask, weights, bq, bk, implementation="reference")(q, k, v)
  assert out.shape == q.shape
  assert _max_err(out, ref) < 1e-5
  assert float(jnp.max(jnp.abs(out[:, (mask.shape[2] - 1) * bq:]))) == 0.0  # the empty row
  for g, r in zip(grads, ref_grads):
    assert _max_err(g, r) < 1e-4


def test_block_sparse_tpu_refuses_tiles_it_cannot_run():
  (q, k, v), _, _ = _bs_inputs(64, 64, 16, 16)
  mask = jnp.ones((1, 1, 16, 16), bool)
  with pytest.raises(ValueError, match="multiples of 8"):
    kernels_pallas.block_sparse_attention(q, k, v, mask, block_q=4, block_k=4, backend="tpu")
  with pytest.raises(ValueError, match="backend must be None"):
    kernels_pallas.block_sparse_attention(q, k, v, mask, block_q=4, block_k=4, backend="mosaic")


# ---------------------------------------------------------------------------------------------
# Second-order attention (2Mamba squared, 2Mamba-E exponential).
# ---------------------------------------------------------------------------------------------

def _so_inputs(n, heads=1, dim=16, seed=0):
  ks = jax.random.split(jax.random.key(seed), 4)
  q, k, v = (jax.random.normal(ks[i], (1, n, heads, dim)) for i in range(3))
  log_decay = -jax.nn.softplus(jax.random.normal(ks[3], (1, n, heads)) - 1.0)
  return q, k, v, log_decay


def _so_loss(fn):
  def loss(q, k, v, a):
    out = fn(q, k, v, a)
    return jnp.sum(jnp.sin(out) * jnp.arange(out.shape[-1])), out
  return jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True)


@pytest.mark.parametrize("variant,n", [
    ("square", 200),  # tiles of 128, padded to 256
    ("exp", 50),  # one tile, padded to 56
    pytest.param("square", 50, marks=pytest.mark.slow),
    pytest.param("exp", 200, marks=pytest.mark.slow),
])
def test_second_order_tpu_interpret_matches_reference(variant, n):
  assert so_tpu.tpu_blocks(n)[2] == (256 if n == 200 else 56)
  q, k, v, a = _so_inputs(n, seed=n)
  kernel = functools.partial(kernels_pallas.second_order_attention, variant=variant,
                             backend="tpu")
  ref = so_reference.squared_attention if variant == "square" else so_reference.exp_attention
  grads, out = jax.jit(_so_loss(kernel))(q, k, v, a)
  ref_grads, ref_out = _so_loss(ref)(q, k, v, a)
  assert out.shape == q.shape
  np.testing.assert_allclose(out, ref_out, atol=2e-5, rtol=1e-5)
  for name, got, want in zip("qkvA", grads, ref_grads):
    scale = max(float(jnp.max(jnp.abs(want))), 1.0)
    np.testing.assert_allclose(got / scale, want / scale, atol=2e-5, err_msg=f"d{name}")


def test_tpu_tiles_follow_the_length():
  assert so_tpu.tpu_blocks(1) == (8, 8, 8)
  assert so_tpu.tpu_blocks(128) == (128, 128, 128)
  assert so_tpu.tpu_blocks(1000) == (128, 128, 1024)
  assert so_tpu.tpu_blocks(1000, 256, 16) == (256, 128, 1024)  # 16 is not a TPU tile


# ---------------------------------------------------------------------------------------------
# Dispatch by lowering platform, and VMEM scratch bytes (no libtpu needed).
# ---------------------------------------------------------------------------------------------

def _bs_op(q, k, v, mask, **kw):
  return kernels_pallas.block_sparse_attention(q, k, v, mask, block_q=128, block_k=64, **kw)


def _so_op(variant):
  return lambda q, k, v, a, **kw: kernels_pallas.second_order_attention(q, k, v, a,
                                                                        variant=variant, **kw)


def _with_grads(fn, n_grads):
  """`(out, grads of sum(out) w.r.t. the first n_grads args)`."""
  def both(*args):
    out, vjp = jax.vjp(lambda *x: fn(*x, *args[n_grads:]), *args[:n_grads])
    return out, vjp(jnp.ones_like(out))
  return both


def _abstract(dtype=jnp.bfloat16, sharding=None):
  """Abstract args (B 1, seq 512, heads 2, dim 128) of both ops: {"block_sparse", "second_order"}."""
  sds = lambda shape, dt=dtype: jax.ShapeDtypeStruct(shape, dt, sharding=sharding)
  qkv = (sds((1, 512, 2, 128)),) * 3
  return {"block_sparse": qkv + (sds((1, 2, 4, 8), jnp.bool_),),
          "second_order": qkv + (sds((1, 512, 2), jnp.float32),)}


OPS = {"block_sparse": (_bs_op, 3), "square": (_so_op("square"), 4), "exp": (_so_op("exp"), 4)}


@pytest.mark.parametrize("op", list(OPS))
def test_default_backend_lowers_tpu_kernel_for_tpu_and_triton_for_cuda(op):
  fn, n_grads = OPS[op]
  args = _abstract()["block_sparse" if op == "block_sparse" else "second_order"]
  traced = jax.jit(_with_grads(fn, n_grads)).trace(*args)
  tpu_text = traced.lower(lowering_platforms=("tpu",)).as_text()
  cuda_text = traced.lower(lowering_platforms=("cuda",)).as_text()
  assert tpu_text.count("tpu_custom_call") == 3 and "triton" not in tpu_text  # fwd, 2 bwd
  assert "tpu_custom_call" not in cuda_text and "__gpu$xla.gpu.triton" in cuda_text


def _pallas_scratch_bytes(fn, *args) -> dict[str, int]:
  """Bytes of the VMEM scratch operands of every `pallas_call` traced by `fn(*args)`, by name."""
  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "pallas_call":
        n = eqn.params["grid_mapping"].num_scratch_operands
        refs = eqn.params["jaxpr"].invars[len(eqn.params["jaxpr"].invars) - n:]
        yield eqn.params["name"], sum(math.prod(r.aval.shape) * r.aval.dtype.itemsize for r in refs)
      for param in eqn.params.values():
        for sub in param if isinstance(param, (tuple, list)) else (param,):
          if isinstance(sub, jex.core.ClosedJaxpr):
            yield from walk(sub.jaxpr)
          elif isinstance(sub, jex.core.Jaxpr):
            yield from walk(sub)
  return dict(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def test_vmem_scratch_bytes_match_the_traced_kernels():
  args = _abstract(jnp.float32)
  got = _pallas_scratch_bytes(_with_grads(functools.partial(_bs_op, backend="tpu"), 3),
                              *args["block_sparse"])
  want = bs_tpu.vmem_scratch_bytes(128, 64, 128)
  assert got == {f"block_sparse_attention_tpu_{name}": b for name, b in want.items()}
  # m, l lane-replicated [128, 128] and acc [128, 128] fp32; dq [128, 128]; dk, dv [64, 128].
  assert want == {"forward": 3 * 65536, "dq": 65536, "dkv": 2 * 32768}
  for variant in ("square", "exp"):
    got = _pallas_scratch_bytes(_with_grads(functools.partial(_so_op(variant), backend="tpu"), 4),
                                *args["second_order"])
    want = so_tpu.vmem_scratch_bytes(128, 128, 128)
    names = {"forward": "fwd", "dkv": "dkv", "dq": "dq"}
    assert got == {f"second_order_attention_{variant}_tpu_{names[k]}": b for k, b in want.items()}
    assert want == {"forward": 3 * 65536, "dkv": 2 * 65536 + 512, "dq": 65536}


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compiles for a TPU v5e topology (the real TPU compiler; needs libtpu).
# ---------------------------------------------------------------------------------------------

V5E_SCOPED_VMEM = 16 * 2**20  # Mosaic's default scoped VMEM limit on v5e


@pytest.fixture(scope="module")
def v5e_device():
  pytest.importorskip("libtpu", reason="libtpu (jax[tpu]) is not installed: no TPU compiler")
  # No TPU here: name the chip for libtpu's init, and let it load beside other processes.
  for key, value in (("TPU_ACCELERATOR_TYPE", "v5litepod-1"), ("TPU_WORKER_HOSTNAMES", "localhost"),
                     ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")):
    os.environ.setdefault(key, value)
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  return topologies.get_topology_desc("v5e:2x2", "tpu").devices[0]


def _nbytes(tree) -> int:
  return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("op", list(OPS))
def test_aot_compiles_for_tpu_v5e(op, v5e_device):
  fn, n_grads = OPS[op]
  sharding = jax.sharding.SingleDeviceSharding(v5e_device)
  args = _abstract(sharding=sharding)["block_sparse" if op == "block_sparse" else "second_order"]
  for name, program in (("forward", fn), ("backward", _with_grads(fn, n_grads))):
    t0 = time.perf_counter()
    lowered = jax.jit(program).lower(*args)  # default backend: chosen by the lowering platform
    compiled = lowered.compile()
    seconds = time.perf_counter() - t0
    text = lowered.as_text()
    assert text.count("tpu_custom_call") == (1 if name == "forward" else 3)
    assert "triton" not in text
    memory = compiled.memory_analysis()
    # HBM sizes: the arrays' bytes plus the padding of TPU tiled layouts (small vectors).
    assert _nbytes(args) <= memory.argument_size_in_bytes <= 1.5 * _nbytes(args)
    outputs = _nbytes(jax.eval_shape(program, *args))
    assert outputs <= memory.output_size_in_bytes <= 1.5 * outputs
    assert memory.generated_code_size_in_bytes > 0
    print(json.dumps({"op": op, "program": name, "compile_s": round(seconds, 2),
                      "argument_bytes": memory.argument_size_in_bytes,
                      "output_bytes": memory.output_size_in_bytes,
                      "temp_bytes": memory.temp_size_in_bytes,
                      "code_bytes": memory.generated_code_size_in_bytes}))  # the compile record
  scratch = (bs_tpu.vmem_scratch_bytes(128, 64, 128) if op == "block_sparse"
             else so_tpu.vmem_scratch_bytes(128, 128, 128))
  print(json.dumps({"op": op, "vmem_scratch_bytes": scratch}))
  assert 0 < max(scratch.values()) < V5E_SCOPED_VMEM
