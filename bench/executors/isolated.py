"""Hard limits for every task: the local executor runs each task in a child process that can be
killed, under a wall-clock limit (``--timeout``) and a memory cap (``--memory-limit``, by default
:data:`~bench.executors.memory.DEFAULT_MEMORY_FRACTION` of the memory available when the task
starts: :func:`~bench.executors.memory.default_memory_gb`);
a Slurm job runs its task the same way (bench.executors.slurm.submit.run_task).

The local executor's child (:class:`TaskProcess`) is forked from a forkserver (bench, torch, scanpy
and the plugins imported once), started in the background when the run starts (:func:`start_server`)
while the datasets are prepared, and runs the tasks one after the other until one is killed (the
next task then gets a fresh child). For each task it takes the parent's environment and working
directory, reads the prepared data from the dataset cache (checked against its sha256; never
prepared again), and writes its record to the task's work dir, which the parent reads back. A Slurm
job, which runs one task, forks its child directly (nothing to import twice).
The parent waits and kills the child (and whatever it started) when the task runs past its limit or
its memory passes the cap; the task is then recorded as failed with the reason, never left
``running``:

* the wall clock: the whole task (data loading, fit, generate, score) may run ``timeout_s`` plus
  :data:`GRACE_S` (so that the generator's own cooperative deadline, which ends the fit with a
  clearer message, comes first); past it the child is killed: "killed: exceeded the 600 s task limit";
* memory: ``RLIMIT_AS`` in the child (an allocation past the cap fails with MemoryError, which
  the task records), and the parent kills the child when its resident memory (with its own children)
  passes the cap: "killed: out of memory (limit 8 GB, --memory-limit)". On a CUDA device RLIMIT_AS
  is not set (the CUDA driver reserves far more address space than it uses); the resident-memory
  check still holds;
* a child killed by a signal it did not get from the parent (the kernel's out-of-memory killer, a
  segfault) is recorded as "killed by SIGKILL ...", and the run goes on.

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
import threading
import time
from pathlib import Path
from typing import Any

from bench.executors.memory import default_memory_gb
from bench.tasks import TaskRecord, TaskSpec

GRACE_S = 5.0  # past timeout_s before the child is killed (the cooperative deadline comes first)
POLL_S = 0.2  # how often the parent checks the child's time and memory
STOP_WAIT_S = 10.0  # after SIGTERM, how long the child has to clean up before SIGKILL
RECORD = ".child-record.npz"  # where the child leaves its record in the task's work dir
PRELOAD = ["bench.executors.isolated", "bench.executors.preload"]
OOM_EXIT = 86  # the child's exit code when the cap is hit while loading the data


def _context(method: str = "forkserver"):
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # the forkserver imports these once (bench.executors.preload: torch, scanpy, the plugins);
        # each child is forked from it with them loaded
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_server() -> None:
    """Start the forkserver now, in the background: it imports torch, scanpy and the plugins (about
    10 s) while the caller goes on (the runner prepares the datasets meanwhile); the first task's
    child waits for it only if it is not ready yet. Does nothing when it is already running."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


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
            "define it at the top level of an importable module, or run with --in-process",
        ) from None


