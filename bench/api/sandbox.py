"""What a container generator may do: the sandbox (docs/docker.md, "Security model").

Benchmarks run third-party model code (the original scGAN image, users' plugins), so the harness
treats it as untrusted. This module holds the policy and nothing that runs it:

* :class:`Sandbox`: the hardened defaults of every container (no network, non-root user, no
  capabilities, no-new-privileges, read-only root filesystem with a tmpfs /tmp, a pids limit). A
  plugin that truly needs one of them relaxed declares it in its class metadata ``sandbox``
  (e.g. ``{"network": "bridge"}``); `bench list` shows every relaxation;
* who the container runs as, its mounts and the ``docker run`` options of all that.

Beside it, each with one job (their names are re-exported here):

* :mod:`bench.api.limits`: :class:`Limits`, memory, CPUs and GPUs of one container, from the
  generator's ``resources``, the Slurm allocation of the job it runs in, or the per-run parameters
  ``mem_limit`` / ``cpu_limit``;
* :mod:`bench.api.containers`: labels: every container carries the run dir, run id and task key of
  the task that started it and the process that owns it (:func:`task_scope`), so an interrupted
  task's containers can be found and removed, and ``bench run`` removes what a crashed earlier run
  of its run dir left;
* :mod:`bench.api.container_files`: what a container wrote, read without trusting it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from bench.api.container_files import SAFE_NAME, container_file, read_container_h5ad, symlinks_in
from bench.api.containers import (
    LABEL,
    LABEL_OWNER,
    LABEL_RUN_DIR,
    LABEL_RUN_ID,
    LABEL_TASK,
    TaskScope,
    container_labels,
    docker_client,
    owner_alive,
    owner_label,
    remove_containers,
    remove_leftovers,
    remove_task_containers,
    task_scope,
)
from bench.api.errors import TaskFailed, UserError
from bench.api.limits import (
    DEFAULT_RESOURCES,
    Limits,
    allocated_gpus,
    available_cpus,
    flat_resources,
    format_size,
    parse_size,
    resolve_limits,
)

__all__ = [
    "ALLOWED_CAPS",
    "ALLOWED_NETWORKS",
    "DEFAULT_RESOURCES",
    "LABEL",
    "LABEL_OWNER",
    "LABEL_RUN_DIR",
    "LABEL_RUN_ID",
    "LABEL_TASK",
    "RELAXATION_BOUNDS",
    "SAFE_NAME",
    "SANDBOX_GID",
    "SANDBOX_UID",
    "Limits",
    "Sandbox",
    "TaskScope",
    "allocated_gpus",
    "available_cpus",
    "command_line",
    "container_file",
    "container_labels",
    "container_user",
    "docker_client",
    "docker_options",
    "flat_resources",
    "format_size",
    "give_back",
    "input_path",
    "lend_workdir",
    "owner_alive",
    "owner_label",
    "parse_size",
    "read_container_h5ad",
    "remove_containers",
    "remove_leftovers",
    "remove_task_containers",
    "resolve_limits",
    "symlinks_in",
    "task_scope",
]

# the image's non-root user (generators/scgan/Dockerfile); containers run as it when the caller is root
SANDBOX_UID = 10001
SANDBOX_GID = 10001


# -- the policy -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sandbox:
    """The hardened defaults of a container run; a plugin relaxes fields through its class
    metadata ``sandbox = {field: value}``."""

    network: str = "none"  # docker network mode; "bridge" gives the container a network
    read_only_root: bool = True  # the image's filesystem is read-only; /tmp is a tmpfs
    tmp_mb: int = 1024  # size of the tmpfs at /tmp (counts against the memory limit)
    run_as_root: bool = False  # default: the caller's uid, or the image's user 10001 when the caller is root
    cap_add: tuple[str, ...] = ()  # every capability is dropped; these are given back
    no_new_privileges: bool = True  # setuid binaries cannot raise privileges
    pids_limit: int = 2048  # processes + threads

    @classmethod
    def declared(cls, relax: Mapping[str, Any] | None, owner: str = "generator") -> Sandbox:
        """The defaults with a plugin's declared relaxations, each within its bound
        (:data:`RELAXATION_BOUNDS`); a UserError names an unknown field or a value out of bounds."""
        relax = dict(relax or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(relax) - known)
        if unknown:
            raise UserError(
                f"{owner} declares unknown sandbox field(s) {unknown}",
                f"known fields: {', '.join(sorted(known))} (docs/docker.md, security model)",
            )
        if "cap_add" in relax:
            caps = relax["cap_add"]
            caps = [caps] if isinstance(caps, str) else list(caps or ())
            relax["cap_add"] = tuple(str(c).upper().removeprefix("CAP_") for c in caps)
        for name, value in relax.items():
            why = _out_of_bounds(name, value)
            if why:
                raise UserError(
                    f"{owner} declares sandbox {name}={value!r}, outside what the harness allows: {why}",
                    "docs/docker.md, security model: the relaxations a plugin may declare",
                )
        return replace(cls(), **relax)

    def relaxations(self) -> list[str]:
        """``field=value`` for every field that differs from the defaults."""
        default = Sandbox()
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                shown = ",".join(value) if isinstance(value, tuple) else value
                out.append(f"{f.name}={shown}")
        return out


# what a plugin may relax, and how far (docs/docker.md, security model): never the host's network,
# never a capability that reaches the host's kernel, devices or other processes, never an unlimited
# process count. Each relaxation also needs the run's opt-in (RunSpec.allow_relaxed_sandbox).
ALLOWED_NETWORKS = ("none", "bridge")
ALLOWED_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID",
                "SETUID", "SYS_PTRACE")  # fmt: skip
RELAXATION_BOUNDS = {
    "network": f"one of {', '.join(ALLOWED_NETWORKS)}",
    "cap_add": f"capabilities among {', '.join(ALLOWED_CAPS)}",
    "pids_limit": "an integer from 64 to 65,536",
    "tmp_mb": "an integer from 16 to 65,536 (MB)",
    "read_only_root": "true or false",
    "run_as_root": "true or false",
    "no_new_privileges": "true or false",
}


def _out_of_bounds(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for sandbox field ``name`` (None: allowed)."""
    ok = {
        "network": lambda v: v in ALLOWED_NETWORKS,
        "cap_add": lambda v: all(c in ALLOWED_CAPS for c in v),
        "pids_limit": lambda v: isinstance(v, int) and not isinstance(v, bool) and 64 <= v <= 65_536,
        "tmp_mb": lambda v: isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 65_536,
    }.get(name, lambda v: isinstance(v, bool))
    return None if ok(value) else f"{name} must be {RELAXATION_BOUNDS[name]}"


