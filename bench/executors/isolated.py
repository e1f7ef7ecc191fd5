"""Hard limits for a task: with a wall-clock limit (``--timeout``) or a memory cap
(``--memory-limit``), the local executor runs each task in a child process that can be killed.

The child is started from a forkserver (bench and its imports loaded once, so a task does not pay for
importing them again), reads its prepared data from the dataset cache (checked against its sha256;
never prepared again), and writes its record to the task's work dir, which the parent reads back.
The parent waits and kills the child (and whatever it started) when the task runs past its limit or
its memory passes the cap; the task is then recorded as failed with the reason, never left
``running``:

* the wall clock: the whole task (data loading, fit, generate, score) may run ``timeout_s`` plus
  :data:`GRACE_S` (so that the generator's own cooperative deadline, which ends the fit with a
  clearer message, comes first); past it the child is killed: "killed: exceeded the 600 s task limit";
* memory: ``RLIMIT_AS`` in the child (an allocation past the cap fails with MemoryError, which
  the task records), and the parent kills the child when its resident memory (with its own children)
  passes the cap: "killed: out of memory (limit 8 GB)". On a CUDA device RLIMIT_AS is not set (the
  CUDA driver reserves far more address space than it uses); the resident-memory check still holds;
* a child killed by a signal it did not get from the parent (the kernel's out-of-memory killer, a
  segfault) is recorded as "killed by SIGKILL ...".

Ctrl-C and SIGTERM reach the parent (bench.interrupt), which sends SIGTERM to the child (its
container runners remove their containers on the way out) and, if it is still there after
:data:`STOP_WAIT_S`, SIGKILL; the parent then records the task as interrupted, as before. A parent
killed with SIGKILL takes the child with it (the child watches it: :func:`_die_with_bench`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.tasks import TaskRecord, TaskSpec

GRACE_S = 5.0  # past timeout_s before the child is killed (the cooperative deadline comes first)
POLL_S = 0.2  # how often the parent checks the child's time and memory
STOP_WAIT_S = 10.0  # after SIGTERM, how long the child has to clean up before SIGKILL
RECORD = ".child-record.npz"  # where the child leaves its record in the task's work dir


def needs_child(spec: TaskSpec) -> bool:
    """Whether ``spec`` runs in a killable child process: it has a time limit or a memory cap."""
    return spec.timeout_s is not None or spec.memory_gb is not None


def _context():
    ctx = multiprocessing.get_context("forkserver")
    # the forkserver imports these once (bench.executors.preload: torch, scanpy, the plugins); each
    # child is forked from it with them loaded
    ctx.set_forkserver_preload(["bench.executors.isolated", "bench.executors.preload"])
    return ctx


def _registrations() -> bytes:
    """The plugins registered at run time (bench.registry.register: tests, notebooks), for the child;
    a class the child cannot import by name cannot be sent (UserError)."""
    from bench import registry
    from bench.api.errors import UserError

    try:
        return pickle.dumps(registry._EXTRA)
    except Exception as exc:
        raise UserError(
            f"a plugin registered at run time cannot be handed to a task's child process ({exc})",
            "define it at the top level of an importable module, or run without --timeout/--memory-limit",
        ) from None


def run_isolated(spec: TaskSpec, run_dir, run_id, *, data=None, work: Path) -> TaskRecord:
    """Run ``spec`` in a child process under its limits and return its record (a failed one with the
    reason when the child was killed or died). A KeyboardInterrupt (bench.interrupt) stops the child
    first, then goes on up for the caller (bench.executors.base.run_one) to record."""
    work.mkdir(parents=True, exist_ok=True)
    record = work / RECORD
    record.unlink(missing_ok=True)
    folder = None
    if data is not None:
        cached = Path(str(data.info.get("cache_path", "")))
        if (cached / "sha256.json").is_file():
            folder = str(cached)
    limit_bytes = None if spec.memory_gb is None else int(spec.memory_gb * 1024**3)
    ctx = _context()
    proc = ctx.Process(
        target=_child,
        args=(
            spec.to_dict(),
            str(run_dir),
            run_id,
            str(work),
            folder,
            _registrations(),
            list(sys.path),
            limit_bytes,
        ),
        name=f"scgenbench-task-{spec.key}",
    )
    started = time.time()
    t0 = time.monotonic()
    proc.start()
    killed: str | None = None
    try:
        while True:
            proc.join(POLL_S)
            if proc.exitcode is not None:
                break
            if spec.timeout_s is not None and time.monotonic() - t0 > spec.timeout_s + GRACE_S:
                killed = f"killed: exceeded the {spec.timeout_s:g} s task limit (--timeout; fit, generate and score together)"
            elif limit_bytes is not None and _resident(proc.pid) > limit_bytes:
                killed = f"killed: out of memory (limit {spec.memory_gb:g} GB, --memory-limit)"
            if killed:
                _kill_tree(proc.pid, signal.SIGKILL)
                proc.join()
                break
    except KeyboardInterrupt:
        _stop(proc)
        raise
    if killed is None and proc.exitcode == 0 and record.is_file():
        rec = TaskRecord.load(record)
        record.unlink(missing_ok=True)
        return rec
    if killed is None:
        killed = _died(proc.exitcode, spec)
    from bench.api.sandbox import remove_task_containers

    removed = remove_task_containers(run_dir, spec.key)
    if removed:
        killed += f"; removed its container(s) {', '.join(removed)}"
    return TaskRecord(key=spec.key, status="failed", started=started, finished=time.time(), error=killed)


def _died(code: int | None, spec: TaskSpec) -> str:
    """Why a child that was not killed by the parent ended without a record."""
    cap = f" (limit {spec.memory_gb:g} GB, --memory-limit)" if spec.memory_gb is not None else ""
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        if -code == signal.SIGKILL:
            return f"killed by SIGKILL: most likely out of memory (the kernel's out-of-memory killer){cap}"
        return f"killed by {name}" + (f": possibly out of memory{cap}" if cap else "")
    if code == 3 and cap:
        return f"killed: out of memory{cap} while loading the data"
    return f"killed: the task's process exited with code {code} without a result"


def _resident(pid: int) -> int:
    """Resident memory of process ``pid`` and its children, in bytes (0 when it is gone)."""
    import psutil

    total = 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _kill_tree(pid: int, sig: int) -> None:
    """Send ``sig`` to process ``pid`` and every process it started (a generator's local process
    runs in a session of its own, so its process group would miss it)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)


