"""XLA's CPU thread pool sized by `import jaxpapers` (jaxpapers/_cpu_pool.py).

The end-to-end check, the `jaxpapers train` commands on 2 and 8 fake devices in a user's
environment, is tests/test_cli_fake_devices.py.
"""

import os
import subprocess
import sys

import pytest

from jaxpapers import _cpu_pool


def test_two_devices_get_at_least_four_threads_on_any_machine():
  """2 fake devices on 2 cores hang with pools of 2 and 3 threads (jax 0.10.2); 4 run."""
  assert _cpu_pool.pool_size(2, cpus=1) >= 4
  assert _cpu_pool.pool_size(2, cpus=2) >= 4
  for devices in (1, 3, 8, 16, 64):
    assert _cpu_pool.pool_size(devices, cpus=2) >= 2 * devices


@pytest.mark.parametrize("cpus", [1, 2, 4, 8, 96])
def test_one_process_of_two_devices_sums_like_each_process_of_two(cpus):
  """Same pool (so the same float summation order) for 1 x 2, 2 x 1, 1 x 4 and 4 x 1 devices."""
  assert len({_cpu_pool.pool_size(d, cpus=cpus) for d in (1, 2, 3, 4)}) == 1


def test_a_large_machine_keeps_its_default_pool():
  assert _cpu_pool.pool_size(1, cpus=96) == 96
  assert _cpu_pool.pool_size(8, cpus=96) == 96


@pytest.mark.parametrize("environ,expected", [
    ({}, 1),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, 2),
    ({"XLA_FLAGS": "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=4 "
                   "--xla_force_host_platform_device_count=8"}, 8),
    ({"JAX_NUM_CPU_DEVICES": "6"}, 6),
    ({"JAX_NUM_CPU_DEVICES": "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}, 3),
    ({"JAX_NUM_CPU_DEVICES": "-1", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}, 8),
], ids=["none", "xla-flag", "last-xla-flag", "jax-env", "jax-env-wins", "jax-env-unset"])
def test_local_device_count_before_jax_is_imported(environ, expected, monkeypatch):
  monkeypatch.delitem(sys.modules, "jax")
  assert _cpu_pool.local_cpu_devices(environ) == expected


def test_local_device_count_reads_jax_config_once_jax_is_imported():
  """This process: tests/conftest.py set jax_num_cpu_devices=8 before importing jaxpapers."""
  assert _cpu_pool.local_cpu_devices({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}) == 8
  if "NPROC" in os.environ and _cpu_pool.AUTO_NPROC not in os.environ:
    pytest.skip("NPROC was exported by the user (kept as it is)")
  assert os.environ["NPROC"] == os.environ[_cpu_pool.AUTO_NPROC] == str(
      _cpu_pool.pool_size(8, _cpu_pool.schedulable_cpus()))


def test_a_value_the_user_set_is_kept(monkeypatch):
  monkeypatch.delitem(sys.modules, "jax")
  environ = {"NPROC": "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert _cpu_pool.size_cpu_thread_pool(environ) is None
  assert environ == {"NPROC": "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}


def test_a_value_set_by_a_parent_jaxpapers_process_is_recomputed(monkeypatch):
  """A parent sized for 1 device; its child on 16 fake devices needs 32 threads."""
  monkeypatch.delitem(sys.modules, "jax")
  monkeypatch.setattr(_cpu_pool, "schedulable_cpus", lambda: 2)
  parent = {}
  assert _cpu_pool.size_cpu_thread_pool(parent) == 8
  assert parent == {"NPROC": "8", _cpu_pool.AUTO_NPROC: "8"}
  child = {**parent, "XLA_FLAGS": "--xla_force_host_platform_device_count=16"}
  assert _cpu_pool.size_cpu_thread_pool(child) == 32
  assert child["NPROC"] == child[_cpu_pool.AUTO_NPROC] == "32"


def test_import_jaxpapers_sizes_the_pool_that_xla_creates():
  """In a fresh process with 2 fake devices (XLA_FLAGS) and no NPROC: XLA's pools get the size."""
  env = {k: v for k, v in os.environ.items() if k not in ("NPROC", _cpu_pool.AUTO_NPROC)}
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
  env.pop("JAX_NUM_CPU_DEVICES", None)
  code = ("import os, jaxpapers, jax\n"
          "jax.numpy.ones(4).block_until_ready()\n"
          "names = [open(f'/proc/self/task/{t}/comm').read().strip()\n"
          "         for t in os.listdir('/proc/self/task')]\n"
          "print(os.environ['NPROC'], jax.local_device_count(), names.count('tf_XLAEigen'))\n")
  if not os.path.isdir("/proc/self/task"):
    pytest.skip("needs Linux /proc to count XLA's threads")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, check=True).stdout.split()
  expected = _cpu_pool.pool_size(2, _cpu_pool.schedulable_cpus())
  assert out == [str(expected), "2", str(expected)]
