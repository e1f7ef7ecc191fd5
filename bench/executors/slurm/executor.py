"""The Slurm executor: submit the tasks the store lacks as job arrays, then follow them until
each is done or failed (or detach and let ``bench status`` follow them)."""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

from bench.api.errors import UserError
from bench.executors.base import Outcome, TaskLines, report_failure
from bench.executors.slurm.ledger import load_ledger, refresh, save_ledger
from bench.executors.slurm.queue import squeue_states
from bench.executors.slurm.resources import (
    RESOURCE_KEYS,
    PartitionLimits,
    fit_to_partition,
    generator_resources,
    group_by_resources,
    partition_exists,
    partition_limits,
    task_resources,
)
from bench.executors.slurm.submit import group_name, submit_group
from bench.tasks import TaskRecord, TaskSpec

OPTIONS = {
    "partition": "Slurm partition (--partition)",
    "account": "Slurm account (--account)",
    "qos": "Slurm QOS (--qos)",
    "sbatch_options": "extra sbatch options, e.g. {constraint = 'a100', exclusive = true}",
    "additional_parameters": "alias of sbatch_options (submitit's name)",
    "setup": "shell lines run in each job before the task, e.g. ['module load cuda', 'source venv/bin/activate']",
    "cpus": "CPUs per task for every task (overrides the generators' metadata)",
    "gpus": "GPUs per task for every task",
    "mem_gb": "memory per task in GB for every task",
    "time_min": "time limit per task in minutes for every task",
    "resources": "per-model overrides, e.g. [executor.resources.activa] gpus = 1",
    "array_parallelism": "most array tasks running at once (default 256)",
    "python": "python command in the jobs (default: this interpreter, sys.executable)",
    "poll_s": "seconds between progress checks (default 5)",
    "record_grace_s": "seconds to wait for a record file after its job ended (shared filesystems; default 15)",
    "fit_partition": "lower requests to the partition's biggest node (default true)",
}


def _check_number(key: str, value: Any, *, integer: bool, low: float) -> None:
    """UserError unless ``value`` is None or a finite number (an integer if ``integer``) >= ``low``."""
    if value is None:
        return
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value < low:
        what = "an integer" if integer else "a number"
        raise UserError(
            f"[executor] {key} must be {what} >= {low}, got {value!r}", f"e.g. {key} = {max(low, 1) * 5}"
        )


def reconcile_submitting(run_dir: Path, ledger: dict[str, Any], states) -> bool:
    """Entries saved just before an sbatch whose job ids never reached the ledger (the driver was
    killed in between): each gets the job id of its array element, found by the array's unique job
    name in squeue; one that squeue does not know and that wrote no record is dropped (sbatch did not
    happen, or its job is long gone without a result): it is submitted again. Returns whether the
    ledger changed."""
    from bench.executors.slurm.ledger import record_path
    from bench.executors.slurm.queue import jobs_named

    waiting = {k: e for k, e in ledger["tasks"].items() if e.get("state") == "submitting"}
    if not waiting:
        return False
    submitit = None
    for name in sorted({e["job_name"] for e in waiting.values()}):
        ids = jobs_named(name)
        if ids is None:
            raise UserError(
                f"squeue did not answer: cannot tell whether job array {name} was submitted before "
                "the last run stopped",
                "run the same command again once `squeue` works",
            )
        for key, entry in waiting.items():
            if entry["job_name"] != name:
                continue
            job_id = _element(ids, entry.get("array_index", 0), entry.get("group_size", 1))
            if job_id is None:
                if record_path(run_dir, key).exists():  # ran and wrote its result: merge it
                    entry.update(job_id="unknown", state="recorded")
                else:
                    del ledger["tasks"][key]
                continue
            if submitit is None:
                from submitit.core.utils import JobPaths

                submitit = JobPaths
            paths = submitit(run_dir / "slurm" / "%j", job_id=job_id, task_id=0)
            entry.pop("state", None)
            entry.update(job_id=job_id, stdout=str(paths.stdout), stderr=str(paths.stderr))
    return True


def _element(ids: list[str], index: int, size: int) -> str | None:
    """The job id of element ``index`` of an array of ``size`` among squeue's ``ids`` of one name (a
    lone job is not an array)."""
    if size == 1 and len(ids) == 1 and "_" not in ids[0]:
        return ids[0]
    wanted = [i for i in ids if i.partition("_")[2] == str(index)]
    return wanted[0] if wanted else None


