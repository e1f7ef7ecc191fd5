"""Where a result came from: code version, packages, host, hardware."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = (
    "scgenbench",
    "numpy",
    "scipy",
    "pandas",
    "anndata",
    "scanpy",
    "scikit-learn",
    "torch",
    "tensorflow-cpu",
    "tensorflow",
    "docker",
    "submitit",
    "leidenalg",
    "igraph",
)


def git_commit(path: Path | None = None) -> dict[str, Any]:
    path = path or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            != ""
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def gpu_info() -> dict[str, Any]:
    try:
        import torch

        if torch.cuda.is_available():
            return {
                "cuda": torch.version.cuda,
                "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            }
    except Exception:  # torch missing or broken CUDA: report no GPU
        pass
    return {"cuda": None, "gpus": []}


def cpu_model() -> str | None:
    """The CPU's model name and the widest vector instructions it has (``/proc/cpuinfo``; None where
    there is none to read): two runs of one seed agree to the last digit only on the same kind of CPU,
    since torch's and TensorFlow's kernels sum in another order on AVX-512 than on AVX2."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():  # the first processor's fields
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    name, flags = fields.get("model name"), fields.get("flags", "").split()
    if name is None:
        return None
    widest = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), None)
    return f"{name} ({widest})" if widest else name


def collect(argv: list[str] | None = None) -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(argv if argv is not None else sys.argv),
        "git": git_commit(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "host": {
            "name": platform.node(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
        },
        "gpu": gpu_info(),
    }
