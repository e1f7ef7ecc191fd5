"""The local executor: runs the tasks one after the other, in this process, or each in a child
process killed at its limits when the run has a time limit or a memory cap
(bench.executors.isolated)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from bench.executors.base import Outcome, TaskLines, report_failure, run_one
from bench.tasks import TaskRecord, TaskSpec


class LocalExecutor:
    name = "local"

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
        """Run ``tasks`` one after the other in this process (``data``: prepared datasets by content hash;
        ``store`` and ``detach`` are not used)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        failed: list[str] = []
        data = data or {}
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
            for spec in tasks:
                bar.update(job, description=spec.label)
                yield Outcome(spec, TaskRecord(key=spec.key, status="running"), run_id)
                rec = run_one(spec, run_dir, run_id, data=data.get(spec.data_hash), isolate=True)
                yield Outcome(spec, rec, run_id)
                if rec.status != "done":
                    failed.append(spec.key)
                    report_failure(console, spec, rec.error, rec.log_tail)
                lines.finished(spec.label, rec.status, rec.finished - rec.started)
                bar.advance(job)
        return {"failed": failed}
