"""One run per workdir: the lock file, its holder check, stale-lock takeover and the heartbeat."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from jaxpapers.core import workdir_lock
from jaxpapers.core.errors import WorkdirError
from jaxpapers.core.workdir_lock import LOCK_NAME, Holder, WorkdirLock


def _write_lock(workdir, holder: Holder, age_seconds: float = 0.0) -> None:
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / LOCK_NAME
  path.write_text(json.dumps(dataclasses.asdict(holder)))
  stamp = time.time() - age_seconds
  os.utime(path, (stamp, stamp))


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()  # reaped: the pid names no process now
  return proc.pid


def _listing(workdir) -> list[str]:
  return sorted(p.name for p in workdir.iterdir())


def test_lock_names_this_process_and_is_removed_on_release(tmp_path):
  workdir = tmp_path / "new" / "w"
  lock = WorkdirLock(workdir)
  assert lock.acquire() == []
  record = json.loads((workdir / LOCK_NAME).read_text())
  assert (record["host"], record["pid"]) == (socket.gethostname(), os.getpid())
  assert _listing(workdir) == [LOCK_NAME]  # the temporary file of the atomic create is gone
  lock.release()
  assert _listing(workdir) == []


def test_a_live_holder_refuses_a_second_run_and_nothing_changes(tmp_path):
  with WorkdirLock(tmp_path) as first:
    first.acquire()
    before = (tmp_path / LOCK_NAME).read_bytes()
    with pytest.raises(WorkdirError) as refused:
      WorkdirLock(tmp_path).acquire()
    message = str(refused.value)
    assert f"process {os.getpid()} on host {socket.gethostname()}" in message
    assert "\n" not in message and str(tmp_path) in message
    assert (tmp_path / LOCK_NAME).read_bytes() == before and _listing(tmp_path) == [LOCK_NAME]
    with pytest.raises(WorkdirError, match=f"process {os.getpid()}"):
      WorkdirLock(tmp_path).check()


def test_lock_of_a_dead_process_on_this_host_is_taken_over_with_a_notice(tmp_path):
  pid = _dead_pid()
  _write_lock(tmp_path, dataclasses.replace(Holder.this_process(), pid=pid, start_ticks=None))
  lock = WorkdirLock(tmp_path)
  notices = lock.acquire()
  assert len(notices) == 1 and f"process {pid} on host {socket.gethostname()}" in notices[0]
  assert "that process is gone" in notices[0] and "took over" in notices[0]
  assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
  lock.release()


def test_a_reused_pid_is_not_the_holder(tmp_path):
  me = Holder.this_process()
  assert me.start_ticks is not None  # Linux /proc
  _write_lock(tmp_path, dataclasses.replace(me, start_ticks=me.start_ticks - 1, token="old"))
  notices = WorkdirLock(tmp_path).acquire()
  assert len(notices) == 1 and "pid now belongs to another process" in notices[0]


def test_lock_of_another_host_is_live_until_its_heartbeat_is_stale(tmp_path):
  other = Holder(host="elsewhere.example", pid=4242, started=time.time() - 7200, token="t")
  _write_lock(tmp_path, other, age_seconds=5)
  with pytest.raises(WorkdirError, match="process 4242 on host elsewhere.example"):
    WorkdirLock(tmp_path).acquire()
  _write_lock(tmp_path, other, age_seconds=workdir_lock.STALE_SECONDS + 60)
  lock = WorkdirLock(tmp_path)
  notices = lock.acquire()
  assert len(notices) == 1 and "elsewhere.example" in notices[0] and "heartbeat stopped" in notices[0]
  assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == socket.gethostname()
  lock.release()


def test_heartbeat_keeps_the_lock_fresh(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, "HEARTBEAT_SECONDS", 0.05)
  lock = WorkdirLock(tmp_path)
  lock.acquire()
  old = time.time() - 1000
  os.utime(tmp_path / LOCK_NAME, (old, old))
  deadline = time.time() + 10
  while (tmp_path / LOCK_NAME).stat().st_mtime < old + 500 and time.time() < deadline:
    time.sleep(0.05)
  assert (tmp_path / LOCK_NAME).stat().st_mtime > time.time() - 60
  lock.release()


def test_release_leaves_a_lock_that_another_run_took_over(tmp_path):
  lock = WorkdirLock(tmp_path)
  lock.acquire()
  other = Holder(host="elsewhere.example", pid=1, started=time.time(), token="theirs")
  _write_lock(tmp_path, other)  # e.g. taken over while this process was suspended
  lock.release()
  assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == "theirs"


def test_unreadable_fresh_lock_is_refused_untouched(tmp_path):
  (tmp_path / LOCK_NAME).write_text("{half a record")
  with pytest.raises(WorkdirError, match="unreadable lock file"):
    WorkdirLock(tmp_path).acquire()
  assert (tmp_path / LOCK_NAME).read_text() == "{half a record"


def test_workdir_below_a_file_cannot_be_locked(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(WorkdirError, match="cannot create workdir .*--workdir"):
    WorkdirLock(tmp_path / "notes.txt" / "sub").acquire()
  assert (tmp_path / "notes.txt").read_text() == "mine"
