"""What a container generator may do: the sandbox (docs/docker.md, "Security model").

Benchmarks run third-party model code (the original scGAN image, users' plugins), so the harness
treats it as untrusted. This module holds the policy and nothing that runs it:

* :class:`Sandbox`: the hardened defaults of every container (no network, non-root user, no
  capabilities, no-new-privileges, read-only root filesystem with a tmpfs /tmp, a pids limit). A
  plugin that truly needs one of them relaxed declares it in its class metadata ``sandbox``
  (e.g. ``{"network": "bridge"}``); `bench list` shows every relaxation.
* :class:`Limits`: memory, CPUs and GPUs of one container, from the generator's ``resources``, the
  Slurm allocation of the job it runs in, or the per-run parameters ``mem_limit`` / ``cpu_limit``.
* labels: every container carries the run dir, run id and task key of the task that started it
  and the process that owns it (:func:`task_scope`), so an interrupted task's containers can be
  found and removed, and ``bench run`` removes what a crashed earlier run of its run dir left.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bench.api.contract import DEFAULT_RESOURCES as CONTRACT_RESOURCES
from bench.api.errors import TaskFailed, UserError

# the image's non-root user (generators/scgan/Dockerfile); containers run as it when the caller is root
SANDBOX_UID = 10001
SANDBOX_GID = 10001
# a container's share of the contract's defaults (the time limit is the task's, not the container's)
DEFAULT_RESOURCES = {k: v for k, v in CONTRACT_RESOURCES.items() if k != "time_min"}

LABEL = "org.scgenbench"  # every container the harness starts: LABEL=1
LABEL_RUN_DIR = "org.scgenbench.run_dir"
LABEL_RUN_ID = "org.scgenbench.run_id"
LABEL_TASK = "org.scgenbench.task"
LABEL_OWNER = "org.scgenbench.owner"  # host:pid:start-time of the process that started it


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


def symlinks_in(work: Path) -> list[str]:
    """Symbolic links under ``work`` (a container's outputs must not point outside its work dir)."""
    found = []
    for root, dirs, files in os.walk(work):
        for name in [*dirs, *files]:
            if os.path.islink(os.path.join(root, name)):
                found.append(os.path.relpath(os.path.join(root, name), work))
    return sorted(found)


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


# -- labels: which run, task and process a container belongs to ---------------------------------------
@dataclass(frozen=True)
class TaskScope:
    run_dir: str
    run_id: int | None
    task: str


_SCOPE: ContextVar[TaskScope | None] = ContextVar("scgenbench_task_scope", default=None)


@contextlib.contextmanager
def task_scope(run_dir: str | Path, run_id: int | None, task: str) -> Iterator[TaskScope]:
    """Containers started inside carry the run dir, run id and task key as labels."""
    scope = TaskScope(str(Path(run_dir).resolve()), run_id, task)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), '' elsewhere: with the pid it
    identifies a process even after its pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def owner_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def container_labels() -> dict[str, str]:
    labels = {LABEL: "1", LABEL_OWNER: owner_label()}
    scope = _SCOPE.get()
    if scope is not None:
        labels[LABEL_RUN_DIR] = scope.run_dir
        labels[LABEL_TASK] = scope.task
        if scope.run_id is not None:
            labels[LABEL_RUN_ID] = str(scope.run_id)
    return labels


def owner_alive(owner: str | None) -> bool:
    """Whether the process named by an owner label still runs (True when this host cannot tell:
    another host's process, or a label it does not understand)."""
    try:
        host, pid_text, start = (owner or "").split(":")
        pid = int(pid_text)
    except ValueError:
        return True
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    return not start or _start_time(pid) == start


def docker_client(timeout: int = 10):
    """A docker client whose engine answers, or None."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception:
        return None


def _engine(client=None):
    return client if client is not None else docker_client(timeout=5)


def remove_containers(filters: dict[str, Any], client=None, *, keep=None) -> list[str]:
    """Kill and remove the containers matching ``filters`` (docker API filters); ``keep(container)``
    spares some. Returns the names of those removed; nothing when no engine answers."""
    client = _engine(client)
    if client is None:
        return []
    removed = []
    try:
        found = client.containers.list(all=True, filters=filters)
    except Exception:
        return []
    for container in found:
        if keep is not None and keep(container):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed.append(container.name)
    return removed


def remove_task_containers(run_dir: str | Path, task: str, client=None) -> list[str]:
    """Remove every container of one task of a run dir (an interrupted task)."""
    run_dir = str(Path(run_dir).resolve())
    return remove_containers({"label": [f"{LABEL_RUN_DIR}={run_dir}", f"{LABEL_TASK}={task}"]}, client)


def remove_leftovers(run_dir: str | Path | None = None, client=None) -> dict[str, list[str]]:
    """Remove containers of earlier runs whose owning process is gone (a run killed with SIGKILL,
    a crashed node): of ``run_dir``, or of every run dir when None. Containers of live processes
    (a Slurm job still running on this host, another ``bench run``) and of other hosts' processes
    are kept. Returns {run dir: names of the containers removed}."""
    label = LABEL_RUN_DIR if run_dir is None else f"{LABEL_RUN_DIR}={Path(run_dir).resolve()}"
    client = _engine(client)
    if client is None:
        return {}
    try:
        found = client.containers.list(all=True, filters={"label": [label]})
    except Exception:
        return {}
    removed: dict[str, list[str]] = {}
    for container in found:
        if owner_alive(container.labels.get(LABEL_OWNER)):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed.setdefault(container.labels.get(LABEL_RUN_DIR, "?"), []).append(container.name)
    return removed


# -- what a container wrote ---------------------------------------------------------------------------
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def container_file(folder: Path, name: object) -> Path:
    """``folder / name`` for a file name a container wrote into an index (e.g. snapshots/index.json):
    a plain name (letters, digits, ``._-``; no separator, no ``..``) whose path stays in ``folder``;
    else a TaskFailed naming it."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise TaskFailed(f"container output names the file {name!r}: only a plain file name is read")
    path = Path(folder) / name
    if path.is_symlink():
        raise TaskFailed(f"container output {path.name} is a symbolic link: not read")
    return path


def read_container_h5ad(path: Path):
    """An .h5ad a container wrote, read only when it is a plain HDF5 file of its own: no external
    link, no dataset stored in an external file and no virtual dataset, all of which would make
    the host read other files (a TaskFailed names the object). Returns the AnnData."""
    import anndata as ad
    import h5py

    path = Path(path)
    if path.is_symlink():
        raise TaskFailed(f"container output {path.name} is a symbolic link: not read")
    bad: list[str] = []

    def visit(group, prefix: str = "") -> None:
        for key in group:
            link = group.get(key, getlink=True)
            name = f"{prefix}/{key}"
            if isinstance(link, h5py.ExternalLink | h5py.SoftLink):
                bad.append(f"{name} is a {type(link).__name__}")
                continue
            obj = group[key]
            if isinstance(obj, h5py.Dataset):
                if obj.external:
                    bad.append(f"{name} is stored in external file(s)")
                elif obj.is_virtual:
                    bad.append(f"{name} is a virtual dataset")
            elif isinstance(obj, h5py.Group):
                visit(obj, name)

    try:
        with h5py.File(path, "r") as f:
            visit(f)
    except OSError as exc:
        raise TaskFailed(f"container output {path.name} is not a readable HDF5 file ({exc})") from None
    if bad:
        raise TaskFailed(f"container output {path.name} refused: {bad[0]} (it would read host files)")
    return ad.read_h5ad(path)
