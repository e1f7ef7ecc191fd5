"""One `bench run` per run dir: a lock file ``RUN_DIR/.bench.lock``.

The holder keeps an exclusive ``flock`` on the file for as long as it runs, and writes who it is
into it (pid, host, start time, command): a second `bench run` on the same run dir cannot take the
lock and stops with one line naming the holder (exit 2). The kernel drops the ``flock`` when the
holder dies, however it dies (SIGKILL, out of memory), so a lock is never held by a dead process;
the holder's line that such a death leaves in the file is a *stale* lock, which the next run takes
over with a note. On a file system without ``flock`` (some NFS mounts), the line alone decides:
a holder on this host whose pid is dead is stale, any other holder is refused.

Only `bench run` takes the lock. `bench status` and the Slurm jobs write through the store's
transactions (and record files), which never need it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.api.errors import UserError

LOCK_NAME = ".bench.lock"


def lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOCK_NAME


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    if not text.strip():
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        return {"pid": "?", "host": "?", "since": None, "command": text.strip()[:200]}
    return holder if isinstance(holder, dict) else None


def describe(holder: dict[str, Any]) -> str:
    since = holder.get("since")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else "?"
    )
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {when} (`{holder.get('command', '?')}`)"


def _refuse(run_dir: Path, holder: dict[str, Any] | None) -> UserError:
    who = describe(holder) if holder else "another process"
    return UserError(
        f"run dir {run_dir} is in use by {who}",
        "wait for that run to end (follow it with `bench status`), or give another --out",
    )


def _stale(holder: dict[str, Any] | None) -> bool:
    """Whether a holder line left in the file names a process that is surely gone."""
    if holder is None:
        return False
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid)


def check_free(run_dir: str | Path) -> None:
    """Refuse early (before any data is prepared) when a live process holds the run dir's lock;
    reads only, writes nothing."""
    path = lock_path(run_dir)
    if not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refuse(Path(run_dir), _read_holder(path)) from None
        except OSError as exc:
            if exc.errno != errno.ENOLCK:
                raise
            holder = _read_holder(path)
            if holder is not None and not _stale(holder):
                raise _refuse(Path(run_dir), holder) from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_dir_lock(
    run_dir: str | Path, *, command: list[str] | None = None, note=None
) -> Iterator[dict[str, Any] | None]:
    """Hold the run dir's lock for the block, which gets the holder of a stale lock it took over
    (else None). UserError (exit 2) naming the holder when a live process holds it; a stale lock is
    taken over and ``note`` (a callable, e.g. console.print) is told about it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            flocked = True
        except BlockingIOError:
            raise _refuse(run_dir, _read_holder(path)) from None
        except OSError as exc:
            if exc.errno != errno.ENOLCK:
                raise
            flocked = False
        previous = _read_holder(path)
        if previous is not None:
            if not flocked and not _stale(previous):
                raise _refuse(run_dir, previous)
            if note is not None:
                note(f"took over a stale lock of {run_dir}: {describe(previous)} ended without releasing it")
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": shlex.join(command) if command else "bench run",
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        try:
            yield previous
        finally:
            # an empty file is a free lock: never unlink it (another process may hold it open)
            os.ftruncate(fd, 0)
            os.fsync(fd)
    finally:
        os.close(fd)  # drops the flock