# -- who the container runs as ----------------------------------------------------------------------
def container_user(sandbox: Sandbox) -> tuple[int, int]:
    """(uid, gid) of the container: root only when declared; the caller's ids when the caller is
    not root (files in the work dir stay the caller's); else the image's user 10001 (the harness
    gives the files back to root afterwards, :func:`give_back`)."""
    if sandbox.run_as_root:
        return 0, 0
    uid, gid = os.getuid(), os.getgid()
    return (uid, gid) if uid != 0 else (SANDBOX_UID, SANDBOX_GID)


def lend_workdir(work: Path, uid: int, gid: int) -> bool:
    """Make the work dir writable for a container user other than the caller (a root caller);
    returns whether :func:`give_back` must run afterwards."""
    if uid == os.getuid() or os.getuid() != 0:  # only root can lend (run_as_root: docs/docker.md)
        return False
    os.chown(work, uid, gid)
    return True


def give_back(work: Path, uid: int) -> None:
    """Give everything the container user made in the work dir back to the caller; symbolic links
    are changed, never followed."""
    me, my_group = os.getuid(), os.getgid()
    for root, dirs, files in os.walk(work):
        for name in [*dirs, *files]:
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(path).st_uid == uid:
                    os.chown(path, me, my_group, follow_symlinks=False)
    os.chown(work, me, my_group)


