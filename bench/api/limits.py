"""The resources of one container (or local process), :class:`Limits`: memory, CPUs and GPUs, from
the generator's ``resources``, the Slurm allocation of the job it runs in, or the per-run
parameters ``mem_limit`` / ``cpu_limit`` (:func:`resolve_limits`)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.api.contract import DEFAULT_RESOURCES as CONTRACT_RESOURCES
from bench.api.errors import UserError

# a container's share of the contract's defaults (the time limit is the task's, not the container's)
DEFAULT_RESOURCES = {k: v for k, v in CONTRACT_RESOURCES.items() if k != "time_min"}


@dataclass(frozen=True)
class Limits:
    """Resources of one container (or local process)."""

    mem_bytes: int
    cpus: float
    gpus: int = 0  # how many GPUs, when no allocation names them
    gpu_ids: tuple[str, ...] = ()  # the allocated GPUs (Slurm, CUDA_VISIBLE_DEVICES)
    source: dict[str, str] = field(default_factory=dict, compare=False)  # where each value came from

    def describe(self) -> str:
        gpu = (
            f", GPUs {','.join(self.gpu_ids)}"
            if self.gpu_ids
            else (f", {self.gpus} GPU" if self.gpus else "")
        )
        return f"memory {format_size(self.mem_bytes)}, {self.cpus:g} CPU{gpu}"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(value: str | int | float) -> int:
    """Bytes of a docker-style size: an integer (bytes) or a number with k, m, g or t (binary
    units: '512m', '16g', '1.5G')."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise UserError(f"memory limit {value!r} must be positive", "e.g. mem_limit = '16g'")
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise UserError(f"cannot read memory limit {value!r}", "use e.g. '512m', '16g' or a number of bytes")
    number, unit = float(match.group(1)), match.group(2).lower()
    size = int(number * 1024 ** " kmgt".index(unit or " "))
    if size <= 0:
        raise UserError(f"memory limit {value!r} must be positive", "e.g. mem_limit = '16g'")
    return size


def format_size(n: int) -> str:
    for unit, scale in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n / 1024**2:.0f}m" if n >= 1024**2 else f"{n}b"


def flat_resources(resources: Mapping[str, Any] | None) -> dict[str, Any]:
    """A generator's ``resources`` as one flat table: per-profile tables
    (``{"quick": {...}, "paper": {...}}``) give the largest value of each key."""
    resources = dict(resources or {})
    tables = [v for v in resources.values() if isinstance(v, dict)]
    if tables:
        keys = {k for t in tables for k in t}
        resources = {k: max(t[k] for t in tables if k in t) for k in keys}
    return {**DEFAULT_RESOURCES, **{k: v for k, v in resources.items() if v is not None}}


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def allocated_gpus(env: Mapping[str, str]) -> tuple[str, ...] | None:
    """GPUs allocated to this process: Slurm's (physical ids, what the docker daemon sees), else
    CUDA_VISIBLE_DEVICES; None when nothing says."""
    for var in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = env.get(var)
        if value is not None:
            ids = tuple(s.strip() for s in value.split(",") if s.strip() and s.strip() != "-1")
            return ids
    return None


def resolve_limits(
    resources: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None = None,
    *,
    device: str = "cpu",
    env: Mapping[str, str] | None = None,
) -> Limits:
    """Limits of one container: the per-run parameters ``mem_limit`` / ``cpu_limit`` when set, else
    the Slurm allocation of the job this runs in (SLURM_MEM_PER_NODE, SLURM_MEM_PER_CPU,
    SLURM_CPUS_PER_TASK), else the generator's declared ``resources``. CPUs never exceed what this
    process may use. GPUs (device 'cuda' only): the allocated ones (Slurm, CUDA_VISIBLE_DEVICES),
    else as many as ``resources['gpus']`` asks (at least one) -- never every GPU of the node."""
    env = os.environ if env is None else env
    params = params or {}
    res = flat_resources(resources)
    source: dict[str, str] = {}

    def positive(var: str) -> int | None:  # Slurm's 0 means "all of the node": no information here
        value = env.get(var, "")
        return int(value) if value.isdigit() and int(value) > 0 else None

    slurm_cpus = positive("SLURM_CPUS_PER_TASK")
    if params.get("cpu_limit") is not None:
        cpus, source["cpus"] = float(params["cpu_limit"]), "cpu_limit"
        if cpus <= 0:
            raise UserError(f"cpu_limit {cpus:g} must be positive", "e.g. cpu_limit = 4")
    elif slurm_cpus:
        cpus, source["cpus"] = float(slurm_cpus), "SLURM_CPUS_PER_TASK"
    else:
        cpus, source["cpus"] = float(res["cpus"]), "resources"
    cpus = max(0.01, min(cpus, float(available_cpus())))
    if params.get("mem_limit") is not None:
        mem, source["mem"] = parse_size(params["mem_limit"]), "mem_limit"
    elif positive("SLURM_MEM_PER_NODE"):
        mem, source["mem"] = positive("SLURM_MEM_PER_NODE") * 1024**2, "SLURM_MEM_PER_NODE"
    elif positive("SLURM_MEM_PER_CPU") and slurm_cpus:
        mem, source["mem"] = positive("SLURM_MEM_PER_CPU") * slurm_cpus * 1024**2, "SLURM_MEM_PER_CPU"
    else:
        mem, source["mem"] = int(float(res["mem_gb"]) * 1024**3), "resources"
    gpus, gpu_ids = 0, ()
    if device == "cuda":
        ids = allocated_gpus(env)
        if ids:
            gpu_ids, source["gpus"] = ids, "allocation"
        else:
            gpus, source["gpus"] = max(1, int(res.get("gpus") or 0)), "resources"
    return Limits(mem_bytes=mem, cpus=cpus, gpus=gpus, gpu_ids=gpu_ids, source=source)
