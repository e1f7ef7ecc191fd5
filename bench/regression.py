"""Regression gate: compare a run's metric means with a committed baseline.

A value regresses when it moved in its bad direction by more than the slack
``max(abs, sd_units * baseline_sd, rel * |baseline_mean|)``; it improved when it moved the
other way by more than the slack; a baseline value the run lacks is "missing". Hardware-dependent
values (times, memory) are not gated here: speed has its own pytest-benchmark suite.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UserError
from bench.report import directions, summarise

FORMAT = 1
HARDWARE_DEPENDENT = {"train_seconds", "generate_seconds_per_100k", "peak_rss_mb", "peak_gpu_mb"}
DEFAULT_TOLERANCE = {"abs": 0.01, "sd_units": 3.0, "rel": 0.05}


def _summary(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    from bench.store import Store

    with Store(run_dir, create=False) as store:
        values = store.values()
        runs = store.runs()
    if values.empty:
        raise UserError(f"no finished tasks in {run_dir}", "run `bench run` first")
    return summarise(values), (runs[-1] if runs else {})


def write_baseline(run_dir: str | Path, out: str | Path, tolerance: dict[str, float] | None = None) -> Path:
    summary, last = _summary(run_dir)
    dirs = directions()
    rows = []
    for r in summary.itertuples():
        if r.metric not in dirs or r.metric in HARDWARE_DEPENDENT or math.isnan(r.mean):
            continue
        sd = None if math.isnan(r.sd) else float(r.sd)
        rows.append({"dataset": r.dataset, "model": r.model, "experiment": r.experiment, "metric": r.metric,
                     "direction": dirs[r.metric], "mean": float(r.mean), "sd": sd, "n": int(r.n)})  # fmt: skip
    doc = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tolerance": {**DEFAULT_TOLERANCE, **(tolerance or {})},
        "spec": last.get("spec"),
        "provenance": last.get("provenance"),
        "values": rows,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return out


def load_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"baseline file not found: {path}", "write one with `bench baseline RUN_DIR -o FILE`")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(
            f"baseline {path} is not valid JSON: {exc}", "regenerate it with `bench baseline`"
        ) from None
    if doc.get("format") != FORMAT or "values" not in doc:
        raise UserError(
            f"{path} is not a scgenbench baseline (format {FORMAT})", "regenerate it with `bench baseline`"
        )
    return doc


def compare(summary: pd.DataFrame, baseline: dict[str, Any], *, tolerance: float | None = None,
            sd_units: float | None = None) -> pd.DataFrame:  # fmt: skip
    tol = dict(baseline.get("tolerance") or DEFAULT_TOLERANCE)
    if tolerance is not None:
        tol["abs"] = tolerance
    if sd_units is not None:
        tol["sd_units"] = sd_units
    current = {(r.dataset, r.model, r.experiment, r.metric): r for r in summary.itertuples()}
    rows = []
    for b in baseline["values"]:
        key = (b["dataset"], b["model"], b["experiment"], b["metric"])
        slack = max(tol.get("abs", 0.0), tol.get("sd_units", 0.0) * (b.get("sd") or 0.0),
                    tol.get("rel", 0.0) * abs(b["mean"]))  # fmt: skip
        cur = current.get(key)
        if cur is None or math.isnan(cur.mean):
            status, value = "missing", float("nan")
        else:
            value = float(cur.mean)
            delta = value - b["mean"]
            worse = delta if b["direction"] == "lower" else -delta
            status = "regressed" if worse > slack else "improved" if worse < -slack else "pass"
        rows.append({"dataset": key[0], "model": key[1], "experiment": key[2], "metric": key[3],
                     "baseline": b["mean"], "current": value, "slack": slack, "status": status})  # fmt: skip
    return pd.DataFrame(rows)


def check(run_dir: str | Path, baseline_path: str | Path, *, console=None, tolerance: float | None = None,
          sd_units: float | None = None) -> int:  # fmt: skip
    """Print the comparison; return 1 on any regression or missing value, else 0."""
    baseline = load_baseline(baseline_path)
    summary, _ = _summary(run_dir)
    result = compare(summary, baseline, tolerance=tolerance, sd_units=sd_units)
    if console is not None:
        from rich.table import Table

        colour = {"pass": "green", "improved": "cyan", "regressed": "red", "missing": "red"}
        t = Table(title=f"regression check against {baseline_path}", title_justify="left")
        for col in ("dataset", "model", "experiment", "metric", "baseline", "current", "slack", "status"):
            t.add_column(col, justify="right" if col in ("baseline", "current", "slack") else "left")
        for r in result.itertuples():
            t.add_row(r.dataset, r.model, r.experiment, r.metric, f"{r.baseline:.4g}", f"{r.current:.4g}",
                      f"{r.slack:.3g}", f"[{colour[r.status]}]{r.status}[/]")  # fmt: skip
        console.print(t)
        counts = result.status.value_counts().to_dict()
        console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 1 if result.status.isin(["regressed", "missing"]).any() else 0
