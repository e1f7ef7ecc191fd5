"""The ``docker`` backend: run a container generator's entry point in its image, in the sandbox."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from bench.api import TaskFailed, UserError
from bench.api.sandbox import (
    Limits,
    Sandbox,
    command_line,
    container_labels,
    container_user,
    docker_options,
    format_size,
    give_back,
    lend_workdir,
    resolve_limits,
    symlinks_in,
)
from bench.generators.container.images import docker_client
from bench.generators.container.logs import POLL_S, LogSink, interrupted_reason


def _wait_exited(container, timeout_s: float | None) -> bool:
    """Poll until ``container`` has exited (True) or ``timeout_s`` has passed (False)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.monotonic())))


def run_docker(
    image: str,
    command: str,
    work: Path,
    *,
    device: str = "cpu",
    timeout_s: float | None = None,
    progress: bool = False,
    limits: Limits | None = None,
    sandbox: Sandbox | None = None,
    inputs: tuple[str, ...] = (),
    client=None,
    what: str = "container",
    argv: list[str] | None = None,
    working_dir: str = "/work",
) -> None:
    """Run ``image`` with ``command /work`` (or ``argv``) in the sandbox (docs/docker.md, security
    model): ``work`` mounted at /work and writable, ``inputs`` (paths relative to ``work``) mounted
    read-only over it, nothing else of the host; no network, a non-root user, no capabilities,
    no-new-privileges, a read-only root filesystem with a tmpfs /tmp, pids, memory and CPU limits
    (``limits``; default: the base generator's resources), GPUs only as allocated. Raises
    TaskFailed (with the last 50 log lines) on a non-zero exit, an OOM kill, the timeout or a
    symbolic link left in the work dir; the container is always removed, also when a signal
    interrupts the run."""
    client = client or docker_client()
    if client is None:
        raise UserError("no Docker engine answers", "start Docker, or use backend 'process'")
    sandbox = sandbox or Sandbox()
    limits = limits or resolve_limits(None, device=device)
    work = Path(work).resolve()
    uid, gid = container_user(sandbox)
    argv = argv or [command, "/work"]
    opts = docker_options(
        sandbox,
        limits,
        work,
        inputs=inputs,
        user=(uid, gid),
        labels=container_labels(),
        working_dir=working_dir,
    )
    sink = LogSink(work / "container.log", progress)
    sink.feed(f"$ {command_line(image, argv, opts)}\n")
    lent = lend_workdir(work, uid, gid)
    container = None
    timed_out = False
    status: dict[str, Any] = {}
    oom = False
    try:
        container = client.containers.run(image, command=argv, detach=True, **opts)

        def pump() -> None:
            try:
                for chunk in container.logs(stream=True, follow=True):
                    sink.feed(chunk.decode("utf-8", errors="replace"))
            except Exception:  # the container went away (kill on timeout)
                pass

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        if _wait_exited(container, timeout_s):
            status = container.wait()  # exited: answers at once
        else:
            timed_out = True
            container.kill()
            status = {"StatusCode": 137}
        reader.join(timeout=10)
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
    except BaseException as exc:
        if not isinstance(exc, Exception):  # SIGTERM / SIGINT (bench.interrupt): say so in the log
            sink.feed(f"\n[scgenbench] {interrupted_reason(exc)}: container stopped and removed\n")
        raise
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        if lent:
            give_back(work, uid)
        tail = sink.close()
    code = int(status.get("StatusCode", -1))
    if timed_out:
        raise TaskFailed(f"{what} '{command}' timed out after {timeout_s:.0f}s and was killed", log_tail=tail)
    if oom or code == 137:
        raise TaskFailed(
            f"{what} '{command}' ran out of memory: killed at its memory limit "
            f"({format_size(limits.mem_bytes)}, from {limits.source.get('mem', 'the default')}), exit {code}",
            log_tail=tail,
        )
    links = symlinks_in(work)
    if links:
        raise TaskFailed(
            f"{what} '{command}' left symbolic links in its work dir (refused): {links[:5]}", log_tail=tail
        )
    if code != 0:
        raise TaskFailed(f"{what} '{command}' exited with code {code}", log_tail=tail)
