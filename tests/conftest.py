"""Test set-up: 8 fake CPU devices (before any device is touched)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA sizes its CPU thread pool by the core count; with several fake devices on a 2-core machine a
# jitted all-reduce can wait forever for a device thread (seen with jax 0.10.2). A pool at least as
# large as the device count avoids it (see jaxpapers.core.testing.cli_env for subprocesses).
os.environ.setdefault("NPROC", str(max(8, os.cpu_count() or 1)))

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_num_cpu_devices", 8)
