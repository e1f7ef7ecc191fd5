"""The evaluation contract between the harness and every generator, defined once: the library size
cells are normalised to, the output scales a generator may declare and the ±1 % rule for a
library-size output, the resources a task gets when its generator declares none, and which device
a task runs on.

The scoring code (bench.evaluation) and the output check (bench.api.generator.validate_output)
read these, so this module is part of the scoring code's hash (bench.codeversion.SCORING_MODULES).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.api.errors import UserError

# every cell is normalised to this many counts before log1p (the ACTIVA and scGAN papers' 20,000)
LIBRARY_SIZE = 20_000
# what a generator's cells may be: raw counts, counts scaled to LIBRARY_SIZE per cell, or log1p of those
OUTPUT_SCALES = ("counts", "library-size-20000", "log1p")
# a "library-size-20000" cell may sum to LIBRARY_SIZE within this relative tolerance
LIBRARY_SIZE_TOLERANCE = 1e-2
# what one task gets where its generator declares nothing (Generator.resources, Slurm, containers)
RESOURCE_KEYS = ("cpus", "gpus", "mem_gb", "time_min")
DEFAULT_RESOURCES: dict[str, Any] = {"cpus": 2, "gpus": 0, "mem_gb": 8, "time_min": 60}
# the runner's measurements of a fit that become values (the timing metric reports them)
FIT_VALUES = ("train_seconds", "fit_wall_seconds", "peak_rss_mb", "peak_gpu_mb", "train_steps", "cells_seen")
# the hardware measurements (Table 1's columns): reported, never scaled between the controls
HARDWARE_VALUES = (
    "train_seconds",
    "fit_wall_seconds",
    "generate_seconds_per_100k",
    "generate_wall_seconds_per_100k",
    "peak_rss_mb",
    "peak_gpu_mb",
)


def at_library_size(totals: np.ndarray) -> np.ndarray:
    """Per cell: does its total count equal :data:`LIBRARY_SIZE` within ±1 %?"""
    totals = np.asarray(totals, dtype=float)
    return np.abs(totals - LIBRARY_SIZE) <= LIBRARY_SIZE_TOLERANCE * LIBRARY_SIZE


def resolve_device(device: str | None) -> str:
    """The device a task runs on: "cpu" for "cpu"; for "auto" (or None) "cuda" when PyTorch sees a
    CUDA GPU, else "cpu"; "cuda" / "cuda:N" as given, a UserError when no GPU is visible."""
    if device == "cpu":
        return "cpu"
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                "--device cuda was asked for but no CUDA GPU is visible", "use --device auto or cpu"
            )
        return str(device)
    raise UserError(f"unknown device {device!r}", "use auto, cpu, cuda or cuda:N")
