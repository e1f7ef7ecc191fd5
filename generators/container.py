"""Run a generator that lives in a Docker image (or, backend ``process``, the same entry point as a
local subprocess).

The protocol (DESIGN.md): the harness writes ``train.h5ad`` and ``spec.json`` into a work dir,
bind-mounts it at ``/work`` and runs the image's entry point with ``fit /work`` or
``generate /work``; the entry point writes ``fit.json`` + ``model/`` (and convergence snapshots in
``snapshots/``) or ``generated.h5ad`` back. Logs go to ``WORKDIR/container.log`` and, with progress, to the console.
Any framework model reuses this by subclassing :class:`ContainerGenerator` and setting
``image_name``, ``build_context`` and ``entry_point``.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import pandas as pd

from bench.errors import TaskFailed, UserError
from bench.generators.base import FitContext, FitResult, Generator, split_request
from bench.generators.sandbox import (
    Limits,
    Sandbox,
    command_line,
    container_labels,
    container_user,
    docker_options,
    format_size,
    give_back,
    lend_workdir,
    parse_size,
    resolve_limits,
    symlinks_in,
)

IMAGE_PREFIX = "scgenbench"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
LOG_TAIL_LINES = 50
BACKENDS = ("auto", "docker", "process")
# parameters that steer the runner; everything else goes to the entry point in spec.json
RUNNER_PARAMS = ("backend", "mem_limit", "cpu_limit")


# image variants: "cpu" (the default) and "gpu" (the model's framework built with CUDA), built from
# one Dockerfile (build arg VARIANT); the tag names the variant, so a GPU run never reuses a CPU image
VARIANTS = ("cpu", "gpu")
# what an entry point writes (with exit 2) for a mistake the user can fix: {"message", "fix"}
USER_ERROR_FILE = "user_error.json"


def default_base_image(variant: str = "cpu") -> str:
    """$BENCH_GPU_BASE_IMAGE for the gpu variant when set, else $BENCH_BASE_IMAGE, else python:3.11-slim."""
    gpu = os.environ.get("BENCH_GPU_BASE_IMAGE") if variant == "gpu" else None
    return gpu or os.environ.get("BENCH_BASE_IMAGE") or DEFAULT_BASE_IMAGE


# -- docker helpers -----------------------------------------------------------------------------
def docker_client(timeout: int = 10):
    """A docker client whose engine answers, or None."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception:
        return None


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


def base_image_id(client, base: str) -> str:
    """The id (sha256:...) of base image ``base``, pulled first when it is not here."""
    import docker

    try:
        return client.images.get(base).id
    except docker.errors.ImageNotFound:
        pass
    try:
        return client.images.pull(base).id
    except Exception as exc:
        raise UserError(
            f"base image {base} is not available locally and cannot be pulled ({str(exc).splitlines()[0]})",
            "`docker pull` it, or set BENCH_BASE_IMAGE to a local image "
            "(scripts/ci/docker-setup.sh makes scgenbench/base:bookworm without a registry)",
        ) from None


