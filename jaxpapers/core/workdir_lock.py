"""One run per workdir: a lock file naming the process that holds it, with a heartbeat.

`WORKDIR/run.lock` is a small JSON record (host, pid, boot id, process start time, a random
token, when the run started) created atomically (written to a temporary file, then hard-linked
into place, which fails when a lock already exists), so a reader never sees half a record. While
the run lives a daemon thread touches the file every `HEARTBEAT_SECONDS`; its modification time
is the heartbeat.

A lock is held by a live run when
  * its host is this host (same boot): the pid runs, is not a zombie, and started when the lock
    says (a reused pid is not the holder);
  * its host is another one: the heartbeat is at most `STALE_SECONDS` old.
Otherwise it is stale (SIGKILL, crash, reboot) and taken over, with a notice. Only process 0 of
a multi-host run takes the lock; the other processes of that run share the workdir.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jaxpapers.core.errors import WorkdirError

LOCK_NAME = "run.lock"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # a lock of another host whose heartbeat is older than this is stale


def is_lock_file(name: str) -> bool:
  """Whether `name` (an entry of a workdir) is the lock or one of its short-lived helpers."""
  return name == LOCK_NAME or name.startswith(f".{LOCK_NAME}.")


def _boot_id() -> str:
  try:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
  except OSError:
    return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
  """(state letter, start time in clock ticks since boot) of `pid` from /proc, if readable."""
  try:
    text = Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return None
  fields = text[text.rindex(")") + 2:].split()  # fields 3.. of proc(5); the name may hold spaces
  return fields[0], int(fields[19])


def _pid_runs(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it exists, owned by someone else
    return True
  return True


@dataclasses.dataclass(frozen=True)
class Holder:
  """The process a lock file names."""

  host: str
  pid: int
  boot_id: str = ""
  start_ticks: int | None = None
  started: float = 0.0
  token: str = ""
  command: str = ""

  @classmethod
  def this_process(cls) -> "Holder":
    stat = _proc_stat(os.getpid())
    return cls(host=socket.gethostname(), pid=os.getpid(), boot_id=_boot_id(),
               start_ticks=None if stat is None else stat[1], started=time.time(),
               token=secrets.token_hex(8), command=" ".join(sys.argv)[:500])

  def describe(self) -> str:
    since = datetime.datetime.fromtimestamp(self.started).strftime("%Y-%m-%d %H:%M:%S")
    return f"process {self.pid} on host {self.host} (started {since})"

  def stale_reason(self, heartbeat: float, now: float | None = None) -> str | None:
    """Why this holder no longer runs, or None when it may still be running.

    Args:
      heartbeat: the lock file's modification time.
      now: the current time (default: time.time()).
    """
    if self.host == socket.gethostname():
      if self.boot_id and _boot_id() and self.boot_id != _boot_id():
        return "its host has rebooted since"
      stat = _proc_stat(self.pid)
      if not _pid_runs(self.pid) or (stat is not None and stat[0] in "ZX"):
        return "that process is gone"
      if stat is not None and self.start_ticks is not None and stat[1] != self.start_ticks:
        return "that process is gone (its pid now belongs to another process)"
      return None
    age = (time.time() if now is None else now) - heartbeat
    if age > STALE_SECONDS:
      return f"its heartbeat stopped {age:.0f} s ago"
    return None


def _load(path: Path) -> Holder | None:
  """The holder recorded in lock file `path`; None if unreadable. FileNotFoundError if absent."""
  try:
    record = json.loads(Path(path).read_text())
    fields = {f.name for f in dataclasses.fields(Holder)}
    return Holder(**{k: v for k, v in record.items() if k in fields})
  except FileNotFoundError:
    raise
  except (OSError, ValueError, TypeError):
    return None


def read_holder(workdir: Path) -> tuple[Holder | None, float] | None:
  """(holder, or None if unreadable; heartbeat time) of the lock of `workdir`; None if unlocked."""
  path = Path(workdir) / LOCK_NAME
  try:
    heartbeat = path.stat().st_mtime
    return _load(path), heartbeat
  except (FileNotFoundError, NotADirectoryError):
    return None
  except OSError:
    return None, 0.0


class WorkdirLock:
  """The lock of one workdir, held by this process between `acquire` and `release`.

  Args:
    workdir: the run's top workdir (created by `acquire` if missing).
  """

  def __init__(self, workdir: Path):
    self.workdir = Path(workdir)
    self.path = self.workdir / LOCK_NAME
    self.holder: Holder | None = None
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def check(self) -> None:
    """Raises if a live run holds the workdir; writes nothing."""
    found = read_holder(self.workdir)
    if found is not None:
      self._refuse_if_live(*found)

  def _refuse_if_live(self, holder: Holder | None, heartbeat: float) -> str | None:
    """Raises WorkdirError for a live holder; otherwise returns why the lock is stale."""
    if holder is None:
      if time.time() - heartbeat > STALE_SECONDS:
        return "its lock file was unreadable and old"
      raise WorkdirError(f"workdir {self.workdir} has an unreadable lock file {self.path}; if no "
                         "run is using the workdir, delete that file and run the command again")
    reason = holder.stale_reason(heartbeat)
    if reason is None:
      raise WorkdirError(f"workdir {self.workdir} is in use by {holder.describe()}; wait for that "
                         "run to end (or stop it), or choose another --workdir")
    return reason

  def acquire(self) -> list[str]:
    """Takes the lock (taking over a stale one); returns notices for the user.

    Raises:
      WorkdirError: a live run holds the lock, or the workdir cannot be created or written.
    """
    notices = []
    me = Holder.this_process()
    for _ in range(20):
      found = read_holder(self.workdir)
      if found is not None:
        reason = self._refuse_if_live(*found)
        old = found[0]
        if self._remove_stale(old):
          who = old.describe() if old is not None else "an unknown process"
          notices.append(f"took over the lock of workdir {self.workdir} from {who}: {reason}")
        continue
      if self._create(me):
        self.holder = me
        self._start_heartbeat()
        return notices
    raise WorkdirError(f"workdir {self.workdir}: could not take its lock {self.path} (other "
                       "processes keep taking it); try again")

  def _create(self, me: Holder) -> bool:
    try:
      self.workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise WorkdirError(f"cannot create workdir {self.workdir} ({e.strerror}); choose another "
                         "--workdir") from None
    temp = self.workdir / f".{LOCK_NAME}.{me.token}"
    try:
      temp.write_text(json.dumps(dataclasses.asdict(me)) + "\n")
      try:
        os.link(temp, self.path)
      except FileExistsError:
        return False
    except PermissionError:
      raise WorkdirError(f"workdir {self.workdir} is not writable; choose another --workdir") from None
    finally:
      temp.unlink(missing_ok=True)
    return True

  def _remove_stale(self, old: Holder | None) -> bool:
    """Removes the stale lock `old`; False when another process changed the lock meanwhile."""
    aside = self.workdir / f".{LOCK_NAME}.stale-{secrets.token_hex(8)}"
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return False
    try:
      moved = _load(aside)
    except FileNotFoundError:
      return False
    if old is not None and (moved is None or moved.token != old.token):
      try:  # not the lock we judged: a new holder's; put it back unless yet another exists
        os.link(aside, self.path)
      except FileExistsError:
        pass
      aside.unlink(missing_ok=True)
      return False
    aside.unlink(missing_ok=True)
    return True

  def _start_heartbeat(self) -> None:
    self._stop.clear()
    self._thread = threading.Thread(target=self._beat, name="jaxpapers-workdir-heartbeat",
                                    daemon=True)
    self._thread.start()

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      if self.owned():
        try:
          os.utime(self.path)
        except OSError:
          pass

  def owned(self) -> bool:
    """Whether the lock file on disk is this object's."""
    if self.holder is None:
      return False
    found = read_holder(self.workdir)
    return found is not None and found[0] is not None and found[0].token == self.holder.token

  def release(self) -> None:
    """Stops the heartbeat and removes the lock file if it is still this object's."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
      self._thread = None
    if self.owned():
      self.path.unlink(missing_ok=True)
    self.holder = None

  def __enter__(self) -> "WorkdirLock":
    return self

  def __exit__(self, *exc: Any) -> None:
    self.release()
