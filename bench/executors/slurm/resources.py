"""What a Slurm task asks for: the generator's resources per profile, the executor's overrides,
lowered to the partition's biggest node, grouped into job arrays, as sbatch parameters."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

from bench.api.contract import DEFAULT_RESOURCES, RESOURCE_KEYS
from bench.api.errors import UserError
from bench.tasks import TaskSpec


def generator_resources(model: str, profile: str) -> dict[str, Any]:
    """The generator's declared resources for a profile (flat table, or one table per profile)."""
    from bench.registry import get_generator

    declared = dict(getattr(get_generator(model), "resources", None) or {})
    if profile in declared and isinstance(declared[profile], dict):
        declared = dict(declared[profile])
    elif any(isinstance(v, dict) for v in declared.values()):  # per-profile tables without this profile
        declared = {}
    return {k: declared.get(k, DEFAULT_RESOURCES[k]) for k in RESOURCE_KEYS}


def task_resources(
    base: dict[str, Any],
    *,
    device: str,
    overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
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


def fit_to_partition(
    res: dict[str, Any], limits: PartitionLimits | None, *, device: str, where: str = "the partition"
) -> tuple[dict[str, Any], list[str]]:
    """Lower a request to what the partition's biggest node has; returns (resources, notes)."""
    if limits is None:
        return res, []
    res, notes = dict(res), []
    if limits.gpus is not None and res["gpus"] > limits.gpus:
        if limits.gpus == 0 and device == "cuda":
            raise UserError(
                f"--device cuda was asked for but {where} has no GPUs",
                "give a GPU partition with --partition, or use --device auto or cpu",
            )
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


def sbatch_parameters(
    res: dict[str, Any],
    *,
    partition: str | None = None,
    account: str | None = None,
    qos: str | None = None,
    sbatch_options: dict[str, Any] | None = None,
    setup: list[str] | None = None,
    job_name: str = "scgenbench",
    array_parallelism: int | None = None,
) -> dict[str, Any]:
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
