"""Job states from ``squeue`` (never ``sacct``: clusters without accounting storage have none),
grouped by what they mean for a task."""

from __future__ import annotations

import getpass
import subprocess

# squeue states (long form, `%T`) grouped by what they mean for a task
QUEUED = {
    "PENDING",
    "CONFIGURING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESV_DEL_HOLD",
    "SUSPENDED",
    "STOPPED",
    "SIGNALING",
    "RESIZING",
    "STAGE_OUT",
    "SPECIAL_EXIT",
}
RUNNING = {"RUNNING", "COMPLETING"}
ENDED = {
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "PREEMPTED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
}

# pending reasons that no amount of waiting resolves: the request does not fit the partition
HOPELESS = {
    "PartitionConfig": "more CPUs, memory or GPUs than the partition's nodes have; lower [executor] resources",
    "PartitionNodeLimit": "more nodes than the partition allows",
    "PartitionTimeLimit": "time limit above the partition's; lower time_min or pick another --partition",
    "BadConstraints": "no node has the requested features; check [executor.sbatch_options] constraint",
    "InvalidAccount": "unknown account; check --account",
    "InvalidQOS": "unknown QOS; check --qos",
}


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


def jobs_named(name: str) -> list[str] | None:
    """The ids of this user's jobs named ``name`` that slurmctld knows (array elements one each,
    e.g. ``123_4``); None when squeue cannot be asked."""
    cmd = ["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-n", name, "-o", "%i"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def time_limit_hit(slurm_job_id: str | None) -> str | None:
    """The job's time limit (squeue's ``%l``, e.g. ``1:00``) when Slurm is ending it for reaching
    it (its reason is then ``TimeLimit``), else None (scancel, requeue, preemption)."""
    if not slurm_job_id:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", slurm_job_id, "-o", "%T|%r|%l"], capture_output=True,
                             text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    state, _, rest = out.stdout.strip().partition("|")
    reason, _, limit = rest.partition("|")
    return limit or "?" if reason == "TimeLimit" or state == "TIMEOUT" else None


def time_limit_of(slurm_job_id: str | None) -> str | None:
    """A job's time limit as squeue prints it (``%l``, e.g. ``1:00``); None when unknown."""
    if not slurm_job_id:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", slurm_job_id, "-o", "%l"], capture_output=True, text=True,
                             timeout=20)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
