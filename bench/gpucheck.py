"""The GPU check: how fast ACTIVA trains and generates and how fast the MMD runs on this machine.

``python -m bench.gpucheck`` (or ``scripts/gpu-check.sh``) needs only PyTorch and this package: no
network, no AnnData or scanpy, no dataset files. It builds synthetic data of pbmc68k's shape (61,588
cells x 17,789 genes, and x 2,000 genes, 10 cell types) on the device and measures, ACTIVA through
its torch-only speed probe (``bench.pipeline.speed_probe``),

* ACTIVA's introspective training in cells/s (batch 128, the `reference` algorithm), eager and
  as a CUDA graph, fp32 (TF32 matmuls) and bf16, at both widths: one untimed epoch (warm-up and
  graph capture), then one timed epoch;
* generating 100,000 cells (decoder in fp32, generation BatchNorm statistics as `activa` uses by
  default), on the device and with the copy to host memory;
* the MMD of 70,000 x 70,000 cells on 50 PCs;
* peak GPU memory,

writes one JSON under ``results/gpu/`` (device name, torch and CUDA versions, every figure) and
prints a one-screen summary. A full CUDA run takes a few minutes (well under 8 on one H100).
``--device cpu`` runs the same checks at CPU sizes (eager fp32 only: bf16 autocast and CUDA graphs
are CUDA paths); CI runs it with tiny sizes to prove the script works. See README "GPU check".
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.api.contract import LIBRARY_SIZE
from bench.api.speed import MODES, PRECISIONS, SpeedProbe
from bench.metrics import mmd
from bench.pipeline import speed_probe

MODEL = "activa"  # trained and sampled through its torch-only speed probe (bench.pipeline.speed_probe)

# pbmc68k after the scGAN preprocessing (the ACTIVA paper's largest set) and its 2,000-HVG version
PBMC68K = {"cells": 61_588, "genes": (17_789, 2_000), "types": 10}
# issue 15's targets on one H100, batch 128 (cells/s of graphed training; seconds)
TARGETS = {
    "train_cells_per_s_2000_genes": 150_000,
    "train_cells_per_s_17789_genes": 100_000,
    "train_cells_per_s_17789_genes_floor": 42_000,  # 30x the paper's ~1,400 cells/s on a V100
    "generate_100000_cells_s": 1.0,
    "mmd_70000_s": 10.0,
}


@dataclass
class Sizes:
    cells: int
    genes: tuple[int, ...]
    types: int
    gen_cells: int
    mmd_cells: int
    batch_size: int = 128


SIZES = {
    "cuda": Sizes(PBMC68K["cells"], PBMC68K["genes"], PBMC68K["types"], 100_000, 70_000),
    "cpu": Sizes(2_048, (2_000, 500), 10, 10_000, 5_000),
}


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


@dataclass
class Report:
    device: str
    device_name: str
    torch: str
    cuda: str | None
    cudnn: int | None
    python: str
    host: str
    cpu_threads: int
    sizes: dict[str, Any]
    train: list[TrainRun] = field(default_factory=list)
    generation: dict[str, Any] = field(default_factory=dict)
    mmd: dict[str, Any] = field(default_factory=dict)
    peak_gpu_mb: float | None = None
    targets: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    started: str = ""


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def measure_training(
    X: torch.Tensor, y: torch.Tensor, n_types: int, *, precision: str, mode: str, batch_size: int, seed: int
) -> TrainRun:
    """One untimed introspective epoch (warm-up, graph capture), then one timed epoch."""
    device = X.device
    run = TrainRun(genes=X.shape[1], precision=precision, mode=mode)
    if device.type != "cuda" and (precision == "bf16" or mode == "graphed"):
        run.skipped = "CUDA only"
        return run
    _reset_peak(device)
    probe = speed_probe(
        MODEL,
        X.shape[1],
        n_types,
        seed=seed,
        device=str(device),
        batch_size=batch_size,
        precision=precision,
        mode=mode,
    )
    probe.train_epoch(X, y)
    _sync(device)
    steps0, cells0, graphed0 = probe.steps, probe.cells_seen, probe.graphed_steps
    start = time.perf_counter()
    logs = probe.train_epoch(X, y)  # reads the epoch's losses: ends with a device sync
    _sync(device)
    run.epoch_seconds = time.perf_counter() - start
    run.cells_per_s = (probe.cells_seen - cells0) / run.epoch_seconds
    run.steps = probe.steps - steps0
    run.graphed_steps = probe.graphed_steps - graphed0
    run.peak_gpu_mb = _peak_mb(device)
    if not all(np.isfinite(v) for v in logs.values()):
        run.error = f"non-finite loss: {logs}"
    return run


def measure_generation(probe: SpeedProbe, n_cells: int) -> dict[str, Any]:
    """Seconds to decode ``n_cells`` cells as the model generates by default (fp32, its chunks),
    on the device and with the copy to host memory, after one untimed warm-up chunk."""
    device = probe.device
    _reset_peak(device)
    chunk, decode = probe.sampler()
    gen = torch.Generator(device=device).manual_seed(0)
    decode(min(chunk, n_cells), gen)
    out: dict[str, Any] = {"cells": n_cells, "chunk": chunk, "genes": probe.n_genes, "dtype": "float32"}
    for key, to_host in (("seconds_on_device", False), ("seconds_to_host", True)):
        _sync(device)
        start = time.perf_counter()
        parts = []
        for i in range(0, n_cells, chunk):
            x = decode(min(chunk, n_cells - i), gen)
            parts.append(x.cpu() if to_host else x)
        _sync(device)
        out[key] = time.perf_counter() - start
        del parts
    out["cells_per_s_on_device"] = n_cells / out["seconds_on_device"]
    out["peak_gpu_mb"] = _peak_mb(device)
    return out


def measure_mmd(n_cells: int, *, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Seconds for :func:`bench.metrics.mmd` of two ``n_cells`` x 50 samples (float32 tiles)."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_cells, 50))
    fake = rng.normal(0.5, 1.0, size=(n_cells, 50))  # a shift the MMD must see
    mmd(real[:500], fake[:500], seed=seed, device=str(device))  # warm-up (kernels, allocator)
    _sync(device)
    _reset_peak(device)
    start = time.perf_counter()
    res = mmd(real, fake, seed=seed, device=str(device))
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "cells_per_side": res.n_real,
        "pcs": 50,
        "seconds": seconds,
        "mmd": res.mmd,
        "peak_gpu_mb": _peak_mb(device),
    }


def _device_info(device: torch.device) -> dict[str, Any]:
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


def _best(report: Report, genes: int) -> float | None:
    vals = [r.cells_per_s for r in report.train if r.genes == genes and r.cells_per_s and not r.error]
    return max(vals) if vals else None


def _targets(report: Report) -> dict[str, Any]:
    """Each target of issue 15 with the figure measured for it (CUDA runs at pbmc68k's size only)."""
    if report.device == "cpu" or report.sizes["cells"] != PBMC68K["cells"]:
        return {"checked": False, "why": "targets are for one GPU at pbmc68k's size"}
    wide, narrow = PBMC68K["genes"]
    got = {
        "train_cells_per_s_2000_genes": _best(report, narrow),
        "train_cells_per_s_17789_genes": _best(report, wide),
        "train_cells_per_s_17789_genes_floor": _best(report, wide),
        "generate_100000_cells_s": report.generation.get("seconds_on_device"),
        "mmd_70000_s": report.mmd.get("seconds"),
    }
    out: dict[str, Any] = {"checked": True}
    for key, target in TARGETS.items():
        value = got[key]
        seconds = key.endswith("_s") and not key.startswith("train")
        met = None if value is None else (value <= target if seconds else value >= target)
        out[key] = {"target": target, "measured": value, "met": met}
    return out


def run_check(
    device: torch.device,
    sizes: Sizes,
    *,
    seed: int = 0,
    precisions: tuple[str, ...] = PRECISIONS,
    modes: tuple[str, ...] = MODES,
    log: Callable[[str], None] = print,
) -> Report:
    t0 = time.perf_counter()
    report = Report(**_device_info(device), sizes=asdict(sizes), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _reset_peak(device)
    for genes in sizes.genes:
        X, y = synthetic_counts(sizes.cells, genes, sizes.types, seed=seed, device=device)
        for precision in precisions:
            for mode in modes:
                try:
                    run = measure_training(
                        X,
                        y,
                        sizes.types,
                        precision=precision,
                        mode=mode,
                        batch_size=sizes.batch_size,
                        seed=seed,
                    )
                except torch.cuda.OutOfMemoryError as exc:
                    run = TrainRun(
                        genes=genes, precision=precision, mode=mode, error=f"out of GPU memory: {exc}"
                    )
                    torch.cuda.empty_cache()
                report.train.append(run)
                log(_train_line(run))
        del X, y
        if device.type == "cuda":
            torch.cuda.empty_cache()
    # generation at the widest width, from an untrained model (speed does not depend on the weights)
    probe = speed_probe(
        MODEL, max(sizes.genes), sizes.types, seed=seed, device=str(device), batch_size=sizes.batch_size,
        precision="fp32", mode="eager",
    )  # fmt: skip
    report.generation = measure_generation(probe, sizes.gen_cells)
    log(
        f"generate {sizes.gen_cells:,} cells x {max(sizes.genes):,} genes: "
        f"{report.generation['seconds_on_device']:.3f} s on the device, "
        f"{report.generation['seconds_to_host']:.3f} s to host memory"
    )
    report.mmd = measure_mmd(sizes.mmd_cells, device=device, seed=seed)
    log(f"MMD {sizes.mmd_cells:,} x {sizes.mmd_cells:,} cells x 50 PCs: {report.mmd['seconds']:.2f} s")
    peaks = [r.peak_gpu_mb for r in report.train] + [
        report.generation["peak_gpu_mb"],
        report.mmd["peak_gpu_mb"],
    ]
    peaks = [p for p in peaks if p is not None]
    report.peak_gpu_mb = max(peaks) if peaks else None  # the largest of the measurements' peaks
    report.targets = _targets(report)
    report.seconds = time.perf_counter() - t0
    return report


def _train_line(run: TrainRun) -> str:
    head = f"train {run.genes:>6,} genes {run.precision:<4} {run.mode:<7}"
    if run.skipped:
        return f"{head} skipped ({run.skipped})"
    if run.error:
        return f"{head} FAILED: {run.error}"
    mem = f", peak {run.peak_gpu_mb:,.0f} MiB" if run.peak_gpu_mb is not None else ""
    return f"{head} {run.cells_per_s:>10,.0f} cells/s ({run.steps} steps in {run.epoch_seconds:.2f} s{mem})"


def summary(report: Report) -> str:
    """A one-screen summary of a report."""
    lines = [
        f"GPU check on {report.device_name} ({report.device}); torch {report.torch}, CUDA {report.cuda}",
        f"data: {report.sizes['cells']:,} synthetic cells, {report.sizes['types']} types, "
        f"batch {report.sizes['batch_size']}",
        "",
        f"{'genes':>7} {'precision':<9} {'eager cells/s':>14} {'graphed cells/s':>16}",
    ]
    for genes in report.sizes["genes"]:
        for precision in ("fp32", "bf16"):
            cell = {}
            for run in report.train:
                if run.genes == genes and run.precision == precision:
                    cell[run.mode] = (
                        "n/a" if run.skipped else "failed" if run.error else f"{run.cells_per_s:,.0f}"
                    )
            if cell:
                lines.append(
                    f"{genes:>7,} {precision:<9} {cell.get('eager', '-'):>14} {cell.get('graphed', '-'):>16}"
                )
    gen = report.generation
    lines += [
        "",
        f"generate {gen['cells']:,} cells: {gen['seconds_on_device']:.3f} s on the device "
        f"({gen['cells_per_s_on_device']:,.0f} cells/s), {gen['seconds_to_host']:.3f} s to host memory",
        f"MMD {report.mmd['cells_per_side']:,} x {report.mmd['cells_per_side']:,} x 50 PCs: "
        f"{report.mmd['seconds']:.2f} s",
    ]
    if report.peak_gpu_mb is not None:
        lines.append(f"peak GPU memory: {report.peak_gpu_mb:,.0f} MiB")
    if report.targets.get("checked"):
        lines.append("")
        for key, t in report.targets.items():
            if key == "checked":
                continue
            state = "n/a" if t["met"] is None else "met" if t["met"] else "NOT met"
            lines.append(f"target {key}: {t['target']:,} -> {t['measured']!s:.10} {state}")
    lines.append(f"total {report.seconds:.0f} s")
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def write_report(report: Report, out: Path | None, results_dir: Path = Path("results/gpu")) -> Path:
    """The report as JSON at ``out`` (default: results/gpu/gpucheck-<device>-<time>.json), written
    atomically."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = results_dir / f"gpucheck-{_slug(report.device_name)}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(asdict(report), indent=1) + "\n")
    tmp.replace(out)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument(
        "--out", type=Path, default=None, help="JSON path (default results/gpu/gpucheck-<device>-<time>.json)"
    )
    p.add_argument(
        "--cells", type=int, help="training cells (default: pbmc68k's 61,588 on CUDA, 2,048 on CPU)"
    )
    p.add_argument("--genes", help="comma-separated widths (default 17789,2000 on CUDA, 2000,500 on CPU)")
    p.add_argument("--types", type=int, help="cell types (default 10)")
    p.add_argument("--gen-cells", type=int, help="cells to generate (default 100,000 on CUDA, 10,000 on CPU)")
    p.add_argument("--mmd-cells", type=int, help="MMD cells per side (default 70,000 on CUDA, 5,000 on CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="CPU threads of PyTorch (default: its own choice)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        print(f"error: unknown device {args.device!r}; use cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    if device.type not in ("cuda", "cpu"):
        print(f"error: unknown device {args.device!r}; use cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: PyTorch sees no CUDA GPU; run on a GPU machine or pass --device cpu", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    base = SIZES[device.type]
    sizes = Sizes(
        cells=args.cells or base.cells,
        genes=tuple(int(g) for g in args.genes.split(",")) if args.genes else base.genes,
        types=args.types or base.types,
        gen_cells=args.gen_cells or base.gen_cells,
        mmd_cells=args.mmd_cells or base.mmd_cells,
        batch_size=args.batch_size,
    )
    if sizes.cells < 2 * sizes.batch_size or min(sizes.genes) < 1 or sizes.types < 2 or sizes.mmd_cells < 50:
        print("error: need cells >= 2 x batch size, genes >= 1, types >= 2, mmd cells >= 50", file=sys.stderr)
        return 2
    report = run_check(device, sizes, seed=args.seed)
    path = write_report(report, args.out)
    print()
    print(summary(report))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
