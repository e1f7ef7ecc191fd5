"""Which run, task and process a container belongs to (its labels, :func:`task_scope`), and the
clean-up that uses them: an interrupted task's containers, and those a crashed earlier run left
(their owning process gone)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL = "org.scgenbench"  # every container the harness starts: LABEL=1
LABEL_RUN_DIR = "org.scgenbench.run_dir"
LABEL_RUN_ID = "org.scgenbench.run_id"
LABEL_TASK = "org.scgenbench.task"
LABEL_OWNER = "org.scgenbench.owner"  # host:pid:start-time of the process that started it


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