def _context_tar(context: Path, files: tuple[str, ...]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in context_files(context, files):
            tar.add(str(p), arcname=str(p.relative_to(context)))
    buf.seek(0)
    return buf


def _image_class(name: str) -> type[ContainerGenerator]:
    from bench.registry import get_generator

    cls = _IMAGES.get(name) or get_generator(name)
    if not (isinstance(cls, type) and issubclass(cls, ContainerGenerator)):
        raise UserError(f"generator '{name}' does not run in a container", "see `bench list generators`")
    return cls


def build_image(name: str, base_image: str | None = None, progress: bool = True, variant: str = "cpu") -> str:
    """Build the ``variant`` image of container generator ``name`` (e.g. 'scgan') and return its tag
    ``scgenbench/<image>:<variant>-<hash of the build files, build args and the base image's id>``.
    ``base_image`` (build arg BASE_IMAGE, passed as its id so the build uses exactly the hashed
    image) defaults to :func:`default_base_image`."""
    cls = _image_class(name)
    if variant not in cls.image_variants:
        raise UserError(
            f"generator '{name}' has no {variant!r} image", f"use one of {', '.join(cls.image_variants)}"
        )
    client = docker_client()
    if client is None:
        raise UserError("no Docker engine answers", "start Docker (e.g. `sudo systemctl start docker`)")
    base = base_image or default_base_image(variant)
    base_id = base_image_id(client, base)
    tag = cls.image_tag(base_id, variant)
    if progress:
        print(f"building {tag} (BASE_IMAGE={base}, {base_id[:19]}) from {cls.build_context}", flush=True)
    lines: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    stream = client.api.build(
        fileobj=_context_tar(Path(cls.build_context), cls.build_files),
        custom_context=True,
        tag=tag,
        buildargs={"BASE_IMAGE": base_id, **cls.build_args(variant)},
        labels={
            "org.scgenbench.base_image": base,
            "org.scgenbench.base_image_id": base_id,
            "org.scgenbench.context": tag.rsplit(":", 1)[1],
            "org.scgenbench.variant": variant,
        },
        rm=True,
        forcerm=True,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk:
            tail = "\n".join(lines)
            raise TaskFailed(f"building image {tag} failed: {chunk['error'].strip()}", log_tail=tail)
        text = chunk.get("stream") or chunk.get("status") or ""
        for line in text.splitlines():
            lines.append(line)
            if progress and line.strip():
                print(line, flush=True)
    return tag


def ensure_image(cls: type[ContainerGenerator], client, progress: bool = True, variant: str = "cpu") -> str:
    """The tag of ``cls``'s ``variant`` image on the current base image (:func:`default_base_image`),
    built first (with progress) when it is not there."""
    import docker

    base = default_base_image(variant)
    tag = cls.image_tag(base_image_id(client, base), variant)
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_image(cls.image_name, base_image=base, progress=progress, variant=variant)
    return tag


def _user_error(work: Path) -> tuple[str, str] | None:
    """(message, fix) from the entry point's user_error.json, if it wrote one."""
    try:
        data = json.loads((work / USER_ERROR_FILE).read_text())
        return str(data["message"]), str(data.get("fix") or "see the log")
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- runners --------------------------------------------------------------------------------------
class _LogSink:
    """Collects log lines: to WORKDIR/container.log, the console (progress) and a tail buffer."""

    def __init__(self, path: Path, progress: bool):
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.progress = progress
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._partial = ""

    def feed(self, text: str) -> None:
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        self.fh.write(line + "\n")
        self.fh.flush()
        self.tail.append(line)
        if self.progress:
            print(line, flush=True)

    def close(self) -> str:
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self.fh.close()
        return "\n".join(self.tail)


def _interrupted_reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or "interrupted"


# how often a wait for a container or process returns to Python. A signal handler runs only in the
# main thread and only between bytecodes; a signal the kernel hands to another thread (Slurm sends
# SIGCONT, then SIGTERM: with SIGCONT pending on the main thread, SIGTERM goes to another thread)
# does not interrupt a blocking wait, so waits are short and repeated.
POLL_S = 0.5


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
    opts = docker_options(sandbox, limits, work, inputs=inputs, user=(uid, gid),
                          labels=container_labels(), working_dir=working_dir)  # fmt: skip
    sink = _LogSink(work / "container.log", progress)
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
            sink.feed(f"\n[scgenbench] {_interrupted_reason(exc)}: container stopped and removed\n")
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
        raise TaskFailed(f"{what} '{command}' left symbolic links in its work dir (refused): {links[:5]}",
                         log_tail=tail)  # fmt: skip
    if code != 0:
        raise TaskFailed(f"{what} '{command}' exited with code {code}", log_tail=tail)


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
    sink = _LogSink(work / "container.log", progress)
    argv = [python or sys.executable, str(script), command, str(work)]
    sink.feed(f"$ {' '.join(argv)}  # {limits.describe()}, clean environment\n")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(work),
                            start_new_session=True, preexec_fn=_limit_process(limits.mem_bytes, limits.cpus))  # fmt: skip

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
            sink.feed(f"\n[scgenbench] {_interrupted_reason(exc)}: process stopped\n")
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
        raise TaskFailed(f"{what} '{command}' was killed by SIGKILL: out of memory (the kernel's OOM killer "
                         f"or a cgroup limit; {limit}) or killed from outside", log_tail=tail)  # fmt: skip
    if code != 0 and any(m in tail for m in _OOM_MARKERS):
        raise TaskFailed(f"{what} '{command}' ran out of memory: allocation failed at {limit}, exit {code}",
                         log_tail=tail)  # fmt: skip
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        raise TaskFailed(f"{what} '{command}' was killed by {name}", log_tail=tail)
    if code != 0:
        raise TaskFailed(f"{what} '{command}' exited with code {code}", log_tail=tail)


def select_backend(requested: str, process_requires: tuple[str, ...] = ()) -> str:
    """'docker' | 'process' for a requested backend ('auto' picks docker when an engine answers,
    else process when the framework imports here, else a UserError naming both fixes)."""
    if requested not in BACKENDS:
        raise UserError(f"unknown backend {requested!r}", f"use one of {', '.join(BACKENDS)}")
    has_framework = all(importlib.util.find_spec(m) is not None for m in process_requires)
    if requested == "docker" or (requested == "auto" and docker_client() is not None):
        if requested == "docker" and docker_client() is None:
            raise UserError("backend 'docker' was requested but no Docker engine answers", "start Docker")
        return "docker"
    if requested == "process" and not has_framework:
        raise UserError(
            f"backend 'process' needs {', '.join(process_requires)} in this Python environment",
            "pip install tensorflow-cpu (or start Docker and use backend 'docker')",
        )
    if has_framework:
        return "process"
    raise UserError(
        "no Docker engine answers and TensorFlow is not installed here, so the container model cannot run",
        "start Docker (the image is built on first use), or `pip install tensorflow-cpu` to run it as a local process",
    )


# -- the generator base class ---------------------------------------------------------------------
_IMAGES: dict[str, type[ContainerGenerator]] = {}


class ContainerGenerator(Generator):
    """A generator whose fit/generate run in a Docker image (or a local process) through the
    work-dir protocol. Subclasses set ``image_name``, ``build_context`` (the folder holding the
    Dockerfile), ``build_files`` (files sent to the build; empty = all), ``entry_point`` (the script
    in ``build_context`` for backend 'process') and ``process_requires`` (modules it needs).

    The container runs in the sandbox of docs/docker.md (security model); ``sandbox`` declares the
    relaxations a model truly needs (e.g. ``{"network": "bridge"}``), shown by `bench list`.
    ``command_inputs`` names the work-dir paths each command reads: they are mounted read-only.
    Parameters ``mem_limit`` ('16g') and ``cpu_limit`` (4) override the limits that otherwise come
    from ``resources`` (or the Slurm allocation) for one run."""

    image_name: ClassVar[str] = ""
    # the image variants its Dockerfile builds (build arg VARIANT when more than one): a run on
    # device 'cuda' uses "gpu" where there is one
    image_variants: ClassVar[tuple[str, ...]] = ("cpu",)
    build_context: ClassVar[Path | None] = None
    build_files: ClassVar[tuple[str, ...]] = ()
    entry_point: ClassVar[str] = "entry.py"
    process_requires: ClassVar[tuple[str, ...]] = ()
    parameters: ClassVar[dict[str, Any]] = {"backend": "auto", "mem_limit": None, "cpu_limit": None}
    choices: ClassVar[dict[str, tuple[Any, ...]]] = {"backend": BACKENDS}
    bounds: ClassVar[dict[str, str]] = {"cpu_limit": "(0, inf)"}
    sandbox: ClassVar[dict[str, Any]] = {}
    command_inputs: ClassVar[dict[str, tuple[str, ...]]] = {
        "fit": ("train.h5ad", "spec.json"),
        "generate": ("spec.json", "model"),
    }

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        Sandbox.declared(cls.sandbox, owner=f"generator {cls.name or cls.__name__}")  # fail at import
        if cls.image_name and cls.build_context is not None:
            _IMAGES.setdefault(cls.image_name, cls)

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["mem_limit"] is not None:
            parse_size(self.params["mem_limit"])  # a size docker cannot read: UserError before the run
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._work_dir: Path | None = None  # the fit's work dir (FitContext), else a temp dir
        self._timeout_s: float | None = None  # per container call, from the fit's deadline
        self._backend: str | None = None
        self._device = "cpu"
        self._fitted = False
        self._model_src: Path | None = None  # a saved model dir (load), copied into the work dir on use
        self._image: str | None = None  # the image tag the docker backend ran

    # -- hooks -------------------------------------------------------------------------------
    @classmethod
    def build_args(cls, variant: str = "cpu") -> dict[str, str]:
        """Build arguments besides BASE_IMAGE: VARIANT for an image with several variants."""
        return {"VARIANT": variant} if len(cls.image_variants) > 1 else {}

    @classmethod
    def image_tag(cls, base_id: str, variant: str = "cpu") -> str:
        """``scgenbench/<image_name>:<variant>-<hash of the build files, build args and the base
        image's id>``."""
        h = context_hash(Path(cls.build_context), cls.build_files, base_id, cls.build_args(variant))
        return f"{IMAGE_PREFIX}/{cls.image_name}:{variant}-{h}"

    @classmethod
    def image_variant(cls, device: str) -> str:
        """The image variant a run on ``device`` uses: "gpu" on CUDA where the model has one."""
        return "gpu" if str(device).startswith("cuda") and "gpu" in cls.image_variants else "cpu"

    @classmethod
    def sandbox_policy(cls) -> Sandbox:
        return Sandbox.declared(cls.sandbox, owner=f"generator {cls.name}")

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {**super().metadata(), "sandbox": ", ".join(cls.sandbox_policy().relaxations()) or "default"}

    def limits(self) -> Limits:
        """Memory, CPU and GPU limits of this generator's containers (or processes)."""
        return resolve_limits(type(self).resources, self.params, device=self._device)

    def spec_extra(self) -> dict[str, Any]:
        """Model-specific fields of spec.json."""
        return {"conditional": self.conditional}

    # -- plumbing -----------------------------------------------------------------------------
    def _work(self) -> Path:
        if self._work_dir is None:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix=f"scgenbench-{self.name}-")
            self._work_dir = Path(self._tmp.name)
        self._work_dir.mkdir(parents=True, exist_ok=True)
        return self._work_dir

    def _write_spec(self, work: Path, **fields: Any) -> None:
        spec = {
            **self.spec_extra(),
            "params": {k: v for k, v in self.params.items() if k not in RUNNER_PARAMS},
            "label_key": self.label_key,
            "device": self._device,
            **fields,
        }
        tmp = work / "spec.json.tmp"
        tmp.write_text(json.dumps(spec, indent=1))
        tmp.replace(work / "spec.json")

    def _run(self, command: str, work: Path, progress: bool) -> None:
        if self._backend is None:
            self._backend = select_backend(self.params.get("backend", "auto"), self.process_requires)
        what = f"{self.name} {self._backend}"
        (work / USER_ERROR_FILE).unlink(missing_ok=True)
        try:
            if self._backend == "docker":
                client = docker_client()
                if client is None:
                    raise UserError("no Docker engine answers", "start Docker, or use backend 'process'")
                self._image = ensure_image(type(self), client, progress=True,
                                           variant=self.image_variant(self._device))  # fmt: skip
                run_docker(
                    self._image, command, work, device=self._device, timeout_s=self._timeout_s,
                    progress=progress, limits=self.limits(), sandbox=self.sandbox_policy(),
                    inputs=self.command_inputs.get(command, ()), client=client, what=what,
                )  # fmt: skip
            else:
                script = Path(self.build_context) / self.entry_point
                run_process(
                    script, command, work, device=self._device, timeout_s=self._timeout_s, progress=progress,
                    limits=self.limits(), what=what,
                )  # fmt: skip
        except TaskFailed:
            mistake = _user_error(work)
            if mistake is not None:  # the entry point said why (exit 2): the user's one-line error
                raise UserError(f"{self.name}: {mistake[0]}", mistake[1]) from None
            raise

    def _need_fitted(self) -> Path:
        work = self._work()
        if self._model_src is not None and not (work / "model").is_dir():
            shutil.copytree(self._model_src, work / "model")
        if not self._fitted or not (work / "model").is_dir():
            raise TaskFailed(f"{self.name}: generate called before fit (or load)")
        return work

    # -- verbs --------------------------------------------------------------------------------------
    def fit(self, train: ad.AnnData, ctx: FitContext) -> FitResult:
        """Run the entry point's ``fit``; read back ``fit.json`` and the convergence snapshots it
        wrote (``snapshots/index.json`` + one h5ad per snapshot, at ``ctx.snapshot_steps``)."""
        self._device = ctx.device
        self._work_dir = Path(ctx.work_dir) if ctx.work_dir is not None else None
        left = ctx.time_left()
        self._timeout_s = None if left is None else max(left, 1.0)
        work = self._work()
        slim = ad.AnnData(X=train.X, obs=pd.DataFrame(index=train.obs_names.astype(str)))
        slim.var_names = self.var_names
        if ctx.label_key in train.obs:
            slim.obs[ctx.label_key] = train.obs[ctx.label_key].astype(str).to_numpy()
        slim.write_h5ad(work / "train.h5ad")
        for stale in ("fit.json", "generated.h5ad"):
            (work / stale).unlink(missing_ok=True)
        for stale in ("model", "snapshots"):
            if (work / stale).exists():
                shutil.rmtree(work / stale)
        snapshots = {"fractions": list(ctx.snapshot_fractions), "n_cells": int(ctx.snapshot_cells)}
        self._write_spec(work, seed=int(ctx.seed), progress=bool(ctx.progress),
                         snapshots=snapshots if ctx.on_snapshot is not None else None)  # fmt: skip
        self._run("fit", work, ctx.progress)
        fit_path = work / "fit.json"
        if not fit_path.exists():
            raise TaskFailed(f"{self.name}: fit finished without writing fit.json")
        record = json.loads(fit_path.read_text())
        self._fitted = True
        self._hand_snapshots(work / "snapshots", ctx)
        keys = ("train_seconds", "steps", "cells_seen", "history")
        extra = {k: v for k, v in record.items() if k not in keys}
        extra["backend"] = self._backend
        if self._image is not None:
            extra["image"] = self._image
        return FitResult(
            train_seconds=float(record["train_seconds"]),
            steps=record.get("steps"),
            cells_seen=record.get("cells_seen"),
            history=record.get("history", {}),
            extra=extra,
        )

    @staticmethod
    def _hand_snapshots(folder: Path, ctx: FitContext) -> None:
        index = folder / "index.json"
        if ctx.on_snapshot is None or not index.exists():
            return
        for item in json.loads(index.read_text()):
            cells = ad.read_h5ad(folder / item["file"])
            ctx.snapshot(step=int(item["step"]), cells_seen=item.get("cells_seen"),
                         train_seconds=item.get("train_seconds"), cells=cells)  # fmt: skip

    def generate(self, n_cells: int | dict[str, int], *, seed: int) -> ad.AnnData:
        """Run the entry point's ``generate``; the generation time it measured inside the
        container is passed on in ``uns['scgenbench']['generate_seconds']``."""
        work = self._need_fitted()
        total, per_label = split_request(n_cells)
        (work / "generated.h5ad").unlink(missing_ok=True)
        self._write_spec(work, seed=int(seed), generate_seed=int(seed), n_cells=per_label or total)
        self._run("generate", work, progress=False)
        path = work / "generated.h5ad"
        if not path.exists():
            raise TaskFailed(f"{self.name}: generate finished without writing generated.h5ad")
        return ad.read_h5ad(path)

    def save(self, path: str | Path) -> None:
        work = self._need_fitted()
        path = Path(path)
        self._write_meta(path)
        if (path / "model").exists():
            shutil.rmtree(path / "model")
        shutil.copytree(work / "model", path / "model")

    @classmethod
    def load(cls, path: str | Path) -> ContainerGenerator:
        gen = cls._read_meta(Path(path))
        assert isinstance(gen, ContainerGenerator)
        gen._model_src = Path(path) / "model"
        gen._fitted = True
        return gen
