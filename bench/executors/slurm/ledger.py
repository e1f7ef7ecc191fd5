"""The ledger of submitted tasks (``RUN_DIR/slurm/submitted.json``) and the record files jobs
write: following submitted tasks yields their records (merged files, jobs that ended without one)
for the runner to store."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from bench.executors.base import Outcome
from bench.executors.slurm.queue import HOPELESS, QUEUED, RUNNING, squeue_states
from bench.tasks import TaskRecord, TaskSpec

LEDGER_NAME = "submitted.json"


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


def timeout_error(job_id: str | None, limit: str, detail: str | None = None) -> str:
    """A Slurm job stopped at its time limit: ``timeout`` and what to raise (the same limit stops it
    again, so running the same command again does not help; bench.failures.is_limit)."""
    return (
        f"timeout: Slurm job {job_id} reached its time limit ({limit}) and was stopped; raise the job's "
        "--time with [executor] time_min (or the model's resources time_min), and --timeout if the task "
        "has one, then run again" + (f" ({detail})" if detail else "")
    )


# -- following submitted tasks: merge records, detect jobs that ended without one ---------------


def refresh(
    run_dir: str | Path,
    store,
    ledger: dict[str, Any],
    keys=None,
    *,
    grace_s: float = 15.0,
    seen_ended: dict[str, float] | None = None,
    states: dict[str, tuple[str, str]] | None = None,
) -> Generator[Outcome, None, dict[str, str]]:
    """Follow submitted tasks: yield the result of each that ended since the last look, for the
    runner to store (``store`` is only read); returns ``{key: state}`` with state one of
    submitted (queued), running, done, failed, unknown.

    A record file is yielded, then (once the runner has stored it) moved to ``records/merged/``. A job that left the
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
                job_id = str(entry.get("job_id"))
                state = (states or {}).get(job_id, ("", ""))[0]
                if (
                    rec.status != "done"
                    and (rec.error or "").startswith("interrupted by")
                    and state == "TIMEOUT"
                ):
                    # the job could not ask squeue why it was stopped: its end state says so
                    limit = f"{entry.get('resources', {}).get('time_min', '?')} min"
                    rec.error = timeout_error(job_id, limit, rec.error)
                if rec.status != "done" and not rec.log_tail:
                    rec.log_tail = log_tail(entry)
                rec.info.setdefault("slurm_job_id", entry.get("job_id"))
                yield Outcome(TaskSpec.from_dict(entry["spec"]), rec, entry.get("run_id"))
                merged = records_dir(run_dir) / "merged" / path.name
                merged.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):  # moved by another driver
                    os.replace(path, merged)
                out[key] = rec.status
                continue
        if entry.get("state") == "submitting":  # its driver is calling sbatch (or died doing so)
            out[key] = "submitted"
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
            rec = TaskRecord(
                key=key,
                status="failed",
                started=entry.get("submitted", now),
                finished=now,
                error=f"Slurm job {job_id} cannot start ({reason}: {HOPELESS[reason]}); cancelled",
                log_tail=None,
                host="",
                info={"slurm_job_id": job_id},
            )
            yield Outcome(TaskSpec.from_dict(entry["spec"]), rec, entry.get("run_id"))
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
            error = f"Slurm job {job_id} {what} without writing a result"
            tail = log_tail(entry)
            # TIMEOUT, or submitit's own word when its time-limit signal (SIGUSR2, 90 s before the
            # limit) stopped the job before the task could write a record
            if state == "TIMEOUT" or "this job is timed-out" in tail:
                error = timeout_error(job_id, f"{entry.get('resources', {}).get('time_min', '?')} min")
            rec = TaskRecord(
                key=key,
                status="failed",
                started=entry.get("submitted", now),
                finished=now,
                error=error,
                log_tail=tail,
                host="",
                info={"slurm_job_id": job_id},
            )
            yield Outcome(TaskSpec.from_dict(entry["spec"]), rec, entry.get("run_id"))
            out[key] = "failed"
    return out