def _stop(proc) -> None:
    """SIGTERM to the child (it removes its containers on the way out), SIGKILL if it lingers."""
    if proc.exitcode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while proc.exitcode is None and time.monotonic() < deadline:
            with contextlib.suppress(KeyboardInterrupt):
                proc.join(POLL_S)
        if proc.exitcode is None:
            _kill_tree(proc.pid, signal.SIGKILL)
            proc.join()


def _child(
    spec_dict: dict[str, Any],
    run_dir: str,
    run_id,
    work_dir: str,
    folder: str | None,
    registrations: bytes,
    path: list[str],
    limit_bytes: int | None,
) -> None:
    """The child: its own process group (a terminal's Ctrl-C reaches the parent, which stops it),
    the memory cap, the parent's run-time plugins, the data from the cache, then the task; its
    record goes to the work dir. SIGTERM from the parent stops the task (containers removed)."""
    from bench.api.contract import resolve_device
    from bench.api.sandbox import task_scope
    from bench.interrupt import interruptible
    from bench.tasks import execute_task, load_prepared

    os.setpgrp()
    _die_with_bench()
    sys.path[:] = path
    from bench import registry

    for kind, plugins in pickle.loads(registrations).items():
        registry._EXTRA.setdefault(kind, {}).update(plugins)
    spec = TaskSpec.from_dict(spec_dict)
    if limit_bytes is not None and not _on_cuda(spec, resolve_device):
        import resource

        import psutil

        # the cap on top of the address space the loaded libraries already take (torch alone maps
        # gigabytes it never touches): what the task allocates beyond them
        cap = psutil.Process().memory_info().vms + limit_bytes
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    work = Path(work_dir)
    try:
        with interruptible():
            data = None
            if folder is not None:
                data = load_prepared(folder)
            with task_scope(run_dir, run_id, spec.key):
                rec = execute_task(
                    spec,
                    work,
                    progress=False,
                    data=data,
                    shared_dir=Path(run_dir) / "shared",
                    kept_dir=Path(run_dir) / "generated",
                )
    except KeyboardInterrupt as exc:  # the parent records the interruption
        os._exit(128 + getattr(exc, "signum", signal.SIGINT))
    except MemoryError:  # the cap hit while loading the data, before the task could catch it
        os._exit(3)
    if limit_bytes is not None and rec.status == "failed" and "MemoryError" in (rec.error or ""):
        rec.error = f"out of memory (limit {limit_bytes / 1024**3:g} GB, --memory-limit): {rec.error}"
    rec.save(work / RECORD)


def _die_with_bench() -> None:
    """A watcher thread: when the bench process that started this child dies (SIGKILL, a crash: it
    cannot stop the child then), the task is stopped as on SIGTERM (its containers removed), and
    killed with what it started if it is still there :data:`STOP_WAIT_S` later. No orphan goes on
    computing a task that the next run will run again."""
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        from multiprocessing.connection import wait

        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_WAIT_S)
        _kill_tree(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="scgenbench-parent-watch", daemon=True).start()


def _on_cuda(spec: TaskSpec, resolve_device) -> bool:
    try:
        return resolve_device(spec.device) == "cuda"
    except Exception:
        return False


__all__ = ["GRACE_S", "needs_child", "run_isolated"]
