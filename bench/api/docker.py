"""The harness's hardened docker runner: run an image's entry point in the sandbox
(:mod:`bench.api.sandbox`: limits, no network, a non-root user, clean-up), and the hash of a build
context that tags an image. The container generators' ``docker`` backend and the paper protocol's
Seurat container (bench/protocols/seurat.py) run through it."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

from bench.api.errors import TaskFailed, UserError
from bench.api.logs import POLL_S, LogSink, interrupted_reason
from bench.api.sandbox import (
    Limits,
    Sandbox,
    command_line,
    container_labels,
    container_user,
    docker_client,
    docker_options,
    format_size,
    give_back,
    lend_workdir,
    resolve_limits,
    symlinks_in,
)


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


def context_files(context: Path, files: tuple[str, ...] = ()) -> list[Path]:
    """The files sent to the build: ``files`` when given, else everything but caches."""
    if files:
        return [context / f for f in files]
    return sorted(
        p for p in context.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def context_hash(
    context: Path, files: tuple[str, ...] = (), base_id: str = "", build_args: dict[str, str] | None = None
) -> str:
    """Hash of everything that goes into an image: the build files (names and contents), the id of
    the base image (build argument BASE_IMAGE) and any other build arguments (e.g. VARIANT)."""
    h = hashlib.sha256()
    for p in context_files(context, files):
        h.update(str(p.relative_to(context)).encode() + b"\0" + p.read_bytes() + b"\0")
    h.update(b"BASE_IMAGE\0" + base_id.encode())
    for k, v in sorted((build_args or {}).items()):
        h.update(b"\0" + k.encode() + b"\0" + v.encode())
    return h.hexdigest()[:12]
