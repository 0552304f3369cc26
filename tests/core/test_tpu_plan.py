"""`jaxpapers plan --topology`: the real TPU compiler from this CPU host (libtpu, the tpu extra).

The topology tests need libtpu (`pip install -e '.[test,tpu]'`, README's command); without it
they are skipped with that reason. The environment checks of `_libtpu_env` run everywhere.
"""

import json
import os
import subprocess
import sys

import pytest

from jaxpapers import _libtpu_env
from jaxpapers.core import plan as plan_lib
from jaxpapers.core import tpu
from jaxpapers.core.errors import UsageError
from jaxpapers.core.testing import cli_env

needs_libtpu = pytest.mark.skipif(not tpu.libtpu_installed(),
                                  reason="libtpu missing: pip install -e '.[test,tpu]'")
GiB = 2**30
REFUSAL = ("jax.errors.JaxRuntimeError: RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total "
           "memory required for HLO temporaries (644.68G) exceeds available HBM (95.74G).")


def test_quiet_libtpu_only_without_chips_with_libtpu_and_unset_variables():
  env = {}
  assert _libtpu_env.quiet_libtpu(env, chips=False, installed=True) == env
  assert env == {**_libtpu_env.QUIET_DEFAULTS, "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}
  for chips, installed in ((True, True), (False, False)):
    env = {}
    assert not _libtpu_env.quiet_libtpu(env, chips=chips, installed=installed) and env == {}
  env = {"TPU_WORKER_HOSTNAMES": "w0,w1", "ALLOW_MULTIPLE_LIBTPU_LOAD": "0"}  # the user's wins
  assert not _libtpu_env.quiet_libtpu(env, chips=False, installed=True)
  assert env == {"TPU_WORKER_HOSTNAMES": "w0,w1", "ALLOW_MULTIPLE_LIBTPU_LOAD": "0"}


def test_compiler_refusal_is_parsed_into_the_temporaries_it_needs():
  refused = plan_lib._OutOfMemory.parse(RuntimeError(REFUSAL))  # pylint: disable=protected-access
  assert refused.temporaries == int(644.68 * GiB)
  assert refused.message.startswith("jax.errors.JaxRuntimeError: RESOURCE_EXHAUSTED")
  assert plan_lib._OutOfMemory.parse(RuntimeError("INTERNAL: other")) is None  # pylint: disable=protected-access


@needs_libtpu
@pytest.mark.parametrize("name, devices, chips, kind, per_device", [
    ("v5e:2x2", 4, 4, "TPU v5 lite", 16 * GiB),
    ("v4:2x2x2", 16, 8, "TPU v4", 16 * GiB),  # two TensorCores per v4 chip, one device each here
    ("v5p:2x2x1", 4, 4, "TPU v5", 95 * GiB),  # megacore: one device per chip
    ("v6e:2x2", 4, 4, "TPU v6 lite", 32 * GiB),
])
def test_topology_devices_chips_and_hbm_per_device(name, devices, chips, kind, per_device):
  slice_ = tpu.topology(name)
  assert (len(slice_.devices), slice_.chips, slice_.device_kind) == (devices, chips, kind)
  assert slice_.device_memory == per_device
  assert {d.platform for d in slice_.devices} == {"tpu"}


@needs_libtpu
def test_unknown_topology_is_one_usage_error():
  with pytest.raises(UsageError, match="v5e:4x4"):
    tpu.topology("v9z:3x3")


@pytest.fixture(scope="module")
def tpu_plans():
  """modular_addition smoke, data-parallel on a v5e 2x2 slice and on 4 CPU devices."""
  data = plan_lib.plan("modular_addition", "smoke", overrides=["mesh.data=-1"], topology="v5e:2x2")
  cpu = plan_lib.plan("modular_addition", "smoke", devices=4, overrides=["mesh.data=-1"])
  return data, cpu


@needs_libtpu
def test_plan_compiles_for_the_tpu_topology(tpu_plans):
  data, cpu = tpu_plans
  assert (data["platform"], data["devices"], data["chips"]) == ("tpu", 4, 4)
  assert data["device_kind"] == "TPU v5 lite" and data["topology"] == "v5e:2x2"
  assert data["device_memory"] == 16 * GiB and data["fits"] is True
  per, total = data["bytes_per_device"], data["param_bytes_total"]
  assert per["params"] == total  # data parallel: every device holds every parameter
  assert per["batch"] == cpu["bytes_per_device"]["batch"]  # the same global batch, split 4 ways
  assert data["params_total"] == cpu["params_total"]
  # The TPU compiler's count of the same step is of the CPU compiler's order (not the same
  # number: each backend counts its own fusions).
  assert 0.2 < data["flops_per_step"] / cpu["flops_per_step"] < 5
  assert data["compile_seconds"] > 0 and data["compile_error"] is None


@needs_libtpu
def test_plan_topology_cli_prints_clean_json_and_refuses_devices(tmp_path):
  """As a user runs it: JAX_PLATFORMS unset and libtpu installed, no TPU here."""
  env = cli_env()
  for key in ("JAX_PLATFORMS", *_libtpu_env.QUIET_DEFAULTS, *_libtpu_env.MULTIPLE_LOADS):
    env.pop(key, None)
  run = lambda *args: subprocess.run([sys.executable, "-m", "jaxpapers.cli", *args], env=env,
                                     cwd=tmp_path, capture_output=True, text=True, timeout=600)
  done = run("plan", "modular_addition", "--preset", "smoke", "--topology", "v5e:2x2", "--json",
             "mesh.data=-1")
  assert done.returncode == 0, done.stderr
  record = json.loads(done.stdout)
  assert record["platform"] == "tpu" and record["chips"] == 4
  assert "libtpu" not in done.stderr and "WARNING" not in done.stderr, done.stderr
  bad = run("train", "modular_addition", "--preset", "smoke", "mesh.data=3")  # after jax's init
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == [bad.stderr.strip()], bad.stderr  # one line only
  assert bad.stderr.startswith("jaxpapers: error: config field mesh.data=3")
  assert os.listdir(tmp_path) == []  # nothing written


def test_devices_and_topology_exclude_each_other():
  with pytest.raises(UsageError, match="exclude each other"):
    plan_lib.plan("modular_addition", "smoke", devices=2, topology="v5e:2x2")


@needs_libtpu
def test_mesh_axes_that_split_physical_axes_are_built():
  """fsdp 8 x expert 8 on a 4x4x4 v5p slice: 8 is no product of whole physical axes of 4."""
  from jaxpapers.core import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from jaxpapers.core.config import MeshConfig  # pylint: disable=g-import-not-at-top
  devices = tpu.topology("v5p:4x4x4").devices
  mesh = mesh_lib.make_mesh(MeshConfig(fsdp=8, expert=8), devices)
  assert dict(mesh.shape) == {"data": 1, "fsdp": 8, "expert": 8, "tensor": 1}
  assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in devices)
