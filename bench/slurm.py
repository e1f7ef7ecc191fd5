"""Slurm executor: each task is a Slurm job submitted with submitit.

Tasks that ask for the same resources (CPUs, GPUs, memory, time limit) go into one job array
(``executor.batch()``). A job runs :func:`run_task`, which executes the task and writes its result
as a record file ``RUN_DIR/records/<key>.npz`` (``TaskRecord.save``: atomic). Only the driver
(``bench run`` or ``bench status``) writes the SQLite store: it merges record files as they appear,
so jobs on a shared filesystem can never corrupt or lose results.

What was submitted (task specs, job ids, log paths) is kept in ``RUN_DIR/slurm/submitted.json``
so ``bench status RUN_DIR`` can follow a detached run. Job states come from ``squeue`` and the
record files, never from ``sacct`` (clusters without accounting storage have no ``sacct``). A job
that ends without a record (crash, time limit, out of memory, preemption without requeue, cancel)
is recorded as failed in the store with the tail of its submitit logs; ``bench run`` again
resubmits only the tasks that are not done.

Resources of a task: the generator's ``resources`` metadata (``cpus``, ``gpus``, ``mem_gb``,
``time_min``; optionally one such table per profile, e.g. ``{"quick": {...}, "paper": {...}}``),
then the executor's global overrides (``cpus = 4``), then per-model overrides
(``[executor.resources.activa]``). GPUs are requested only when the task's device allows them
(``--device cpu`` requests none). Requests larger than the partition's biggest node are lowered
to fit it, with a note.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.tasks import TaskRecord, TaskSpec

LEDGER_NAME = "submitted.json"
RESOURCE_KEYS = ("cpus", "gpus", "mem_gb", "time_min")
DEFAULT_RESOURCES = {"cpus": 2, "gpus": 0, "mem_gb": 8, "time_min": 60}

# squeue states (long form, `%T`) grouped by what they mean for a task
QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED",
          "STOPPED", "SIGNALING", "RESIZING", "STAGE_OUT", "SPECIAL_EXIT"}  # fmt: skip
RUNNING = {"RUNNING", "COMPLETING"}
ENDED = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "REVOKED"}  # fmt: skip

# pending reasons that no amount of waiting resolves: the request does not fit the partition
HOPELESS = {
    "PartitionConfig": "more CPUs, memory or GPUs than the partition's nodes have; lower [executor] resources",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionTimeLimit": "time limit above the partition's; lower time_min or pick another --partition",
    "BadConstraints": "no node has the requested features; check [executor.sbatch_options] constraint",
    "InvalidAccount": "unknown account; check --account",
    "InvalidQOS": "unknown QOS; check --qos",
}

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


# -- paths and the ledger of submitted tasks ---------------------------------------------------


def slurm_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "slurm"


def records_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "records"


def record_path(run_dir: str | Path, key: str) -> Path:
    return records_dir(run_dir) / f"{key}.npz"


def ledger_path(run_dir: str | Path) -> Path:
    return slurm_dir(run_dir) / LEDGER_NAME


def load_ledger(run_dir: str | Path) -> dict[str, Any]:
    """``{"tasks": {key: entry}}``; an entry holds the task spec, job id, log paths, resources."""
    path = ledger_path(run_dir)
    if not path.is_file():
        return {"version": 1, "tasks": {}}
    return json.loads(path.read_text())


def save_ledger(run_dir: str | Path, ledger: dict[str, Any]) -> None:
    path = ledger_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(ledger, indent=1, default=str))
    os.replace(tmp, path)


# -- what runs inside a job --------------------------------------------------------------------


def run_task(spec_dict: dict[str, Any], run_dir: str, run_id: int | None = None) -> str:
    """Job entry point: execute one task and write its record file (never the store). SIGTERM
    (scancel, the time limit, preemption; Slurm sends SIGKILL KillWait seconds later) and SIGINT
    stop the task, remove its containers and record it as failed with the reason."""
    from bench.executors import run_one
    from bench.interrupt import interruptible

    spec = TaskSpec.from_dict(spec_dict)
    try:
        # after submitit's own handlers (it ignores SIGTERM, expecting SIGUSR2 before a requeue)
        with interruptible():
            rec = run_one(spec, run_dir, run_id, context="Slurm: scancel, time limit or preemption")
    except KeyboardInterrupt as exc:
        rec = getattr(exc, "record", None) or TaskRecord(
            key=spec.key, status="failed", started=time.time(), finished=time.time(),
            error=f"{getattr(exc, 'reason', 'interrupted')} before the task started",
        )  # fmt: skip
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID")
    rec.info["slurm_job_id"] = job_id
    rec.save(record_path(run_dir, spec.key))
    print(f"scgenbench: {spec.label} {rec.status}" + (f": {rec.error}" if rec.error else ""), flush=True)
    return rec.status


# -- resources ---------------------------------------------------------------------------------


def generator_resources(model: str, profile: str) -> dict[str, Any]:
    """The generator's declared resources for a profile (flat table, or one table per profile)."""
    from bench.registry import get_generator

    declared = dict(getattr(get_generator(model), "resources", None) or {})
    if profile in declared and isinstance(declared[profile], dict):
        declared = dict(declared[profile])
    elif any(isinstance(v, dict) for v in declared.values()):  # per-profile tables without this profile
        declared = {}
    return {k: declared.get(k, DEFAULT_RESOURCES[k]) for k in RESOURCE_KEYS}


