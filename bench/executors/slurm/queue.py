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
