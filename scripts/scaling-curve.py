#!/usr/bin/env python
"""Measure the scaling curve (bench.scalecurve) at several sizes, fit each stage's exponent, plot it.

    python scripts/scaling-curve.py --sizes 10000,30000,100000 --fixtures /tmp/scale \
        --out results/scaling/cpu.json --plot docs/img/scaling-cpu.png
    python scripts/scaling-curve.py --table results/scaling/cpu.json   # the markdown table of docs/performance.md

Each size: the fixture is written (scripts/make-scale-data.py, kept in --fixtures for the next
call), then measured in a fresh process (`python -m bench.scalecurve`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.datasets.scale import write_scale_data
from bench.scalecurve import exponent

WARMUP_CELLS = 2000


def measure(sizes: list[int], fixtures: Path, activa: bool) -> list[dict]:
    runs = []
    warmup = fixtures / f"scale-{WARMUP_CELLS}.h5ad"
    if not warmup.exists():
        write_scale_data(WARMUP_CELLS, warmup)
    for n in sizes:
        path = fixtures / f"scale-{n}.h5ad"
        if not path.exists():
            print(f"writing {path}", file=sys.stderr)
            write_scale_data(n, path)
        print(f"measuring {n:,} cells", file=sys.stderr)
        cmd = [sys.executable, "-m", "bench.scalecurve", str(path), "--warmup", str(warmup)]
        cmd += [] if activa else ["--no-activa"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        sys.stderr.write(out.stderr[-2000:])
        runs.append({"n_cells": n, **json.loads(out.stdout.strip().splitlines()[-1])})
    return runs


def seconds_of(runs: list[dict], stage: str) -> list[float]:
    """Wall seconds of ``stage`` at every size."""
    return [next(s["seconds"] for s in r["stages"] if s["stage"] == stage) for r in runs]


def table(result: dict) -> str:
    """Seconds per stage and size with the fitted exponent over all sizes and the slope between the
    last two (where a cap binds, the top end goes flat), then the process's peak RSS. (Per-stage
    memory deltas are in the JSON, but after the warm-up the allocator reuses memory, so they
    understate; the process peak is the memory figure to read.)"""
    runs = result["runs"]
    n = [r["n_cells"] for r in runs]
    head = " / ".join(f"{x:,}" for x in n)
    lines = [
        f"| stage | seconds at {head} cells | exponent | exponent, last two sizes |",
        "|---|---|---|---|",
    ]

    def row(name: str, values: list[float], fmt: str) -> str:
        last = exponent(n[-2:], values[-2:]) if len(n) > 2 else float("nan")
        slopes = " | ".join(f"{round(b, 2) + 0.0:.2f}" for b in (exponent(n, values), last))  # no "-0.00"
        return f"| {name} | {' / '.join(format(v, fmt) for v in values)} | {slopes} |"

    for name in [s["stage"] for s in runs[0]["stages"]]:
        lines.append(row(name, seconds_of(runs, name), ".1f"))
    peak = [r.get("process_peak_rss_mb") for r in runs]
    if all(p is not None for p in peak):
        lines.append(row("**process peak RSS (MB)**", peak, ".0f"))
    return "\n".join(lines)


def plot(result: dict, out: Path, min_seconds: float = 1.0) -> None:
    """Left: wall seconds of every stage that takes ``min_seconds`` or more at the largest size,
    with its fitted exponent; right: the process's peak RSS (the whole quick main task's memory)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    n = [r["n_cells"] for r in runs]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    styles = ["-", "--", ":", "-."]
    shown = 0
    for name in [s["stage"] for s in runs[0]["stages"]]:
        secs = seconds_of(runs, name)
        if secs[-1] < min_seconds:
            continue
        axes[0].loglog(
            n, secs, marker="o", linestyle=styles[shown // 10 % 4], label=f"{name} ({exponent(n, secs):.2f})"
        )
        shown += 1
    axes[0].set(
        xlabel="cells in the file",
        ylabel="wall seconds",
        title=f"time per stage, >= {min_seconds:g} s at the largest size (fitted exponent)",
    )
    peak = [r.get("process_peak_rss_mb") for r in runs]
    if all(p is not None for p in peak):
        axes[1].loglog(n, peak, marker="o", label=f"process peak RSS ({exponent(n, peak):.2f})")
    axes[1].set(xlabel="cells in the file", ylabel="MB", title="peak memory of the process (all stages)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(result["host"])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,30000,100000", help="comma-separated numbers of cells")
    p.add_argument("--fixtures", default="scale-fixtures", help="folder for the fixture files")
    p.add_argument("--out", help="JSON with every measurement")
    p.add_argument("--plot", help="log-log plot (.png/.svg)")
    p.add_argument("--no-activa", action="store_true", help="leave out the ACTIVA epoch")
    p.add_argument("--table", help="print the markdown table of a JSON written earlier, and exit")
    p.add_argument("--replot", help="with --table: also draw the plot of that JSON to this path")
    args = p.parse_args()
    if args.table:
        result = json.loads(Path(args.table).read_text())
        if args.replot:
            plot(result, Path(args.replot))
        print(table(result))
        return 0
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes takes comma-separated numbers of cells, e.g. 10000,30000; got '{args.sizes}'")
    if any(n < 1 for n in sizes):
        p.error(f"--sizes must be positive numbers of cells; got '{args.sizes}'")
    fixtures = Path(args.fixtures)
    fixtures.mkdir(parents=True, exist_ok=True)
    runs = measure(sizes, fixtures, activa=not args.no_activa)
    threads = os.environ.get("OMP_NUM_THREADS", "all")
    result = {"host": f"{platform.node()} ({os.cpu_count()} CPUs, OMP_NUM_THREADS={threads})", "runs": runs}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, Path(args.plot))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
