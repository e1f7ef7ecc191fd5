"""What every executor shares: the :class:`Executor` interface (``execute`` yields an
:class:`Outcome` per state change and result; the runner alone writes them to the store), running
one task (:func:`run_one`), its work dir, and the per-task console lines."""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from bench.tasks import TaskRecord, TaskSpec, execute_task


class Outcome(NamedTuple):
    """A task's new state: ``record.status`` "planned", "submitted" or "running" (no values yet), or
    its finished record ("done", "failed"). ``run_id``: the run the task belongs to."""

    spec: TaskSpec
    record: TaskRecord
    run_id: int | None


class Executor(Protocol):
    """Runs planned tasks. ``execute`` yields an :class:`Outcome` for every state change and
    result, in order (the runner stores each before the executor goes on, so the executor may read
    the store, never write it) and returns ``{"failed": [keys], "detached": bool}``. A failed task
    is yielded with its error and log tail and the others go on. On SIGTERM/SIGINT the
    KeyboardInterrupt goes up with the running task's failed record as its ``record``."""

    name: str

    def start(self) -> None:
        """Called once when the run starts, before the datasets are prepared: begin what can go on
        meanwhile (the local executor's task process server)."""

    def execute(
        self,
        tasks: list[TaskSpec],
        store,
        *,
        run_dir: Path,
        run_id: int | None,
        progress: bool = False,
        console=None,
        data: dict[str, Any] | None = None,
        detach: bool = False,
    ) -> Generator[Outcome, None, dict[str, Any]]: ...


def task_dir(run_dir: Path, spec: TaskSpec) -> Path:
    return Path(run_dir) / "tasks" / spec.key


def report_failure(console, spec: TaskSpec, error: str | None, log_tail: str | None) -> None:
    """One line per failed task (and the tail of a container's or job's log where there is one)."""
    if console is None:
        return
    from rich.markup import escape

    console.print(f"[red]FAILED[/red] {escape(f'{spec.label}: {error}')}", soft_wrap=True)
    if log_tail:
        lines = log_tail.rstrip().splitlines()[-50:]
        console.print("\n".join("    " + line for line in lines), markup=False, highlight=False)


class TaskLines:
    """One plain line per finished task, for logs (Slurm, CI, ``nohup``) where a progress bar
    cannot draw: ``[3/12] pbmc3k/nb/seed0/main: done in 4.2 s; 9 left, ETA 0:00:38``. The ETA is
    the mean wall time per finished task so far times the tasks left. Silent when ``console`` is
    None or a progress bar is drawn on a terminal instead."""

    def __init__(self, console, total: int, *, bar: bool = False):
        self.on = console is not None and not (bar and console.is_terminal)
        self.console, self.total, self.done = console, total, 0
        self.start = time.monotonic()

    def finished(self, label: str, status: str, seconds: float | None) -> None:
        self.done += 1
        if not self.on:
            return
        left = self.total - self.done
        eta = (time.monotonic() - self.start) / self.done * left
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        self.console.print(
            f"[{self.done}/{self.total}] {label}: {status}{took}; {left} left, ETA {_clock(eta)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_one(spec: TaskSpec, run_dir, run_id, *, data=None, context: str = "", child=None) -> TaskRecord:
    """Execute one task with its containers labelled (run dir, run id, task key): in ``child``, a
    :class:`bench.executors.isolated.TaskProcess`, killed at the task's time limit or memory cap, or
    with ``child=None`` in this process (``--in-process``: no hard limits). On SIGTERM/SIGINT
    (bench.interrupt) the task's containers are removed, its failed record (the reason, the log
    tail) becomes the :class:`~bench.interrupt.Interrupted`'s ``record`` for the caller to save (a
    plain KeyboardInterrupt goes on up as an Interrupted by SIGINT), and the interruption goes on up."""
    from bench.api.sandbox import task_scope
    from bench.interrupt import Interrupted, interrupted_record

    started = time.time()
    work = task_dir(run_dir, spec)
    try:
        if child is not None:
            return child.run(spec, run_dir, run_id, data=data, work=work)
        with task_scope(run_dir, run_id, spec.key):
            return execute_task(
                spec,
                work,
                progress=False,
                data=data,
                shared_dir=Path(run_dir) / "shared",
                kept_dir=Path(run_dir) / "generated",
            )
    except KeyboardInterrupt as exc:
        stop = exc if isinstance(exc, Interrupted) else Interrupted()
        stop.record = interrupted_record(stop, spec.key, run_dir, work, started=started, context=context)
        if stop is exc:
            raise
        raise stop from exc
