"""Tables derived from the store: the console table per dataset, the paper-shaped tables, the metric
suite's tables (one per ``Metric.table`` group) and the control-scaled scores (bench.scaling), and
the files ``values.csv`` (long), ``summary.md`` and ``summary.json`` written into the run dir."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import scaling
from bench.config import CONTROLS
from bench.registry import available

ARROW = {"lower": "↓", "higher": "↑"}
CONTROL = "real"
SCALED_TITLE = "scaled scores (real control = 1, shuffled control = 0; mean over values every model has)"
AUG_RE = re.compile(r"^f1_(?P<cond>[a-z]+)@(?P<frac>[0-9.eE-]+)$")


def directions() -> dict[str, str]:
    """Direction of every value name declared by an installed metric."""
    out: dict[str, str] = {}
    for metric in available("metrics").values():
        out.update(getattr(metric, "directions", {}) or {})
    return out


def table_groups() -> dict[str, dict[str, str]]:
    """Directions of every value, grouped by the report table its metric declares (``Metric.table``:
    "main" for the paper's metrics and plugins, a group name for the metric suite's)."""
    out: dict[str, dict[str, str]] = {}
    for metric in available("metrics").values():
        group = getattr(metric, "table", "main")
        out.setdefault(group, {}).update(getattr(metric, "directions", {}) or {})
    return out


def summarise(values: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd (ddof 1) and n over seeds per (dataset, model, experiment, metric)."""
    if values.empty:
        return pd.DataFrame(columns=["dataset", "model", "experiment", "metric", "mean", "sd", "n"])
    g = values.groupby(["dataset", "model", "experiment", "metric"], sort=True)["value"]
    out = g.agg(mean="mean", sd=lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan"), n="count")
    return out.reset_index()


def fmt(mean: float, sd: float, n: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    digits = 3 if abs(mean) < 100 else 1
    text = f"{mean:.{digits}f}"
    if n > 1 and not math.isnan(sd):
        text += f" ± {sd:.{digits}f}"
    return text


def _order_models(models: list[str]) -> list[str]:
    """Models by name, the controls last (in CONTROLS order)."""
    return sorted(models, key=lambda m: (m in CONTROLS, CONTROLS.index(m) if m in CONTROLS else 0, m))


def main_table(summary: pd.DataFrame, dataset: str, dirs: dict[str, str]) -> pd.DataFrame:
    """Rows models, columns every directional value of the main experiment: 'mean ± sd'."""
    sub = summary[(summary.dataset == dataset) & (summary.experiment == "main") & summary.metric.isin(dirs)]
    if sub.empty:
        return pd.DataFrame()
    metrics = [m for m in dirs if m in set(sub.metric)]
    rows = {}
    for model in _order_models(sorted(set(sub.model))):
        cells = {}
        for metric in metrics:
            hit = sub[(sub.model == model) & (sub.metric == metric)]
            cells[f"{metric} {ARROW[dirs[metric]]}"] = (
                fmt(*hit[["mean", "sd", "n"]].iloc[0]) if len(hit) else "n/a"
            )
        rows[model] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


def augmentation_table(summary: pd.DataFrame, dataset: str, models: list[str]) -> pd.DataFrame:
    """Fig. 7: F1 of the rare class per fraction; rows (model, training set), 'n/a' for models
    that cannot run the experiment (unconditional)."""
    sub = summary[(summary.dataset == dataset) & (summary.experiment == "augmentation")]
    parsed = [(r, AUG_RE.match(r.metric)) for r in sub.itertuples()]
    parsed = [(r, m) for r, m in parsed if m]
    if not parsed:
        return pd.DataFrame()
    fracs = sorted({float(m["frac"]) for _, m in parsed}, reverse=True)
    conds = ["real", "oversampled", "augmented"]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for model in _order_models(models):
        for cond in conds:
            cells = {}
            for f in fracs:
                hit = [
                    r for r, m in parsed if r.model == model and m["cond"] == cond and float(m["frac"]) == f
                ]
                cells[f"{f:g}"] = fmt(hit[0].mean, hit[0].sd, hit[0].n) if hit else "n/a"
            rows[(model, cond)] = cells
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["model", "training set"])
    return df


def paper_tables(summary: pd.DataFrame, dataset: str) -> dict[str, pd.DataFrame]:
    """The paper's tables for one dataset (each mean ± sd over seeds)."""
    sub = summary[(summary.dataset == dataset) & (summary.experiment == "main")]
    models = _order_models(sorted(set(summary[summary.dataset == dataset].model)))

    def row(metric_names: list[str], label: dict[str, str] | None = None) -> pd.DataFrame:
        data = {}
        for metric in metric_names:
            cells = {}
            for model in models:
                hit = sub[(sub.model == model) & (sub.metric == metric)]
                name = "Training Set (real)" if model == CONTROL else model
                cells[name] = fmt(*hit[["mean", "sd", "n"]].iloc[0]) if len(hit) else "n/a"
            data[(label or {}).get(metric, metric)] = cells
        return pd.DataFrame.from_dict(data, orient="index")

    tables = {
        "Fig. 3 — real-vs-synthetic RF AUC (0.5 is ideal)": row(["auc"]),
        "Table 2 — MMD to the test set": row(["mmd"]),
        "Fig. 5 — correlation discrepancy of DE genes": row(["cd"]),
        "Table 1 — training and generation time": row(
            ["train_seconds", "generate_seconds_per_100k", "peak_rss_mb", "peak_gpu_mb"]
        ),
    }
    tables = {k: v for k, v in tables.items() if not (v == "n/a").all().all()}
    aug = augmentation_table(summary, dataset, models)
    if not aug.empty:
        tables["Fig. 7 — rare-class F1 per training fraction"] = aug
    return tables


def build(store, run_keys: list[str] | None = None) -> dict[str, Any]:
    values = store.values(run_keys)
    summary = summarise(values)
    groups = table_groups()
    scaled = scaling.build(values)
    out: dict[str, Any] = {"values": values, "summary": summary, "scaled": scaled, "datasets": {}}
    for dataset in sorted(set(values.dataset)):
        suite = {g: main_table(summary, dataset, d) for g, d in groups.items() if g != "main"}
        out["datasets"][dataset] = {
            "main": main_table(summary, dataset, groups.get("main", {})),
            "paper": paper_tables(summary, dataset),
            "suite": {g: df for g, df in suite.items() if not df.empty},
            "scaled": scaling.table(scaled, dataset),
        }
    return out


def print_tables(report: dict[str, Any], console, *, paper: bool = True) -> None:
    from rich.table import Table

    def show(df: pd.DataFrame, title: str) -> None:
        if df.empty:
            return
        t = Table(title=title, title_justify="left")
        index_names = list(df.index.names) if isinstance(df.index, pd.MultiIndex) else ["model"]
        for name in index_names:
            t.add_column(name or "", style="bold")
        for col in df.columns:
            t.add_column(str(col), justify="right")
        for idx, r in df.iterrows():
            idx = idx if isinstance(idx, tuple) else (idx,)
            t.add_row(*map(str, idx), *map(str, r.tolist()))
        console.print(t)

    for dataset, tables in report["datasets"].items():
        show(tables["main"], f"{dataset}: mean ± sd over seeds (↓ lower is better, ↑ higher)")
        if paper:
            for title, df in tables["paper"].items():
                show(df, f"{dataset}: {title}")
        for group, df in tables.get("suite", {}).items():
            show(df, f"{dataset}: {group}")
        show(tables.get("scaled", pd.DataFrame()), f"{dataset}: {SCALED_TITLE}")


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    idx_names = list(df.index.names) if isinstance(df.index, pd.MultiIndex) else ["model"]
    header = [*(n or "" for n in idx_names), *map(str, df.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, r in df.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        lines.append("| " + " | ".join([*map(str, idx), *map(str, r.tolist())]) + " |")
    return "\n".join(lines)


def write_files(
    report: dict[str, Any], run_dir: str | Path, provenance: dict[str, Any] | None = None
) -> list[Path]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [run_dir / "values.csv", run_dir / "summary.md", run_dir / "summary.json"]
    report["values"].drop(columns=["task_key"], errors="ignore").to_csv(paths[0], index=False)
    md = ["# scgenbench summary", ""]
    if provenance:
        git = provenance.get("git", {})
        md += [f"- command: `{provenance.get('command', '')}`",
               f"- commit: {git.get('commit')}{' (dirty)' if git.get('dirty') else ''}",
               f"- host: {provenance.get('host', {}).get('name')} ({provenance.get('host', {}).get('cpus')} CPUs); "
               f"GPU: {', '.join(provenance.get('gpu', {}).get('gpus') or []) or 'none'}",
               "- packages: " + ", ".join(f"{k} {v}" for k, v in provenance.get("packages", {}).items()), ""]  # fmt: skip
    for dataset, tables in report["datasets"].items():
        md += [f"## {dataset}", "", "Mean ± sd over seeds; ↓ lower is better, ↑ higher is better.", ""]
        md += [_md_table(tables["main"]), ""]
        for title, df in tables["paper"].items():
            md += [f"### {title}", "", _md_table(df), ""]
        for group, df in tables.get("suite", {}).items():
            md += [f"### {group}", "", _md_table(df), ""]
        if not tables.get("scaled", pd.DataFrame()).empty:
            md += [f"### {SCALED_TITLE}", "", _md_table(tables["scaled"]), ""]
    paths[1].write_text("\n".join(md))
    summary = report["summary"].replace({np.nan: None})
    doc = {"provenance": provenance, "summary": summary.to_dict(orient="records")}
    if "scaled" in report:
        doc["scaled"] = report["scaled"]["summary"].replace({np.nan: None}).to_dict(orient="records")
        doc["mean_scaled"] = report["scaled"]["means"].replace({np.nan: None}).to_dict(orient="records")
    paths[2].write_text(json.dumps(doc, indent=1))
    return paths
