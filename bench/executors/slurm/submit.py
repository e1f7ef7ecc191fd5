"""Submitting job arrays with submitit, and what runs inside a job (:func:`run_task`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.api.errors import UserError
from bench.executors.base import run_one
from bench.executors.slurm.ledger import record_path, slurm_dir, timeout_error
from bench.executors.slurm.queue import time_limit_hit, time_limit_of
from bench.executors.slurm.resources import sbatch_parameters
from bench.tasks import TaskRecord, TaskSpec


def run_task(spec_dict: dict[str, Any], run_dir: str, run_id: int | None = None) -> str:
    """Job entry point: execute one task in a child process under its time limit and memory cap (as
    the local executor does: bench.executors.isolated; a killed child leaves a failed record with
    the reason) and write its record file (never the store). SIGTERM
    (scancel, the time limit, preemption; Slurm sends SIGKILL KillWait seconds later) and SIGINT
    stop the task, remove its containers and record it as failed with the reason."""
    from bench.executors.isolated import TaskProcess
    from bench.interrupt import interruptible

    spec = TaskSpec.from_dict(spec_dict)
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job_id = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID")
    node_cleanup(run_dir)
    child = TaskProcess("fork")
    try:
        # after submitit's own handlers (it ignores SIGTERM, expecting SIGUSR2 before a requeue)
        with interruptible():
            rec = run_one(
                spec, run_dir, run_id, context="Slurm: scancel, time limit or preemption", child=child
            )
    except KeyboardInterrupt as exc:
        rec = getattr(exc, "record", None) or TaskRecord(
            key=spec.key,
            status="failed",
            started=time.time(),
            finished=time.time(),
            error=f"{getattr(exc, 'reason', 'interrupted')} before the task started",
        )
        limit = time_limit_hit(os.environ.get("SLURM_JOB_ID"))
        if limit is not None:
            rec.error = timeout_error(job_id, limit, rec.error)
    finally:
        child.close()
        node_cleanup(run_dir, spec.key)
    if rec.status != "done" and "UncompletedJobError" in (rec.error or "") and "timed-out" in rec.error:
        # submitit's SIGUSR2, sent by Slurm shortly before the time limit, raised inside the task
        rec.error = timeout_error(job_id, time_limit_of(os.environ.get("SLURM_JOB_ID")) or "?")
    rec.info["slurm_job_id"] = job_id
    rec.save(record_path(run_dir, spec.key))
    print(f"scgenbench: {spec.label} {rec.status}" + (f": {rec.error}" if rec.error else ""), flush=True)
    return rec.status


def node_cleanup(run_dir: str, key: str | None = None) -> None:
    """The clean-up step of every job, on the node it runs on: containers of this run dir left by
    dead processes there (a job killed with SIGKILL), and after the task (``key``) the task's own
    containers. The submit host cannot reach other nodes' engines; each job cleans its own node."""
    from bench.api.sandbox import remove_leftovers, remove_task_containers

    try:
        removed = remove_task_containers(run_dir, key) if key is not None else []
        for names in remove_leftovers(run_dir).values():
            removed += names
    except Exception as exc:  # a clean-up problem must not cost the task its record
        print(f"scgenbench: clean-up on {os.uname().nodename} failed: {exc}", flush=True)
        return
    if removed:
        print(f"scgenbench: removed container(s) {', '.join(removed)} on {os.uname().nodename}", flush=True)


def group_name(models: list[str], token: str = "") -> str:
    """The Slurm job name of a job array: ``scgenbench-nb-real`` (``grid`` past three models), with
    ``token`` (unique per submission: what the ledger finds the array by before it knows its id)."""
    name = "scgenbench-" + ("-".join(sorted(models)) if len(models) <= 3 else "grid")
    return f"{name}-{token}" if token else name


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


def submit_group(
    res: dict[str, Any],
    specs: list[TaskSpec],
    run_dir: Path,
    run_id=None,
    *,
    partition: str | None = None,
    account: str | None = None,
    qos: str | None = None,
    sbatch_options: dict[str, Any] | None = None,
    setup: list[str] | None = None,
    array_parallelism: int | None = None,
    python: str | None = None,
    job_name: str | None = None,
) -> list:
    """Submit ``specs`` (one resource signature ``res``) as one job array named ``job_name`` (by
    default after the models); returns submitit's jobs."""
    submitit = import_submitit()
    executor = submitit.SlurmExecutor(folder=slurm_dir(run_dir) / "%j", python=python)
    models = sorted({s.model for s in specs})
    params = sbatch_parameters(
        res,
        partition=partition,
        account=account,
        qos=qos,
        sbatch_options=sbatch_options,
        setup=setup,
        job_name=job_name or group_name(models),
        array_parallelism=array_parallelism,
    )
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
        raise UserError(
            f"sbatch refused the job: {detail.strip()}",
            "check --partition/--account/--qos and [executor] resources (`sinfo` lists "
            "partitions); tasks submitted before this one keep running",
        ) from None
    return jobs
