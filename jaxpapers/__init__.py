"""jaxpapers: methods of the 2026-02-22 daily papers, reimplemented in JAX.

Importing jaxpapers sizes XLA's CPU thread pool (`NPROC`, unless set) for the fake CPU devices of
`XLA_FLAGS=--xla_force_host_platform_device_count=N` or `JAX_NUM_CPU_DEVICES=N`: with the default
pool, runs on several fake devices of a 2-core machine hang in an all-reduce (see `_cpu_pool`).
It takes effect when jax has not yet created its CPU client, as in the `jaxpapers` command.
On a host without TPU chips it also keeps an installed libtpu (the `tpu` extra) from printing
its initialisation warnings (see `_libtpu_env`).
"""

from jaxpapers import _cpu_pool, _libtpu_env

_cpu_pool.size_cpu_thread_pool()
_libtpu_env.quiet_libtpu()

__version__ = "0.1.0"