def task_resources(base: dict[str, Any], *, device: str, overrides: dict[str, Any] | None = None,
                   model_overrides: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Resources of one task: declared, then global overrides, then per-model overrides."""
    res = {k: base.get(k, DEFAULT_RESOURCES[k]) for k in RESOURCE_KEYS}
    for layer in (overrides or {}, model_overrides or {}):
        res.update({k: v for k, v in layer.items() if k in RESOURCE_KEYS and v is not None})
    if device == "cpu":
        res["gpus"] = 0
    elif device == "cuda":
        res["gpus"] = max(1, int(res["gpus"]))
    res["cpus"] = max(1, int(res["cpus"]))
    res["gpus"] = max(0, int(res["gpus"]))
    res["mem_gb"] = float(res["mem_gb"])
    res["time_min"] = max(1, int(res["time_min"]))
    return res


@dataclass
class PartitionLimits:
    cpus: int | None = None  # CPUs of the biggest node
    mem_gb: float | None = None  # memory of the biggest node
    gpus: int | None = None  # GPUs (gres gpu) of the biggest node; 0: none


def parse_sinfo(text: str) -> PartitionLimits:
    """Limits from ``sinfo -h -o '%c|%m|%G'`` lines (CPUs, memory MB, generic resources)."""
    cpus = mem = gpus = None
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3:
            continue
        c, m, g = parts[0].rstrip("+"), parts[1].rstrip("+"), parts[2]
        if c.isdigit():
            cpus = max(cpus or 0, int(c))
        if m.isdigit():
            mem = max(mem or 0, int(m))
        n = 0
        for item in g.split(","):
            fields = item.split("(")[0].split(":")  # gpu:a100:4(S:0-1) or gpu:4
            if fields[0] == "gpu" and fields[-1].isdigit():
                n = max(n, int(fields[-1]))
        gpus = max(gpus or 0, n)
    return PartitionLimits(cpus=cpus, mem_gb=None if mem is None else mem / 1024, gpus=gpus)


def partition_limits(partition: str | None) -> PartitionLimits | None:
    cmd = ["sinfo", "-h", "-o", "%c|%m|%G"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return parse_sinfo(out.stdout)


def partition_exists(partition: str) -> bool | None:
    """Whether sinfo knows the partition; None when sinfo cannot be asked."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return partition in {line.strip() for line in out.stdout.splitlines()}


def fit_to_partition(res: dict[str, Any], limits: PartitionLimits | None, *, device: str,
                     where: str = "the partition") -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """Lower a request to what the partition's biggest node has; returns (resources, notes)."""
    if limits is None:
        return res, []
    res, notes = dict(res), []
    if limits.gpus is not None and res["gpus"] > limits.gpus:
        if limits.gpus == 0 and device == "cuda":
            raise UserError(f"--device cuda was asked for but {where} has no GPUs",
                            "give a GPU partition with --partition, or use --device auto or cpu")  # fmt: skip
        notes.append(f"gpus {res['gpus']} -> {limits.gpus} ({where} has no more)")
        res["gpus"] = limits.gpus
    if limits.cpus and res["cpus"] > limits.cpus:
        notes.append(f"cpus {res['cpus']} -> {limits.cpus} ({where}'s biggest node)")
        res["cpus"] = limits.cpus
    if limits.mem_gb and res["mem_gb"] > limits.mem_gb:
        new = float(int(limits.mem_gb * 0.95))  # leave the node's OS some room
        notes.append(f"mem_gb {res['mem_gb']:g} -> {new:g} ({where}'s biggest node)")
        res["mem_gb"] = new
    return res, notes


def signature(res: dict[str, Any]) -> tuple:
    return tuple(res[k] for k in RESOURCE_KEYS)


def group_by_resources(items: list[tuple[TaskSpec, dict[str, Any]]]) -> list[tuple[dict, list[TaskSpec]]]:
    """Tasks with equal resources share one job array; groups in first-seen order."""
    groups: dict[tuple, tuple[dict, list[TaskSpec]]] = {}
    for spec, res in items:
        groups.setdefault(signature(res), (res, []))[1].append(spec)
    return list(groups.values())


def sbatch_parameters(res: dict[str, Any], *, partition: str | None = None, account: str | None = None,
                      qos: str | None = None, sbatch_options: dict[str, Any] | None = None,
                      setup: list[str] | None = None, job_name: str = "scgenbench",
                      array_parallelism: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Parameters for ``submitit.SlurmExecutor.update_parameters`` (sbatch options)."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "cpus_per_task": int(res["cpus"]),
        "mem": _mem(res["mem_gb"]),
        "time": int(res["time_min"]),
        "ntasks_per_node": 1,
        "nodes": 1,
    }
    if res["gpus"]:
        params["gpus_per_node"] = int(res["gpus"])
    for key, value in (("partition", partition), ("account", account), ("qos", qos)):
        if value:
            params[key] = value
    if setup:
        params["setup"] = list(setup)
    if sbatch_options:
        params["additional_parameters"] = dict(sbatch_options)
    if array_parallelism:
        params["array_parallelism"] = int(array_parallelism)
    return params


def _mem(mem_gb: float) -> str:
    """sbatch --mem value: whole GB when integral, else MB."""
    return f"{int(mem_gb)}G" if float(mem_gb) == int(mem_gb) else f"{int(round(mem_gb * 1024))}M"


# -- job states --------------------------------------------------------------------------------


def squeue_states() -> dict[str, tuple[str, str]] | None:
    """``{job_id: (state, reason)}`` of this user's jobs known to slurmctld (array tasks one per
    line, e.g. ``123_4``); None when squeue cannot be asked."""
    cmd = ["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T|%r"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return parse_squeue(out.stdout)


def parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    states: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0]:
            states[parts[0]] = (parts[1].split()[0].rstrip("+"), parts[2] if len(parts) > 2 else "")
    return states


def log_tail(entry: dict[str, Any], n: int = 40) -> str:
    """Last lines of a job's submitit stderr and stdout files."""
    chunks = []
    for kind in ("stderr", "stdout"):
        path = entry.get(kind)
        if not path:
            continue
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            chunks.append(f"--- {kind} ({path}): not written (the job may not have started)")
            continue
        chunks.append(f"--- {kind} ({path}), last {min(n, len(lines))} lines:")
        chunks.extend(lines[-n:])
    return "\n".join(chunks)


# -- following submitted tasks: merge records, detect jobs that ended without one ---------------


def refresh(run_dir: str | Path, store, ledger: dict[str, Any], keys=None, *,
            grace_s: float = 15.0, seen_ended: dict[str, float] | None = None,
            states: dict[str, tuple[str, str]] | None = None) -> dict[str, str]:  # fmt: skip
    """Bring the store up to date for submitted tasks; returns ``{key: state}`` with state one of
    submitted (queued), running, done, failed, unknown.

    Record files are merged into the store (then moved to ``records/merged/``). A job that left the
    queue, or ended, without a record for ``grace_s`` seconds is recorded as failed with its log
    tail. ``seen_ended`` keeps when each job was first seen ended, across calls."""
    seen_ended = {} if seen_ended is None else seen_ended
    entries = ledger["tasks"]
    keys = list(entries) if keys is None else list(keys)
    if states is None:
        states = squeue_states()
    stored = store.task_states(keys)
    out: dict[str, str] = {}
    now = time.time()
    for key in keys:
        entry = entries[key]
        path = record_path(run_dir, key)
        if path.exists():
            try:
                rec = TaskRecord.load(path)
            except FileNotFoundError:  # merged by another driver at this moment
                rec = None
            except Exception as exc:  # a truncated file cannot happen (atomic save); a foreign one can
                rec = TaskRecord(key=key, status="failed", error=f"unreadable record file {path}: {exc}")
            if rec is not None:
                if rec.status != "done" and not rec.log_tail:
                    rec.log_tail = log_tail(entry)
                rec.info.setdefault("slurm_job_id", entry.get("job_id"))
                store.write_record(TaskSpec.from_dict(entry["spec"]), rec, entry.get("run_id"))
                merged = records_dir(run_dir) / "merged" / path.name
                merged.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):  # moved by another driver
                    os.replace(path, merged)
                out[key] = rec.status
                continue
        status, finished = stored.get(key, (None, None))
        if status in ("done", "failed") and (finished or 0) >= entry.get("submitted", 0):
            out[key] = status
            continue
        if states is None:
            out[key] = "unknown"
            continue
        job_id = str(entry.get("job_id"))
        state, reason = states.get(job_id, ("", ""))
        if state == "PENDING" and reason in HOPELESS:
            # the request can never start here: cancel it and say why, rather than wait forever
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["scancel", job_id], capture_output=True, timeout=60, check=False)
            rec = TaskRecord(key=key, status="failed", started=entry.get("submitted", now), finished=now,
                             error=f"Slurm job {job_id} cannot start ({reason}: {HOPELESS[reason]}); cancelled",
                             log_tail=None, host="", info={"slurm_job_id": job_id})  # fmt: skip
            store.write_record(TaskSpec.from_dict(entry["spec"]), rec, entry.get("run_id"))
            out[key] = "failed"
        elif state in QUEUED:
            out[key] = "submitted"
        elif state in RUNNING:
            out[key] = "running"
        else:  # ended (or purged from the queue) and no record file
            first = seen_ended.setdefault(job_id, now)
            if now - first < grace_s:
                out[key] = "running"
                continue
            what = f"ended {state}" + (f" ({reason})" if reason and reason != "None" else "")
            if not state:
                what = "left the queue"
            rec = TaskRecord(key=key, status="failed", started=entry.get("submitted", now), finished=now,
                             error=f"Slurm job {job_id} {what} without writing a result",
                             log_tail=log_tail(entry), host="", info={"slurm_job_id": job_id})  # fmt: skip
            store.write_record(TaskSpec.from_dict(entry["spec"]), rec, entry.get("run_id"))
            out[key] = "failed"
    return out


