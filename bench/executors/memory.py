"""The default memory cap of a task (bench.executors.isolated): a fraction of the memory available
when the task starts, the machine's or less where a cgroup allows less."""

from __future__ import annotations

import os
from pathlib import Path

# the default memory cap: this fraction of the memory available when a task starts (the machine's,
# or less where a cgroup allows less); SCGENBENCH_MEMORY_FRACTION sets it
DEFAULT_MEMORY_FRACTION = 0.8


def default_memory_gb() -> tuple[float, str]:
    """The memory cap of a task run without ``--memory-limit``, in GB, and how it was found:
    :data:`DEFAULT_MEMORY_FRACTION` (or ``$SCGENBENCH_MEMORY_FRACTION``) of the memory available
    now: the machine's available memory, or the room left under this process's cgroup memory limit
    where that is less (a container; a Slurm job where Slurm enforces ``--mem`` with cgroups). A
    Slurm job's ``--mem`` alone is not a bound: without cgroups Slurm does not enforce it, and a
    container model's job asks only for what the harness needs beside its container."""
    import psutil

    from bench.api.errors import UserError

    raw = os.environ.get("SCGENBENCH_MEMORY_FRACTION")
    fraction = DEFAULT_MEMORY_FRACTION
    if raw:
        try:
            fraction = float(raw)
        except ValueError:
            fraction = -1.0
        if not 0 < fraction <= 1:
            raise UserError(
                f"SCGENBENCH_MEMORY_FRACTION must be a number in (0, 1], got {raw!r}",
                "e.g. SCGENBENCH_MEMORY_FRACTION=0.5, or unset it (default 0.8), or pass --memory-limit GB",
            )
    room = {"available memory": psutil.virtual_memory().available}
    cgroup = _cgroup_room()
    if cgroup is not None:
        room["room under the cgroup's memory limit"] = cgroup
    what, least = min(room.items(), key=lambda item: item[1])
    gb = max(fraction * least / 1024**3, 0.1)
    return gb, f"the default, {fraction:g} of the {least / 1024**3:.1f} GB {what}"


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), None when there is no limit or no cgroup file to read."""
    root = Path("/sys/fs/cgroup")
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    paths = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path.lstrip("/")
    candidates = []
    if "" in paths:  # cgroup v2
        candidates += [(root / paths[""] / "memory.max", root / paths[""] / "memory.current")]
    v1 = next((p for c, p in paths.items() if "memory" in c.split(",")), None)
    if v1 is not None:
        base = root / "memory"
        candidates += [(base / v1 / "memory.limit_in_bytes", base / v1 / "memory.usage_in_bytes")]
        candidates += [(base / "memory.limit_in_bytes", base / "memory.usage_in_bytes")]
    for limit_file, usage_file in candidates:
        try:
            limit = limit_file.read_text().strip()
            usage = int(usage_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return max(int(limit) - usage, 0)
        return None
    return None


__all__ = ["DEFAULT_MEMORY_FRACTION", "default_memory_gb"]
