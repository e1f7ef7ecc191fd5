"""SIGTERM and SIGINT while tasks run: stop the running task, remove its containers, record it as
failed with the reason, then stop.

``bench run`` (and each Slurm job, bench.executors.slurm.submit.run_task) runs its tasks inside :func:`interruptible`:
the first SIGTERM or SIGINT raises :class:`Interrupted` in the main thread, wherever it is (waiting
for a container, inside a training loop). The container runners remove their container and kill
their process on the way out; :func:`interrupted_record` then removes any container of the task
that is left (one created a moment before the signal) and builds the failed record the caller
stores. Further signals are ignored until that cleanup is over (Slurm sends SIGKILL KillWait seconds
later anyway).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.tasks import TaskRecord

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """Raised by the signal handler of :func:`interruptible`. A KeyboardInterrupt (not an Exception):
    no ``except Exception`` of a task or plugin swallows it. ``record``: the failed record of the
    task it stopped (bench.executors.base.run_one sets it; ``None`` between tasks), which
    bench.runner.store_outcomes stores before the interruption goes on up."""

    def __init__(self, signum: int = signal.SIGINT, record: TaskRecord | None = None):
        self.signum = int(signum)
        self.signame = signal.Signals(signum).name
        self.reason = f"interrupted by {self.signame}"
        self.record = record
        super().__init__(self.reason)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Inside, SIGTERM and SIGINT raise :class:`Interrupted` (once); the previous handlers come back
    on the way out. Outside the main thread (signals cannot be handled there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum, frame) -> None:
        nonlocal fired
        if fired:  # the first one is being handled: let its cleanup finish
            return
        fired = True
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def interrupted_record(
    exc: Interrupted,
    key: str,
    run_dir: str | Path,
    task_dir: str | Path,
    *,
    started: float,
    context: str = "",
) -> TaskRecord:
    """Remove what is left of task ``key``'s containers and return its failed record: the reason
    (which signal, ``context``), what was removed, and the tail of the task's newest container log."""
    from bench.api.sandbox import remove_task_containers

    removed = remove_task_containers(run_dir, key)
    error = f"{exc.reason}{f' ({context})' if context else ''}: the task was stopped"
    if removed:
        error += f"; removed its container(s) {', '.join(removed)}"
    logs = sorted(Path(task_dir).rglob("container.log"), key=lambda p: p.stat().st_mtime)
    tail = None
    if logs:
        tail = "\n".join(logs[-1].read_text(errors="replace").splitlines()[-50:]) or None
    return TaskRecord(
        key=key, status="failed", started=started, finished=time.time(), error=error, log_tail=tail
    )