# -- the executor ------------------------------------------------------------------------------


class SlurmExecutor:
    name = "slurm"

    def __init__(self, partition: str | None = None, account: str | None = None, qos: str | None = None,
                 sbatch_options: dict[str, Any] | None = None, additional_parameters: dict[str, Any] | None = None,
                 setup: list[str] | str | None = None, cpus: int | None = None, gpus: int | None = None,
                 mem_gb: float | None = None, time_min: int | None = None,
                 resources: dict[str, dict[str, Any]] | None = None, array_parallelism: int | None = None,
                 python: str | None = None, poll_s: float = 5.0, record_grace_s: float = 15.0,
                 fit_partition: bool = True, **unknown: Any):  # fmt: skip
        if unknown:
            raise UserError(
                f"unknown Slurm executor option(s) {sorted(unknown)}",
                f"known options of [executor]: name, {', '.join(OPTIONS)}",
            )
        if not shutil.which("sbatch") or not shutil.which("squeue"):
            raise UserError(
                "--executor slurm was asked for but sbatch/squeue are not on PATH",
                "run on a Slurm login node (or `module load slurm`), or use --executor local",
            )
        if isinstance(setup, str):
            setup = [setup]
        for name, value in (("sbatch_options", sbatch_options), ("additional_parameters", additional_parameters),
                            ("resources", resources)):  # fmt: skip
            if value is not None and not isinstance(value, dict):
                raise UserError(
                    f"[executor] {name} must be a table", f"e.g. {name} = {{ constraint = 'a100' }}"
                )
        for model, table in (resources or {}).items():
            bad = sorted(set(table) - set(RESOURCE_KEYS)) if isinstance(table, dict) else ["(not a table)"]
            if bad:
                raise UserError(f"[executor.resources.{model}]: unknown key(s) {bad}",
                                f"use {', '.join(RESOURCE_KEYS)}")  # fmt: skip
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

    # -- planning jobs ------------------------------------------------------------------------
    def resources_for(self, spec: TaskSpec, limits: PartitionLimits | None = None) -> tuple[dict, list[str]]:
        base = generator_resources(spec.model, spec.profile)
        res = task_resources(base, device=spec.device, overrides=self.overrides,
                             model_overrides=self.model_resources.get(spec.model))  # fmt: skip
        where = f"partition '{self.partition}'" if self.partition else "the default partition"
        return fit_to_partition(res, limits, device=spec.device, where=where)

    def _submit_group(self, res: dict[str, Any], specs: list[TaskSpec], run_dir: Path, run_id=None) -> list:
        submitit = import_submitit()
        executor = submitit.SlurmExecutor(folder=slurm_dir(run_dir) / "%j", python=self.python)
        models = sorted({s.model for s in specs})
        params = sbatch_parameters(res, partition=self.partition, account=self.account, qos=self.qos,
                                   sbatch_options=self.sbatch_options, setup=self.setup,
                                   job_name="scgenbench-" + ("-".join(models) if len(models) <= 3 else "grid"),
                                   array_parallelism=self.array_parallelism)  # fmt: skip
        try:
            executor.update_parameters(**params)
        except ValueError as exc:
            raise UserError(
                f"invalid Slurm option: {exc}".splitlines()[0], "fix [executor] sbatch_options"
            ) from None
        try:
            with executor.batch():
                jobs = [executor.submit(run_task, s.to_dict(), str(run_dir), run_id) for s in specs]
        except Exception as exc:  # sbatch refused (unknown partition, account, too many resources...)
            msg = str(exc).strip().splitlines()
            detail = next((line for line in msg if "error" in line.lower()), msg[-1] if msg else repr(exc))
            raise UserError(f"sbatch refused the job: {detail.strip()}",
                            "check --partition/--account/--qos and [executor] resources (`sinfo` lists "
                            "partitions); tasks submitted before this one keep running") from None  # fmt: skip
        return jobs

    # -- execute -------------------------------------------------------------------------------
    def execute(self, tasks: list[TaskSpec], store, *, run_dir, run_id, progress=False, console=None,
                data=None, detach=False) -> dict[str, Any]:  # fmt: skip
        run_dir = Path(run_dir).resolve()
        ledger = load_ledger(run_dir)
        entries = ledger["tasks"]
        states = squeue_states()
        # results of earlier submissions that finished since: merge first, do not resubmit them
        known = [t.key for t in tasks if t.key in entries]
        done_before = store.done_keys()
        merged = refresh(run_dir, store, ledger, known, grace_s=0.0, states=states) if known else {}
        newly_done = store.done_keys() - done_before
        in_flight = [t for t in tasks if merged.get(t.key) in ("submitted", "running")]
        flying = {t.key for t in in_flight}
        to_submit = [t for t in tasks if t.key not in newly_done and t.key not in flying]
        if console is not None and (newly_done or in_flight):
            console.print(f"slurm: {len(newly_done)} finished since the last look (merged), "
                          f"{len(in_flight)} still queued/running (not resubmitted)")  # fmt: skip

        if self.partition and to_submit and partition_exists(self.partition) is False:
            raise UserError(f"Slurm partition '{self.partition}' does not exist",
                            "give one that `sinfo -s` lists with --partition (or in [executor])")  # fmt: skip
        limits = partition_limits(self.partition) if self.fit_partition and to_submit else None
        planned = []
        notes: dict[str, list[str]] = {}
        for spec in to_submit:
            res, why = self.resources_for(spec, limits)
            planned.append((spec, res))
            if why:
                notes.setdefault(spec.model, why)
            store.mark_state(spec, run_id, "planned")
        if console is not None:
            for model, why in notes.items():
                console.print(f"  [yellow]note[/yellow] {model}: resources lowered: {'; '.join(why)}")
        groups = group_by_resources(planned)
        for res, specs in groups:
            jobs = self._submit_group(res, specs, run_dir, run_id)
            now = time.time()
            for spec, job in zip(specs, jobs, strict=True):
                entries[spec.key] = {
                    "label": spec.label, "job_id": str(job.job_id), "run_id": run_id, "submitted": now,
                    "resources": res, "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
                    "spec": spec.to_dict(),
                }  # fmt: skip
                store.mark_state(spec, run_id, "submitted")
            save_ledger(run_dir, ledger)
            if console is not None:
                kind = f"array of {len(jobs)}" if len(jobs) > 1 else "job"
                first = str(jobs[0].job_id).split("_")[0]
                console.print(f"slurm: submitted {kind} {first} ({res['cpus']} CPU, {res['gpus']} GPU, "
                              f"{res['mem_gb']:g} GB, {res['time_min']} min): "
                              f"{', '.join(sorted({s.model for s in specs}))}")  # fmt: skip
        watch = [t.key for t in to_submit] + [t.key for t in in_flight]
        if detach or not watch:
            return {"failed": [], "detached": bool(detach and watch)}
        return {"failed": self.wait(run_dir, store, ledger, watch, progress=progress, console=console),
                "detached": False}  # fmt: skip

    def wait(self, run_dir: Path, store, ledger: dict[str, Any], keys: list[str], *, progress=False,
             console=None) -> list[str]:  # fmt: skip
        """Poll until every task is done or failed; report failures with their log tails."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from bench.executors import TaskLines, report_failure

        seen_ended: dict[str, float] = {}
        reported: set[str] = set()
        lines, ended_keys = TaskLines(console, len(keys), bar=progress), set()
        failed: list[str] = []
        entries = ledger["tasks"]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, disable=not progress, transient=False) as bar:  # fmt: skip
            job = bar.add_task("slurm", total=len(keys))
            while True:
                states = refresh(
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
                bar.update(job, completed=ended, description=(
                    f"slurm: {counts['submitted']} queued, {counts['running']} running, {len(failed)} failed"))  # fmt: skip
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


def import_submitit():
    """submitit, imported without its logging setup.

    At import, submitit runs ``logging.config.dictConfig``, which first closes every logging handler
    the process already has (``logging.config._clearExistingHandlers``): a notebook's, a user's log
    file, and absl's (imported with TensorFlow, or with scvi-tools through ml_collections), whose
    ``close()`` closes the stream it was made with. Under pytest that stream is the capture file,
    and closing it crashed the test run (CI, stop 22: "lost sys.stderr"); in a user's process it
    silences their logging. ``SUBMITIT_LOG_LEVEL=NOCONFIG``, submitit's own switch, skips that
    setup; submitit's warnings then go through the root logger to whatever stderr is current.
    Where something imported submitit before with its setup, its handlers (holding the streams of
    that moment) are dropped for the same reason."""
    import logging

    previous = os.environ.get("SUBMITIT_LOG_LEVEL")
    os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"  # read once, at submitit's first import
    try:
        import submitit
    finally:
        if previous is None:
            os.environ.pop("SUBMITIT_LOG_LEVEL", None)
        else:
            os.environ["SUBMITIT_LOG_LEVEL"] = previous
    logger = logging.getLogger("submitit")
    for handler in list(logger.handlers):
        if isinstance(handler, logging.StreamHandler):
            logger.removeHandler(handler)
    logger.setLevel(logging.WARNING)  # its debug chatter is off
    return submitit
