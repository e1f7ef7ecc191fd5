"""The ``process`` backend: run a container generator's entry point as a local subprocess, with a
clean environment, memory and CPU limits, and death with the harness."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.api import TaskFailed
from bench.api.logs import POLL_S, LogSink, interrupted_reason
from bench.api.sandbox import Limits, format_size, resolve_limits

# environment variables a local process keeps (everything else of the harness's environment is
# dropped: tokens, credentials, proxies, the harness's own settings)
PROCESS_ENV_KEEP = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
# what a process that ran out of memory under RLIMIT_DATA prints
_OOM_MARKERS = (
    "MemoryError",
    "std::bad_alloc",
    "Cannot allocate memory",
    "out of memory",
    "OOM when allocating",
)


def process_env(limits: Limits, device: str, home: Path) -> dict[str, str]:
    """The clean environment of a local process: the few variables it needs to find its interpreter
    and libraries, a private HOME/TMPDIR, and the GPUs it may use."""
    env = {k: os.environ[k] for k in PROCESS_ENV_KEEP if k in os.environ}
    env.update({"HOME": str(home), "TMPDIR": str(home), "PYTHONUNBUFFERED": "1", "PYTHONNOUSERSITE": "1"})
    if device == "cuda":
        ids = limits.gpu_ids or tuple(str(i) for i in range(limits.gpus or 1))
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _limit_process(mem_bytes: int, cpus: float) -> Callable[[], None]:
    """preexec_fn of a local process: memory (RLIMIT_DATA: heap and private mappings), CPUs
    (affinity to the first ``ceil(cpus)`` CPUs this process may use), no core dumps, and death with
    the harness (PR_SET_PDEATHSIG, Linux). Everything is looked up here, before the fork: the child
    only makes system calls."""
    import ctypes
    import ctypes.util
    import math
    import resource
    import signal

    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    keep = set(allowed[: max(1, math.ceil(cpus))])
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None
    pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if keep:
            os.sched_setaffinity(0, keep)
        if prctl is not None:
            prctl(pdeathsig, sigkill)

    return preexec


def run_process(
    script: Path,
    command: str,
    work: Path,
    *,
    device: str = "cpu",
    timeout_s: float | None = None,
    progress: bool = False,
    limits: Limits | None = None,
    python: str | None = None,
    what: str = "process",
) -> None:
    """The same protocol as :func:`run_docker`, with the entry point run by a local interpreter
    under the limits the OS offers (memory, CPU affinity, a clean environment; docs/docker.md lists
    what a process cannot be denied: the network, the host's files). The process (and its process
    group) is killed on timeout, error or signal."""
    import signal

    limits = limits or resolve_limits(None, device=device)
    home = Path(tempfile.mkdtemp(prefix="scgenbench-home-"))
    env = process_env(limits, device, home)
    sink = LogSink(work / "container.log", progress)
    argv = [python or sys.executable, str(script), command, str(work)]
    sink.feed(f"$ {' '.join(argv)}  # {limits.describe()}, clean environment\n")
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(work),
        start_new_session=True,
        preexec_fn=_limit_process(limits.mem_bytes, limits.cpus),
    )

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            sink.feed(raw.decode("utf-8", errors="replace"))

    def kill_group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:  # short waits: see POLL_S
            try:
                code = proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                    kill_group()
                    code = proc.wait()
                    break
    except BaseException as exc:
        if not isinstance(exc, Exception):
            sink.feed(f"\n[scgenbench] {interrupted_reason(exc)}: process stopped\n")
        raise
    finally:
        if proc.poll() is None:
            kill_group()
            proc.wait()
        kill_group()  # anything the entry point started in its group
        reader.join(timeout=10)
        tail = sink.close()
        shutil.rmtree(home, ignore_errors=True)
    if timed_out:
        raise TaskFailed(f"{what} '{command}' timed out after {timeout_s:.0f}s and was killed", log_tail=tail)
    limit = (
        f"its memory limit ({format_size(limits.mem_bytes)}, from {limits.source.get('mem', 'the default')})"
    )
    if code == -signal.SIGKILL:
        raise TaskFailed(
            f"{what} '{command}' was killed by SIGKILL: out of memory (the kernel's OOM killer "
            f"or a cgroup limit; {limit}) or killed from outside",
            log_tail=tail,
        )
    if code != 0 and any(m in tail for m in _OOM_MARKERS):
        raise TaskFailed(
            f"{what} '{command}' ran out of memory: allocation failed at {limit}, exit {code}", log_tail=tail
        )
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        raise TaskFailed(f"{what} '{command}' was killed by {name}", log_tail=tail)
    if code != 0:
        raise TaskFailed(f"{what} '{command}' exited with code {code}", log_tail=tail)
