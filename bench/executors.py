"""Executors run planned tasks. ``local`` runs them in this process, one after the other;
``slurm`` (bench.slurm) submits them as Slurm jobs. Both end with every finished task's record in
the store; a failed task is recorded with its error and log tail and the others go on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.tasks import TaskSpec, execute_task

EXECUTORS = ("local", "slurm")


def make_executor(cfg: dict[str, Any]):
    name = cfg.get("name", "local")
    if name == "local":
        return LocalExecutor()
    if name == "slurm":
        from bench.slurm import SlurmExecutor

        return SlurmExecutor(**{k: v for k, v in cfg.items() if k != "name"})
    raise UserError(f"unknown executor '{name}'", f"use one of: {', '.join(EXECUTORS)}")


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
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_one(spec: TaskSpec, run_dir, run_id, *, data=None, store=None, context: str = ""):
    """Execute one task with its containers labelled (run dir, run id, task key). On SIGTERM/SIGINT
    (bench.interrupt) the task's containers are removed, its failed record (the reason, the log
    tail) is written to ``store`` -- or returned as the exception's ``record`` for the caller to save
    -- and the interruption goes on up."""
    from bench.generators.sandbox import task_scope
    from bench.interrupt import interrupted_record

    started = time.time()
    work = task_dir(run_dir, spec)
    try:
        with task_scope(run_dir, run_id, spec.key):
            return execute_task(spec, work, progress=False, data=data, shared_dir=Path(run_dir) / "shared")
    except KeyboardInterrupt as exc:
        rec = interrupted_record(exc, spec.key, run_dir, work, started=started, context=context)
        if store is not None:
            store.write_record(spec, rec, run_id)
        exc.record = rec  # type: ignore[attr-defined]
        raise


class LocalExecutor:
    name = "local"

    def execute(self, tasks: list[TaskSpec], store, *, run_dir, run_id, progress=False, console=None,
                data=None, detach=False) -> dict[str, Any]:  # fmt: skip
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        failed: list[str] = []
        data = data or {}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, disable=not progress or not tasks, transient=False) as bar:  # fmt: skip
            job = bar.add_task("tasks", total=len(tasks))
            lines = TaskLines(console, len(tasks), bar=progress)
            for spec in tasks:
                bar.update(job, description=spec.label)
                store.mark_running(spec, run_id)
                rec = run_one(spec, run_dir, run_id, data=data.get(spec.dataset), store=store)
                store.write_record(spec, rec, run_id)
                if rec.status != "done":
                    failed.append(spec.key)
                    report_failure(console, spec, rec.error, rec.log_tail)
                lines.finished(spec.label, rec.status, rec.finished - rec.started)
                bar.advance(job)
        return {"failed": failed}
