"""The local executor: runs the tasks one after the other, each in a child process killed at its
time limit or memory cap (bench.executors.isolated), or all in this process with ``in_process``
(``--in-process``: for a debugger; no hard limits)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from bench.executors.base import Outcome, TaskLines, report_failure, run_one
from bench.tasks import TaskRecord, TaskSpec


class LocalExecutor:
    name = "local"

    def __init__(self, in_process: bool = False):
        self.in_process = in_process

    def start(self) -> None:
        """Start the task processes' forkserver in the background (it imports torch, scanpy and the
        plugins while the runner prepares the datasets)."""
        if not self.in_process:
            from bench.executors.isolated import start_server

            start_server()

    def execute(
        self,
        tasks: list[TaskSpec],
        store,
        *,
        run_dir,
        run_id,
        progress=False,
        console=None,
        data=None,
        detach=False,
    ) -> Generator[Outcome, None, dict[str, Any]]:
        """Run ``tasks`` one after the other, each in a child process, or in this process with
        ``in_process`` (``data``: prepared datasets by content hash; ``store`` and ``detach`` are not
        used)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from bench.executors.isolated import TaskProcess

        failed: list[str] = []
        data = data or {}
        child = None if self.in_process else TaskProcess("forkserver")
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not progress or not tasks,
            transient=False,
        ) as bar:
            job = bar.add_task("tasks", total=len(tasks))
            lines = TaskLines(console, len(tasks), bar=progress)
            try:
                for spec in tasks:
                    bar.update(job, description=spec.label)
                    yield Outcome(spec, TaskRecord(key=spec.key, status="running"), run_id)
                    rec = run_one(spec, run_dir, run_id, data=data.get(spec.data_hash), child=child)
                    yield Outcome(spec, rec, run_id)
                    if rec.status != "done":
                        failed.append(spec.key)
                        report_failure(console, spec, rec.error, rec.log_tail)
                    lines.finished(spec.label, rec.status, rec.finished - rec.started)
                    bar.advance(job)
            finally:
                if child is not None:
                    child.close()
        return {"failed": failed}