class TaskProcess:
    """The child process that runs tasks, one after the other, each under its limits: started on the
    first task, kept for the next ones (so what a task's libraries compile or cache once, such as
    UMAP's numba code, is not paid again by every task, as in the bench process), and replaced by a
    fresh one after a task whose child was killed or died. ``method``: how it starts, "forkserver"
    (the local executor: bench, torch and scanpy imported once by the server) or "fork" (a Slurm
    job, which runs one task). :meth:`close` ends it."""

    def __init__(self, method: str = "forkserver"):
        self.method = method
        self.proc = None
        self.conn = None

    def _start(self) -> None:
        method = self.method
        if method == "fork" and threading.active_count() > 1:  # forking a threaded process is unsafe
            method = "forkserver"
        ctx = _context(method)
        parent_end, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_child, args=(child_end,), name="scgenbench-task")
        self.proc.start()
        child_end.close()
        self.conn = parent_end

    def close(self) -> None:
        """End the child process (it finishes no task: it waits for the next one)."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(STOP_WAIT_S)
        if self.proc.exitcode is None:
            _kill_tree(self.proc.pid, signal.SIGKILL)
            self.proc.join()
        self.conn.close()
        self.proc = self.conn = None

    def _drop(self) -> None:
        """Forget a child that was killed or died (the next task starts a fresh one)."""
        if self.proc is not None:
            self.proc.join()
            self.conn.close()
        self.proc = self.conn = None

    def run(self, spec: TaskSpec, run_dir, run_id, *, data=None, work: Path) -> TaskRecord:
        """Run ``spec`` in the child under its limits and return its record (a failed one with the
        reason when the child was killed or died). A KeyboardInterrupt (bench.interrupt) stops the
        child first, then goes on up for the caller (bench.executors.base.run_one) to record."""
        work.mkdir(parents=True, exist_ok=True)
        record = work / RECORD
        record.unlink(missing_ok=True)
        folder = None
        if data is not None:
            cached = Path(str(data.info.get("cache_path", "")))
            if (cached / "sha256.json").is_file():
                folder = str(cached)
        if spec.memory_gb is not None:
            limit_gb, source = spec.memory_gb, "--memory-limit"
        else:
            limit_gb, source = default_memory_gb()
            limit_gb = float(f"{limit_gb:.3g}")
            source += "; --memory-limit to set it"
        cap = f"limit {limit_gb:g} GB, {source}"
        if self.proc is None or self.proc.exitcode is not None:
            self._drop()
            self._start()
        job = (spec.to_dict(), str(run_dir), run_id, str(work), folder, _registrations(), list(sys.path),
               int(limit_gb * 1024**3), cap, dict(os.environ), os.getcwd())  # fmt: skip
        started = time.time()
        t0 = time.monotonic()
        killed: str | None = None
        answered = False
        try:
            self.conn.send(job)
            while True:
                if self.conn.poll(POLL_S):
                    with contextlib.suppress(EOFError, OSError):
                        answered = self.conn.recv() == "done"
                    break
                if self.proc.exitcode is not None:
                    break
                if spec.timeout_s is not None and time.monotonic() - t0 > spec.timeout_s + GRACE_S:
                    killed = f"killed: exceeded the {spec.timeout_s:g} s task limit (--timeout; fit, generate and score together)"
                elif _resident(self.proc.pid) > limit_gb * 1024**3:
                    killed = f"killed: out of memory ({cap})"
                if killed:
                    _kill_tree(self.proc.pid, signal.SIGKILL)
                    break
        except Exception as exc:  # raised by a signal handler while waiting (submitit's SIGUSR2 in a job)
            self._stop()
            killed = f"{type(exc).__name__}: {exc}"
        except BaseException:  # KeyboardInterrupt (recorded by the caller), SystemExit (a requeue)
            self._stop()
            raise
        if killed is None and answered and record.is_file():
            rec = TaskRecord.load(record)
            record.unlink(missing_ok=True)
            return rec
        if self.proc is not None:
            self.proc.join(STOP_WAIT_S)  # it died or was killed: its exit code says how
            code = self.proc.exitcode
            if code is None:
                _kill_tree(self.proc.pid, signal.SIGKILL)
            self._drop()
        else:
            code = None
        if killed is None:
            killed = _died(code, cap)
        from bench.api.sandbox import remove_task_containers

        removed = remove_task_containers(run_dir, spec.key)
        if removed:
            killed += f"; removed its container(s) {', '.join(removed)}"
        return TaskRecord(key=spec.key, status="failed", started=started, finished=time.time(), error=killed)

    def _stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self._drop()


def _died(code: int | None, cap: str) -> str:
    """Why a child that was not killed by the parent ended without a record (``cap``: its memory
    limit and where it came from)."""
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        if -code == signal.SIGKILL:
            return f"killed by SIGKILL: most likely out of memory (the kernel's out-of-memory killer; {cap})"
        return f"killed by {name}: possibly out of memory ({cap})"
    if code == OOM_EXIT:
        return f"killed: out of memory ({cap}) while loading the data"
    if code is not None and code - 128 in (signal.SIGTERM, signal.SIGINT):  # stopped by a signal to it
        return f"killed: the task's process got {signal.Signals(code - 128).name} (not from bench)"
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


def _child(conn) -> None:
    """The child: its own process group (a terminal's Ctrl-C reaches the parent, which stops it),
    then one task after the other as the parent sends them, until it sends None. For each: the
    parent's environment and working directory (the forkserver started before either may have
    changed), the memory cap, the parent's run-time plugins, the data from the cache (kept for the
    next task), then the task; its record goes to the work dir and "done" to the parent. SIGTERM
    from the parent stops the task (containers removed); SIGUSR2 (a Slurm job's warning before its
    time limit) is the parent's to handle."""
    os.setpgrp()
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    _die_with_bench()
    loaded: dict[str, Any] = {}
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        _one_task(*job, loaded=loaded)
        conn.send("done")


def _one_task(
    spec_dict: dict[str, Any],
    run_dir: str,
    run_id,
    work_dir: str,
    folder: str | None,
    registrations: bytes,
    path: list[str],
    limit_bytes: int,
    cap: str,
    environ: dict[str, str],
    cwd: str,
    *,
    loaded: dict[str, Any],
) -> None:
    """One task in the child (:func:`_child`); ``loaded``: the prepared data read so far, by folder."""
    from bench.api.contract import resolve_device
    from bench.api.sandbox import task_scope
    from bench.interrupt import interruptible
    from bench.tasks import execute_task, load_prepared

    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    sys.path[:] = path
    from bench import registry

    for kind, plugins in pickle.loads(registrations).items():
        registry._EXTRA.setdefault(kind, {}).update(plugins)
    spec = TaskSpec.from_dict(spec_dict)
    if not _on_cuda(spec, resolve_device):
        import resource

        import psutil

        # the cap on top of the address space the process already takes (torch alone maps
        # gigabytes it never touches): what the task allocates beyond it
        limit = psutil.Process().memory_info().vms + limit_bytes
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    work = Path(work_dir)
    try:
        with interruptible():
            data = None
            if folder is not None:
                if folder not in loaded:
                    loaded[folder] = load_prepared(folder)
                data = loaded[folder]
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
        os._exit(OOM_EXIT)
    if rec.status == "failed" and "MemoryError" in (rec.error or ""):
        rec.error = f"out of memory ({cap}): {rec.error}"
    rec.save(work / RECORD)


def _die_with_bench() -> None:
    """A watcher thread: when the bench process that started this child dies (SIGKILL, a crash: it
    cannot stop the child then), the task is stopped as on SIGTERM (its containers removed), and
    killed with what it started if it is still there :data:`STOP_WAIT_S` later. No orphan goes on
    computing a task that the next run will run again."""
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


__all__ = ["GRACE_S", "TaskProcess", "start_server"]
