"""What the GPU check measures, on tensors (PyTorch and this package only): synthetic counts on the
device, a generator's training epoch and generation through its torch-only speed probe
(``bench.pipeline.speed_probe``), a metric's array function (``Metric.speed_probe``), peak GPU
memory, and the device's description. :mod:`bench.gpucheck` runs them and reports."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.api.contract import LIBRARY_SIZE
from bench.api.speed import SpeedProbe
from bench.pipeline import speed_probe


@dataclass
class TrainRun:
    genes: int
    precision: str  # "fp32" (TF32 matmuls on CUDA) or "bf16"
    mode: str  # "eager" or "graphed"
    cells_per_s: float | None = None
    epoch_seconds: float | None = None
    steps: int | None = None
    graphed_steps: int | None = None
    peak_gpu_mb: float | None = None
    skipped: str | None = None  # why this combination was not measured
    error: str | None = None


def synthetic_counts(n_cells: int, n_genes: int, n_types: int, *, seed: int, device: torch.device):
    """Cells x genes on the training scale of ACTIVA (library size 20,000, not logged) with
    ``n_types`` cell types: per type a log-normal mean profile, per cell gamma-distributed
    expression around it (overdispersed like counts). Made on ``device``, in chunks."""
    g = torch.Generator(device=device).manual_seed(seed)
    profiles = torch.exp(torch.randn((n_types, n_genes), generator=g, device=device) * 1.5)
    y = torch.randint(0, n_types, (n_cells,), generator=g, device=device)
    X = torch.empty((n_cells, n_genes), device=device)
    for i in range(0, n_cells, 4096):
        mean = profiles[y[i : i + 4096]]
        # Gamma(shape 2, scale mean/2) through two exponentials: mean `mean`, no torch.distributions
        u = torch.rand((2, *mean.shape), generator=g, device=device).clamp_min_(1e-12)
        x = -(u.log().sum(0)) * (mean / 2)
        X[i : i + 4096] = x / x.sum(1, keepdim=True) * LIBRARY_SIZE
    return X, y


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def measure_training(
    model: str,
    X: torch.Tensor,
    y: torch.Tensor,
    n_types: int,
    *,
    precision: str,
    mode: str,
    batch_size: int,
    seed: int,
) -> TrainRun:
    """One untimed training epoch of ``model``'s speed probe (warm-up, graph capture), then one
    timed epoch."""
    device = X.device
    run = TrainRun(genes=X.shape[1], precision=precision, mode=mode)
    if device.type != "cuda" and (precision == "bf16" or mode == "graphed"):
        run.skipped = "CUDA only"
        return run
    reset_peak(device)
    probe = speed_probe(
        model,
        X.shape[1],
        n_types,
        seed=seed,
        device=str(device),
        batch_size=batch_size,
        precision=precision,
        mode=mode,
    )
    probe.train_epoch(X, y)
    sync(device)
    steps0, cells0, graphed0 = probe.steps, probe.cells_seen, probe.graphed_steps
    start = time.perf_counter()
    logs = probe.train_epoch(X, y)  # reads the epoch's losses: ends with a device sync
    sync(device)
    run.epoch_seconds = time.perf_counter() - start
    run.cells_per_s = (probe.cells_seen - cells0) / run.epoch_seconds
    run.steps = probe.steps - steps0
    run.graphed_steps = probe.graphed_steps - graphed0
    run.peak_gpu_mb = peak_mb(device)
    if not all(np.isfinite(v) for v in logs.values()):
        run.error = f"non-finite loss: {logs}"
    return run


def measure_generation(probe: SpeedProbe, n_cells: int) -> dict[str, Any]:
    """Seconds to decode ``n_cells`` cells as the model generates by default (fp32, its chunks),
    on the device and with the copy to host memory, after one untimed warm-up chunk."""
    device = probe.device
    reset_peak(device)
    chunk, decode = probe.sampler()
    gen = torch.Generator(device=device).manual_seed(0)
    decode(min(chunk, n_cells), gen)
    out: dict[str, Any] = {"cells": n_cells, "chunk": chunk, "genes": probe.n_genes, "dtype": "float32"}
    for key, to_host in (("seconds_on_device", False), ("seconds_to_host", True)):
        sync(device)
        start = time.perf_counter()
        parts = []
        for i in range(0, n_cells, chunk):
            x = decode(min(chunk, n_cells - i), gen)
            parts.append(x.cpu() if to_host else x)
        sync(device)
        out[key] = time.perf_counter() - start
        del parts
    out["cells_per_s_on_device"] = n_cells / out["seconds_on_device"]
    out["peak_gpu_mb"] = peak_mb(device)
    return out


def measure_metric(
    probe: Callable[..., float], n_cells: int, *, device: torch.device, seed: int = 0
) -> dict[str, Any]:
    """Seconds for a metric's array function (``Metric.speed_probe``) of two ``n_cells`` x 50
    samples, after a warm-up on 500 cells (kernels, allocator)."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_cells, 50))
    fake = rng.normal(0.5, 1.0, size=(n_cells, 50))  # a shift the metric must see
    probe(real[:500], fake[:500], seed=seed, device=str(device))
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    value = probe(real, fake, seed=seed, device=str(device))
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "cells_per_side": n_cells,
        "pcs": 50,
        "seconds": seconds,
        "value": float(value),
        "peak_gpu_mb": peak_mb(device),
    }


def device_info(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if cuda
        else (platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
    }