# -- docker run options -----------------------------------------------------------------------------
def input_path(work: Path, rel: str) -> Path:
    """The host path of a declared input, which must lie inside the work dir: a relative path
    without ``..`` that does not resolve (through a symlink) outside ``work``; else a TaskFailed
    naming it (the sandbox mounts nothing else of the host, docs/docker.md)."""
    from pathlib import PurePosixPath

    pure = PurePosixPath(str(rel))
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise TaskFailed(
            f"container input {rel!r} is not a path inside the work dir (absolute, empty or with '..')"
        )
    path = Path(work) / pure
    resolved = path.resolve()
    if resolved != Path(work).resolve() and Path(work).resolve() not in resolved.parents:
        raise TaskFailed(f"container input {rel!r} resolves outside the work dir ({resolved})")
    return path


def docker_options(
    sandbox: Sandbox,
    limits: Limits,
    work: Path,
    *,
    inputs: tuple[str, ...] = (),
    user: tuple[int, int],
    labels: Mapping[str, str],
    working_dir: str = "/work",
) -> dict[str, Any]:
    """Keyword arguments of ``docker.containers.run`` for one sandboxed run: ``work`` mounted at
    /work (writable: the outputs), each existing path of ``inputs`` (relative to ``work``) mounted
    read-only over it, nothing else of the host."""
    import docker

    work = Path(work).resolve()
    mounts = [docker.types.Mount("/work", str(work), type="bind", read_only=False)]
    for rel in inputs:
        path = input_path(work, rel)
        if path.exists():
            mounts.append(docker.types.Mount(f"/work/{rel}", str(path), type="bind", read_only=True))
    opts: dict[str, Any] = {
        "mounts": mounts,
        "working_dir": working_dir,
        "user": f"{user[0]}:{user[1]}",
        "environment": {"HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONUNBUFFERED": "1"},
        "network_mode": sandbox.network,
        "cap_drop": ["ALL"],
        "read_only": sandbox.read_only_root,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={int(sandbox.tmp_mb)}m,mode=1777"},
        "pids_limit": int(sandbox.pids_limit),
        "mem_limit": int(limits.mem_bytes),
        "memswap_limit": int(limits.mem_bytes),  # no swap: over the limit means OOM-killed
        "nano_cpus": int(round(limits.cpus * 1e9)),
        "labels": dict(labels),
    }
    if sandbox.cap_add:
        opts["cap_add"] = list(sandbox.cap_add)
    if sandbox.no_new_privileges:
        opts["security_opt"] = ["no-new-privileges"]
    if limits.gpu_ids:
        opts["device_requests"] = [
            docker.types.DeviceRequest(device_ids=list(limits.gpu_ids), capabilities=[["gpu"]])
        ]
    elif limits.gpus:
        opts["device_requests"] = [docker.types.DeviceRequest(count=int(limits.gpus), capabilities=[["gpu"]])]
    return opts


def command_line(image: str, argv: list[str], opts: Mapping[str, Any]) -> str:
    """The equivalent ``docker run`` command line (for the log)."""
    parts = ["docker run", f"--network {opts['network_mode']}", f"--user {opts['user']}", "--cap-drop ALL"]
    parts += [f"--cap-add {c}" for c in opts.get("cap_add", [])]
    parts += [f"--security-opt {s}" for s in opts.get("security_opt", [])]
    if opts.get("read_only"):
        parts.append("--read-only")
    parts += [f"--tmpfs {k}:{v}" for k, v in opts.get("tmpfs", {}).items()]
    parts += [
        f"--pids-limit {opts['pids_limit']}",
        f"--memory {format_size(opts['mem_limit'])}",
        f"--memory-swap {format_size(opts['memswap_limit'])}",
        f"--cpus {opts['nano_cpus'] / 1e9:g}",
    ]
    for req in opts.get("device_requests", []):
        ids = req.get("DeviceIDs") or []
        parts.append(f"--gpus device={','.join(ids)}" if ids else f"--gpus {req.get('Count')}")
    for m in opts["mounts"]:
        parts.append(f"-v {m['Source']}:{m['Target']}{':ro' if m.get('ReadOnly') else ''}")
    return " ".join([*parts, image, *argv])