class SlurmExecutor:
    name = "slurm"

    def __init__(
        self,
        partition: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        sbatch_options: dict[str, Any] | None = None,
        additional_parameters: dict[str, Any] | None = None,
        setup: list[str] | str | None = None,
        cpus: int | None = None,
        gpus: int | None = None,
        mem_gb: float | None = None,
        time_min: int | None = None,
        resources: dict[str, dict[str, Any]] | None = None,
        array_parallelism: int | None = None,
        python: str | None = None,
        poll_s: float = 5.0,
        record_grace_s: float = 15.0,
        fit_partition: bool = True,
        **unknown: Any,
    ):
        if "in_process" in unknown:
            raise UserError(
                "--in-process is an option of the local executor: a Slurm job runs its task in a child "
                "process under its limits",
                "leave out --in-process ([executor] in_process), or use --executor local",
            )
        if unknown:
            raise UserError(
                f"unknown Slurm executor option(s) {sorted(unknown)}",
                f"known options of [executor]: name, {', '.join(OPTIONS)}",
            )
        for key, value, integer, low in (
            ("cpus", cpus, True, 1),
            ("gpus", gpus, True, 0),
            ("mem_gb", mem_gb, False, 0),
            ("time_min", time_min, True, 1),
            ("array_parallelism", array_parallelism, True, 1),
            ("poll_s", poll_s, False, 0),
            ("record_grace_s", record_grace_s, False, 0),
        ):
            _check_number(key, value, integer=integer, low=low)
        if not isinstance(fit_partition, bool):
            raise UserError(f"[executor] fit_partition must be true or false, got {fit_partition!r}")
        if not shutil.which("sbatch") or not shutil.which("squeue"):
            raise UserError(
                "--executor slurm was asked for but sbatch/squeue are not on PATH",
                "run on a Slurm login node (or `module load slurm`), or use --executor local",
            )
        if isinstance(setup, str):
            setup = [setup]
        for name, value in (
            ("sbatch_options", sbatch_options),
            ("additional_parameters", additional_parameters),
            ("resources", resources),
        ):
            if value is not None and not isinstance(value, dict):
                raise UserError(
                    f"[executor] {name} must be a table", f"e.g. {name} = {{ constraint = 'a100' }}"
                )
        for model, table in (resources or {}).items():
            bad = sorted(set(table) - set(RESOURCE_KEYS)) if isinstance(table, dict) else ["(not a table)"]
            if bad:
                raise UserError(
                    f"[executor.resources.{model}]: unknown key(s) {bad}", f"use {', '.join(RESOURCE_KEYS)}"
                )
        self.partition, self.account, self.qos = partition, account, qos
        self.sbatch_options = {**(additional_parameters or {}), **(sbatch_options or {})}
        self.setup = list(setup or [])
        self.overrides = {"cpus": cpus, "gpus": gpus, "mem_gb": mem_gb, "time_min": time_min}
        self.model_resources = dict(resources or {})
        self.array_parallelism = array_parallelism
        self.python = python
        self.poll_s = float(poll_s)
        self.record_grace_s = float(record_grace_s)
        self.fit_partition = bool(fit_partition)

    def start(self) -> None:
        """Nothing to start: each job runs its task in a child of its own (bench.executors.slurm.submit)."""

    # -- planning jobs ------------------------------------------------------------------------
    def resources_for(self, spec: TaskSpec, limits: PartitionLimits | None = None) -> tuple[dict, list[str]]:
        base = generator_resources(spec.model, spec.profile)
        res = task_resources(
            base,
            device=spec.device,
            overrides=self.overrides,
            model_overrides=self.model_resources.get(spec.model),
        )
        where = f"partition '{self.partition}'" if self.partition else "the default partition"
        return fit_to_partition(res, limits, device=spec.device, where=where)

    # -- execute -------------------------------------------------------------------------------
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
        """Submit ``tasks`` (those submitted before and still queued or running are followed, not
        resubmitted) and yield every state change and result; ``data`` is not used (a job prepares
        its dataset from the cache). Reads ``store``, never writes it."""
        run_dir = Path(run_dir).resolve()
        ledger = load_ledger(run_dir)
        entries = ledger["tasks"]
        states = squeue_states()
        if reconcile_submitting(run_dir, ledger, states):
            save_ledger(run_dir, ledger)
        # results of earlier submissions that finished since: merge first, do not resubmit them
        known = [t.key for t in tasks if t.key in entries]
        done_before = store.done_keys()
        merged = (
            (yield from refresh(run_dir, store, ledger, known, grace_s=0.0, states=states)) if known else {}
        )
        newly_done = store.done_keys() - done_before
        in_flight = [t for t in tasks if merged.get(t.key) in ("submitted", "running")]
        flying = {t.key for t in in_flight}
        to_submit = [t for t in tasks if t.key not in newly_done and t.key not in flying]
        if console is not None and (newly_done or in_flight):
            console.print(
                f"slurm: {len(newly_done)} finished since the last look (merged), "
                f"{len(in_flight)} still queued/running (not resubmitted)"
            )

        if self.partition and to_submit and partition_exists(self.partition) is False:
            raise UserError(
                f"Slurm partition '{self.partition}' does not exist",
                "give one that `sinfo -s` lists with --partition (or in [executor])",
            )
        limits = partition_limits(self.partition) if self.fit_partition and to_submit else None
        planned = []
        notes: dict[str, list[str]] = {}
        for spec in to_submit:
            res, why = self.resources_for(spec, limits)
            planned.append((spec, res))
            if why:
                notes.setdefault(spec.model, why)
            yield Outcome(spec, TaskRecord(key=spec.key, status="planned"), run_id)
        if console is not None:
            for model, why in notes.items():
                console.print(f"  [yellow]note[/yellow] {model}: resources lowered: {'; '.join(why)}")
        groups = group_by_resources(planned)
        for res, specs in groups:
            # the ledger knows the array before sbatch is called: a driver killed between sbatch
            # and the save below finds it again by its unique name (reconcile_submitting), never
            # submits it twice
            name = group_name(sorted({s.model for s in specs}), uuid.uuid4().hex[:10])
            for index, spec in enumerate(specs):
                entries[spec.key] = {
                    "label": spec.label,
                    "state": "submitting",
                    "job_name": name,
                    "array_index": index,
                    "group_size": len(specs),
                    "run_id": run_id,
                    "submitted": time.time(),
                    "resources": res,
                    "spec": spec.to_dict(),
                }
            save_ledger(run_dir, ledger)
            try:
                jobs = submit_group(
                    res,
                    specs,
                    run_dir,
                    run_id,
                    partition=self.partition,
                    account=self.account,
                    qos=self.qos,
                    sbatch_options=self.sbatch_options,
                    setup=self.setup,
                    array_parallelism=self.array_parallelism,
                    python=self.python,
                    job_name=name,
                )
            except UserError:  # sbatch refused the array: nothing of it was submitted
                for spec in specs:
                    entries.pop(spec.key, None)
                save_ledger(run_dir, ledger)
                raise
            for spec, job in zip(specs, jobs, strict=True):
                entry = entries[spec.key]
                entry.pop("state", None)
                entry.update(
                    job_id=str(job.job_id), stdout=str(job.paths.stdout), stderr=str(job.paths.stderr)
                )
                yield Outcome(spec, TaskRecord(key=spec.key, status="submitted"), run_id)
            save_ledger(run_dir, ledger)
            if console is not None:
                kind = f"array of {len(jobs)}" if len(jobs) > 1 else "job"
                first = str(jobs[0].job_id).split("_")[0]
                console.print(
                    f"slurm: submitted {kind} {first} ({res['cpus']} CPU, {res['gpus']} GPU, "
                    f"{res['mem_gb']:g} GB, {res['time_min']} min): "
                    f"{', '.join(sorted({s.model for s in specs}))}"
                )
        watch = [t.key for t in to_submit] + [t.key for t in in_flight]
        if detach or not watch:
            return {"failed": [], "detached": bool(detach and watch)}
        failed = yield from self.wait(run_dir, store, ledger, watch, progress=progress, console=console)
        return {"failed": failed, "detached": False}

    def wait(
        self, run_dir: Path, store, ledger: dict[str, Any], keys: list[str], *, progress=False, console=None
    ) -> Generator[Outcome, None, list[str]]:
        """Poll until every task is done or failed, yielding the results; report failures with
        their log tails. Returns the failed keys."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        seen_ended: dict[str, float] = {}
        reported: set[str] = set()
        lines, ended_keys = TaskLines(console, len(keys), bar=progress), set()
        failed: list[str] = []
        entries = ledger["tasks"]
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not progress,
            transient=False,
        ) as bar:
            job = bar.add_task("slurm", total=len(keys))
            while True:
                states = yield from refresh(
                    run_dir, store, ledger, keys, grace_s=self.record_grace_s, seen_ended=seen_ended
                )
                for key in keys:
                    if states.get(key) == "failed" and key not in reported:
                        reported.add(key)
                        failed.append(key)
                        row = store.task_row(key) or {}
                        spec = TaskSpec.from_dict(entries[key]["spec"])
                        error = f"{row.get('error')} [job {entries[key]['job_id']}]"
                        report_failure(console, spec, error, row.get("log_tail"))
                for key in keys:
                    if states.get(key) in ("done", "failed") and key not in ended_keys:
                        ended_keys.add(key)
                        row = store.task_row(key) or {}
                        took = (
                            row["finished"] - row["started"]
                            if row.get("finished") and row.get("started")
                            else None
                        )
                        lines.finished(TaskSpec.from_dict(entries[key]["spec"]).label, states[key], took)
                counts = {s: sum(1 for k in keys if states.get(k) == s) for s in ("submitted", "running")}
                ended = sum(1 for k in keys if states.get(k) in ("done", "failed"))
                bar.update(
                    job,
                    completed=ended,
                    description=(
                        f"slurm: {counts['submitted']} queued, {counts['running']} running, {len(failed)} failed"
                    ),
                )
                if ended == len(keys):
                    break
                try:
                    time.sleep(self.poll_s)
                except KeyboardInterrupt:
                    if console is not None:
                        console.print(
                            f"the Slurm jobs keep running; follow them with `bench status {run_dir}`"
                        )
                    raise
        if console is not None and not progress:
            console.print(f"slurm: {len(keys) - len(failed)} task(s) done, {len(failed)} failed")
        return failed
