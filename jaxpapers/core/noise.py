"""A filter for the tracebacks a failed orbax restore leaves behind, and only those.

When one array of a restore fails, orbax closes its asyncio loop while tensorstore still
completes the other reads; their callbacks then hit the closed loop and raise "RuntimeError:
Event loop is closed" from tensorstore's threads, which Python prints through `sys.excepthook`
and `sys.unraisablehook`. They can come late (after the error was reported), so the restore
filters them while it runs (`jaxpapers.core.checkpoint`) and the CLI, which owns the terminal,
filters them for the whole command.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Iterator


def is_closed_loop_noise(exc: BaseException | None) -> bool:
  """True for the "Event loop is closed" RuntimeError of a closed asyncio loop."""
  return isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc)


@contextlib.contextmanager
def closed_loop_noise_filtered(last_noise: list[float] | None = None) -> Iterator[list[float]]:
  """Swaps `sys.excepthook` and `sys.unraisablehook` for filters of exactly that error.

  Args:
    last_noise: a one-element list that receives the monotonic time of the last dropped noise.

  Yields:
    `last_noise`. The previous hooks are restored on exit (`finally`).
  """
  last_noise = [0.0] if last_noise is None else last_noise
  previous_hook, previous_unraisable = sys.excepthook, sys.unraisablehook

  def excepthook(exc_type, exc, tb):
    if is_closed_loop_noise(exc):
      last_noise[0] = time.monotonic()
    else:
      previous_hook(exc_type, exc, tb)

  def unraisablehook(unraisable):
    if is_closed_loop_noise(unraisable.exc_value):
      last_noise[0] = time.monotonic()
    else:
      previous_unraisable(unraisable)

  sys.excepthook, sys.unraisablehook = excepthook, unraisablehook
  try:
    yield last_noise
  finally:
    sys.excepthook, sys.unraisablehook = previous_hook, previous_unraisable
