"""The choice of a container model's backend: ``docker`` (the hardened runner) or ``process`` (its
entry point as a local subprocess, outside the sandbox, only when asked for)."""

from __future__ import annotations

import importlib.util
import os
import sys

from bench.api import UserError
from bench.generators.container import images

BACKENDS = ("auto", "docker", "process")


# the run-level opt-in (``bench run --allow-unsandboxed`` sets it; Slurm jobs and task processes
# inherit it) that lets backend 'auto' run a container model's entry point as a local process when
# no Docker engine answers
ALLOW_UNSANDBOXED = "SCGENBENCH_ALLOW_UNSANDBOXED"


def unsandboxed_allowed() -> bool:
    return os.environ.get(ALLOW_UNSANDBOXED, "") == "1"


def select_backend(
    requested: str, process_requires: tuple[str, ...] = (), name: str = "the container model"
) -> str:
    """'docker' | 'process' for a requested backend. 'auto' picks docker when an engine answers;
    without one it runs the entry point as a local process, outside the container's sandbox, only
    with the run's explicit opt-in (--allow-unsandboxed) and says so in one line on stderr; else a
    UserError naming the fixes. 'process' (the model's own parameter) is an opt-in in itself."""
    if requested not in BACKENDS:
        raise UserError(f"unknown backend {requested!r}", f"use one of {', '.join(BACKENDS)}")
    has_framework = all(importlib.util.find_spec(m) is not None for m in process_requires)
    if requested == "docker" or (requested == "auto" and images.docker_client() is not None):
        if requested == "docker" and images.docker_client() is None:
            raise UserError("backend 'docker' was requested but no Docker engine answers", "start Docker")
        return "docker"
    if requested == "process" and not has_framework:
        raise UserError(
            f"backend 'process' needs {', '.join(process_requires)} in this Python environment",
            "pip install tensorflow-cpu (or start Docker and use backend 'docker')",
        )
    if requested == "process":
        return "process"
    if not unsandboxed_allowed():
        raise UserError(
            f"no Docker engine answers, and backend 'auto' does not run {name} outside its container "
            "sandbox without being told to",
            "start Docker (the image is built on first use), or pass --allow-unsandboxed to run its entry "
            'point as a local process with your user\'s rights (backend = "process" does so for one model)'
            + ("" if has_framework else "; that also needs `pip install tensorflow-cpu`"),
        )
    if has_framework:
        print(
            f"warning: {name}: no Docker engine answers; running its entry point as a local process "
            "WITHOUT the container sandbox (--allow-unsandboxed)",
            file=sys.stderr,
            flush=True,
        )
        return "process"
    raise UserError(
        "no Docker engine answers and TensorFlow is not installed here, so the container model cannot run",
        "start Docker (the image is built on first use), or `pip install tensorflow-cpu` to run it as a local process",
    )
