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
from bench.failures import failure_notes, is_transient, reason
from bench.metrics._timing import HARDWARE_VALUES
from bench.metrics.base import arrow, badness
from bench.registry import available

CONTROL = "real"
SCALED_TITLE = "scaled scores (real control = 1, shuffled control = 0; mean over values every model has)"
AUG_RE = re.compile(r"^f1_(?P<cond>[a-z]+)@(?P<frac>[0-9.eE-]+)$")
CELL = ["dataset", "model", "experiment", "metric"]
SUMMARY_COLUMNS = [*CELL, "mean", "sd", "n", "n_planned", "status"]


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


def direction_of(value: str) -> tuple[str | None, float | None]:
    """(direction, target) of a value name over the installed metrics; (None, None) when
    informational (not ranked, not gated). ``target`` is set for direction "target" only."""
    for metric in available("metrics").values():
        find = getattr(metric, "direction_of", None)
        direction = find(value) if find else (getattr(metric, "directions", {}) or {}).get(value)
        if direction is not None:
            target = metric.target_of(value) if hasattr(metric, "target_of") else None
            return direction, target
    return None, None


def header(metric: str, direction: str, target: float | None = None) -> str:
    """Column header of a value: ``mmd ↓``, ``mean_corr ↑``, ``auc (→0.5)``."""
    return f"{metric} {arrow(direction, target)}"


def _finite(values: pd.DataFrame) -> pd.DataFrame:
    return values[np.isfinite(values.value.astype(float))]


def align_augmentation_arms(values: pd.DataFrame) -> pd.DataFrame:
    """Keep, per (dataset, model, fraction), only the seeds at which every arm of the experiment
    (real-only, oversampled, augmented, gain) that has a value at all has one, so the arms are
    compared over the same seeds. Values must be finite already."""
    if values.empty:
        return values
    match = values.metric.str.extract(AUG_RE.pattern)
    is_arm = match.cond.notna() & (values.experiment == "augmentation")
    if not is_arm.any():
        return values
    arms = values[is_arm].assign(frac=match.frac[is_arm])
    keep = pd.Series(True, index=values.index)
    for _, group in arms.groupby(["dataset", "model", "frac"]):
        seed_sets = [set(g.seed) for _, g in group.groupby("metric")]
        shared = set.intersection(*seed_sets)
        keep[group.index[~group.seed.isin(shared)]] = False
    return values[keep]


def summarise(values: pd.DataFrame, planned: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (dataset, model, experiment, metric): mean, sd (ddof 1) and n over the seeds
    with a finite value, ``n_planned`` (the seeds the run planned; without ``planned``: the seeds
    seen) and ``status``: "ok" (n = n_planned), "partial" (fewer), "failed" (no value and a task
    failed) or "missing" (no value, e.g. not finished). Every planned model gets a row for every
    value its (dataset, experiment) has for any model, so a model whose tasks all failed keeps
    its rows. Augmentation arms are compared over the seeds they share."""
    if values.empty and (planned is None or planned.empty):
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    values = (
        values[[*CELL, "seed", "value"]]
        if not values.empty
        else pd.DataFrame(columns=[*CELL, "seed", "value"])
    )
    good = align_augmentation_arms(_finite(values))
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")  # noqa: E731
    out = good.groupby(CELL, sort=True)["value"].agg(mean="mean", sd=sd, n="count").reset_index()
    group = ["dataset", "model", "experiment"]
    if planned is not None and not planned.empty:
        n_planned = planned.groupby(group).size().rename("n_planned").reset_index()
        failed = planned[planned.status == "failed"].groupby(group).size().rename("n_failed").reset_index()
    else:
        n_planned = values.groupby(group)["seed"].nunique().rename("n_planned").reset_index()
        failed = pd.DataFrame(columns=[*group, "n_failed"])
    # every planned (dataset, model, experiment) x every value seen in its (dataset, experiment)
    seen = values[["dataset", "experiment", "metric"]].drop_duplicates()
    grid = n_planned.merge(seen, on=["dataset", "experiment"], how="left")
    grid = grid[grid.metric.notna()]
    out = grid.merge(out, on=CELL, how="outer")
    out = out.merge(failed, on=group, how="left")
    out["n"] = pd.to_numeric(out.n).fillna(0).astype(int)
    out["n_planned"] = np.maximum(pd.to_numeric(out.n_planned).fillna(out.n).astype(int), out.n)
    n_failed = pd.to_numeric(out.n_failed).fillna(0).astype(int)
    out["status"] = np.where(out.n == 0, np.where(n_failed > 0, "failed", "missing"),
                             np.where(out.n < out.n_planned, "partial", "ok"))  # fmt: skip
    out["mean"] = out["mean"].astype(float)
    out["sd"] = out["sd"].astype(float)
    return out[SUMMARY_COLUMNS].sort_values(CELL).reset_index(drop=True)


def fmt(mean: float, sd: float, n: int, n_planned: int | None = None, status: str | None = None) -> str:
    """``0.612 ± 0.020``; over fewer seeds than planned ``0.612 ± 0.020 (2/3)``; no value:
    ``failed`` when its tasks failed, else ``n/a``."""
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "failed" if status == "failed" else "n/a"
    digits = 3 if abs(mean) < 100 else 1
    text = f"{mean:.{digits}f}"
    if n > 1 and not math.isnan(sd):
        text += f" ± {sd:.{digits}f}"
    if n_planned is not None and n < n_planned:
        text += f" ({n}/{n_planned})"
    return text


def cell_text(row) -> str:
    """:func:`fmt` of one summary row (a Series or a namedtuple)."""
    get = row.get if hasattr(row, "get") else lambda k: getattr(row, k)
    return fmt(get("mean"), get("sd"), int(get("n")), int(get("n_planned")), get("status"))


def _order_models(models: list[str]) -> list[str]:
    """Models by name, the controls last (in CONTROLS order)."""
    return sorted(models, key=lambda m: (m in CONTROLS, CONTROLS.index(m) if m in CONTROLS else 0, m))


def _best(cells: dict[str, pd.Series], direction: str | None, target: float | None) -> set[str]:
    """The models (not the control) with the best mean among ``cells`` {model: summary row}; only
    cells over every planned seed compete (a mean over fewer seeds is not comparable)."""
    if direction is None:
        return set()
    scores = {m: badness(float(r["mean"]), direction, target) for m, r in cells.items()
              if m not in CONTROLS and r["status"] == "ok" and np.isfinite(r["mean"])}  # fmt: skip
    if len(scores) < 2:
        return set()
    best = min(scores.values())
    return {m for m, v in scores.items() if math.isclose(v, best, rel_tol=1e-12, abs_tol=1e-15)}


def _cells(summary: pd.DataFrame, dataset: str, experiment: str) -> dict[tuple[str, str], pd.Series]:
    sub = summary[(summary.dataset == dataset) & (summary.experiment == experiment)]
    return {(r["model"], r["metric"]): r for _, r in sub.iterrows()}


def _count(x: float) -> str:
    """``13,680`` / ``1.23M``: a step or cell count (mean over seeds) in a table cell."""
    if not np.isfinite(x):
        return "n/a"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x:,.0f}"


def training_columns(cells: dict[tuple[str, str], pd.Series], models: list[str]) -> dict[str, dict[str, str]]:
    """{column: {model: text}}: the training budget every value was measured at (``steps``,
    ``cells seen``: means over seeds) and whether it had converged (``last 2× ΔMMD``: the mean
    relative MMD gain of the last doubling of the budget, bench.convergence; ``not converged`` when
    above 10 %). Empty when no model reports them (e.g. a non-iterative model only)."""
    from bench.convergence import NOT_CONVERGED_GAIN

    def mean(model: str, value: str) -> float:
        r = cells.get((model, value))
        return float(r["mean"]) if r is not None and r["n"] > 0 else float("nan")

    out: dict[str, dict[str, str]] = {}
    for col, value in (("steps", "train_steps"), ("cells seen", "cells_seen")):
        if any(np.isfinite(mean(m, value)) for m in models):
            out[col] = {m: _count(mean(m, value)) for m in models}
    gains = {m: mean(m, "mmd_gain_last_doubling") for m in models}
    if any(np.isfinite(g) for g in gains.values()):
        out["last 2× ΔMMD"] = {
            m: "n/a"
            if not np.isfinite(g)
            else f"{100 * g:+.0f} %" + (" not converged" if g > NOT_CONVERGED_GAIN else "")
            for m, g in gains.items()
        }
    return out


def main_table(summary: pd.DataFrame, dataset: str, dirs: dict[str, str] | None = None,
               notes: list[str] | None = None, *, training: bool = False) -> pd.DataFrame:  # fmt: skip
    """Rows models (a failed one included), columns every directional value of the main
    experiment: 'mean ± sd', '(n/N)' when seeds are missing, 'failed'; with ``training`` also the
    budget and convergence columns (:func:`training_columns`). ``attrs['best']`` holds the
    (model, column) of the best non-control model per column (ranked with the value's direction;
    a target by the distance to it); ``attrs['notes']`` the failure notes."""
    cells = _cells(summary, dataset, "main")
    models = _order_models(sorted({m for m, _ in cells}))
    if not models:
        return pd.DataFrame()
    present = {metric for _, metric in cells}
    metrics = [m for m in (dirs or directions()) if m in present]
    rows: dict[str, dict[str, str]] = {model: {} for model in models}
    best: set[tuple[str, str]] = set()
    for metric in metrics:
        direction, target = direction_of(metric)
        col = header(metric, direction or "lower", target)
        column = {m: cells[(m, metric)] for m in models if (m, metric) in cells}
        for model in models:
            rows[model][col] = cell_text(column[model]) if model in column else "n/a"
        best |= {(m, col) for m in _best(column, direction, target)}
    if not metrics:  # nothing scored (e.g. every model failed): still one row per model
        for model in models:
            statuses = {r["status"] for (m, _), r in cells.items() if m == model}
            rows[model]["status"] = "failed" if "failed" in statuses else "n/a"
    if training:
        for col, texts in training_columns(cells, models).items():
            for model in models:
                rows[model][col] = texts[model]
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.attrs["best"] = best
    df.attrs["notes"] = list(notes or [])
    return df


def augmentation_table(summary: pd.DataFrame, dataset: str, models: list[str],
                       notes: list[str] | None = None) -> pd.DataFrame:  # fmt: skip
    """Fig. 7: F1 of the rare class per fraction; rows (model, training set), 'n/a' for models
    that cannot run the experiment (unconditional), 'failed' for models whose tasks failed."""
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
                cells[f"{f:g}"] = cell_text(hit[0]) if hit else "n/a"
            rows[(model, cond)] = cells
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["model", "training set"])
    df.attrs["best"] = set()
    df.attrs["notes"] = list(notes or [])
    return df


def paper_tables(summary: pd.DataFrame, dataset: str, notes: dict[str, list[str]] | None = None,
                 options: dict[str, Any] | None = None) -> dict[str, pd.DataFrame]:  # fmt: skip
    """The paper's tables for one dataset (each mean ± sd over seeds); the best non-control model
    of each row in ``attrs['best']``."""
    cells = _cells(summary, dataset, "main")
    models = _order_models(sorted(set(summary[summary.dataset == dataset].model)))

    def row(metric_names: list[str]) -> pd.DataFrame:
        data: dict[str, dict[str, str]] = {}
        best: set[tuple[str, str]] = set()
        for metric in metric_names:
            direction, target = direction_of(metric)
            column = {m: cells[(m, metric)] for m in models if (m, metric) in cells}
            data[metric] = {("Training Set (real)" if m == CONTROL else m): cell_text(column[m]) if m in column else "n/a"
                            for m in models}  # fmt: skip
            best |= {(metric, m) for m in _best(column, direction, target)}
        df = pd.DataFrame.from_dict(data, orient="index")
        df.attrs["best"] = best
        df.attrs["notes"] = []
        return df

    de = ((options or {}).get("correlation_discrepancy") or {}).get("method")
    tables = {
        "Fig. 3 — real-vs-synthetic RF AUC (0.5 is ideal; ranked by |AUC − 0.5|)": row(["auc"]),
        "Table 2 — MMD to the test set": row(["mmd"]),
        "Fig. 5 — correlation discrepancy of DE genes" + (f" ({de} test)" if de else ""): row(["cd"]),
        "Table 1 — training and generation time": row(list(HARDWARE_VALUES)),
    }
    tables = {k: v for k, v in tables.items() if not (v == "n/a").all().all()}
    aug = augmentation_table(summary, dataset, models, (notes or {}).get("augmentation"))
    if not aug.empty:
        tables["Fig. 7 — rare-class F1 per training fraction (arms over the seeds they share)"] = aug
    return tables


def metric_options(store, keys) -> dict[str, Any]:
    """The options each metric ran with over the given tasks (from their specs): one dict per
    metric, or a list of the distinct ones when tasks differ."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for key in keys:
        spec = store.task_spec(key) or {}
        for name, opts in (spec.get("metrics") or {}).items():
            if opts not in seen.setdefault(name, []):
                seen[name].append(opts)
    return {name: opts[0] if len(opts) == 1 else opts for name, opts in sorted(seen.items())}


def build(store, run_id: int | None = None) -> dict[str, Any]:
    """Tables of one run's plan (``run_id``) or of the whole store (per task slot, the latest
    run's task: results of replaced code are left out)."""
    planned = store.planned(run_id)
    values = store.values(list(planned.key)) if not planned.empty else store.values([])
    summary = summarise(values, planned)
    options = metric_options(store, planned[planned.status == "done"].key)
    groups = table_groups()
    scaled = scaling.build(values)
    out: dict[str, Any] = {"values": values, "summary": summary, "planned": planned, "options": options,
                           "scaled": scaled, "datasets": {}}  # fmt: skip
    for dataset in sorted(set(planned.dataset) | set(values.dataset)):
        notes = {e: failure_notes(planned, dataset, e) for e in ("main", "augmentation")}
        scored = set(summary[(summary.dataset == dataset) & (summary.status != "failed")].metric)
        suite = {
            g: main_table(summary, dataset, d) for g, d in groups.items() if g != "main" and scored & set(d)
        }
        out["datasets"][dataset] = {
            "main": main_table(summary, dataset, groups.get("main", {}), notes["main"], training=True),
            "paper": paper_tables(summary, dataset, notes, options),
            "suite": {g: df for g, df in suite.items() if not df.empty},
            "scaled": scaling.table(scaled, dataset),
        }
    return out


LEGEND = (
    "mean ± sd over seeds; (n/N): only n of N planned seeds have a value; ↓ lower, ↑ higher, (→0.5) "
    "closest to 0.5 is better; best model in bold; steps and cells seen: the training budget; "
    "last 2× ΔMMD: MMD gained by the last doubling of it (over 10 %: not converged)"
)


def _rows(df: pd.DataFrame):
    """(index tuple, [(column, text, is_best)]) per row of a table."""
    best = df.attrs.get("best", set())
    for idx, r in df.iterrows():
        key = idx if isinstance(idx, tuple) else (idx,)
        yield key, [(col, str(v), (idx, col) in best) for col, v in r.items()]


def _index_names(df: pd.DataFrame) -> list[str]:
    return list(df.index.names) if isinstance(df.index, pd.MultiIndex) else ["model"]


def print_tables(report: dict[str, Any], console, *, paper: bool = True) -> None:
    from rich.markup import escape
    from rich.table import Table

    def show(df: pd.DataFrame, title: str) -> None:
        if df.empty:
            return
        t = Table(title=title, title_justify="left")
        for name in _index_names(df):
            t.add_column(name or "", style="bold")
        for col in df.columns:
            t.add_column(str(col), justify="right")
        for idx, cells in _rows(df):
            texts = [f"[bold green]{escape(text)}[/]" if best else
                     f"[red]{escape(text)}[/]" if text == "failed" else escape(text)
                     for _, text, best in cells]  # fmt: skip
            t.add_row(*map(str, idx), *texts)
        console.print(t)
        for note in df.attrs.get("notes", []):
            console.print(f"  [red]failed[/red] {escape(note)}", highlight=False, soft_wrap=True)

    for dataset, tables in report["datasets"].items():
        show(tables["main"], f"{dataset}: {LEGEND}")
        if paper:
            for title, df in tables["paper"].items():
                show(df, f"{dataset}: {title}")
        for group, df in tables.get("suite", {}).items():
            show(df, f"{dataset}: {group}")
        show(tables.get("scaled", pd.DataFrame()), f"{dataset}: {SCALED_TITLE}")


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    head = [*(n or "" for n in _index_names(df)), *map(str, df.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, cells in _rows(df):
        texts = [f"**{text}**" if best else text for _, text, best in cells]
        lines.append("| " + " | ".join([*map(str, idx), *texts]) + " |")
    notes = df.attrs.get("notes", [])
    if notes:
        lines += ["", *(f"- failed: {note}" for note in notes)]
    return "\n".join(lines)


def _provenance_md(provenance: dict[str, Any]) -> list[str]:
    git = provenance.get("git", {})
    host = provenance.get("host", {})
    lines = [f"- command: `{provenance.get('command', '')}`",
             f"- commit: {git.get('commit')}{' (dirty)' if git.get('dirty') else ''}",
             f"- host: {host.get('name')} ({host.get('cpus')} CPUs); "
             f"GPU: {', '.join(provenance.get('gpu', {}).get('gpus') or []) or 'none'}",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in provenance.get("packages", {}).items())]  # fmt: skip
    code = provenance.get("code") or {}
    for name, v in (code.get("generators") or {}).items():
        lines.append(f"- generator {name}: {v.get('distribution') or 'not installed'} {v.get('version') or ''}"
                     f"{' (editable)' if v.get('editable') else ''}, code {v.get('code_hash')}")  # fmt: skip
    if code.get("scoring"):
        lines.append(f"- scoring code: {code['scoring']}")
    return [*lines, ""]


def write_files(
    report: dict[str, Any], run_dir: str | Path, provenance: dict[str, Any] | None = None
) -> list[Path]:
    """``values.csv`` (long: one row per task value, with its cell's n and n_planned),
    ``summary.md`` and ``summary.json`` (cells with n, n_planned and status; failed tasks with
    their one-line reason; the options each metric ran with)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [run_dir / "values.csv", run_dir / "summary.md", run_dir / "summary.json"]
    summary = report["summary"]
    values = report["values"].drop(columns=["task_key"], errors="ignore")
    values = values.merge(summary[[*CELL, "n", "n_planned"]], on=CELL, how="left")
    values.to_csv(paths[0], index=False)
    md = ["# scgenbench summary", ""]
    if provenance:
        md += _provenance_md(provenance)
    for name, opts in report.get("options", {}).items():
        md.append(f"- {name} options: {json.dumps(opts, default=str)}")
    if report.get("options"):
        md.append("")
    for dataset, tables in report["datasets"].items():
        md += [f"## {dataset}", "", LEGEND[0].upper() + LEGEND[1:] + ".", ""]
        md += [_md_table(tables["main"]), ""]
        for title, df in tables["paper"].items():
            md += [f"### {title}", "", _md_table(df), ""]
        for group, df in tables.get("suite", {}).items():
            md += [f"### {group}", "", _md_table(df), ""]
        if not tables.get("scaled", pd.DataFrame()).empty:
            md += [f"### {SCALED_TITLE}", "", _md_table(tables["scaled"]), ""]
    paths[1].write_text("\n".join(md))
    planned = report.get("planned")
    failures = []
    if planned is not None and not planned.empty:
        for r in planned[planned.status != "done"].itertuples():
            failures.append({"dataset": r.dataset, "model": r.model, "seed": int(r.seed), "experiment": r.experiment,
                             "status": r.status, "reason": reason(r.error) if r.status == "failed" else None,
                             "transient": is_transient(r.error) if r.status == "failed" else None})  # fmt: skip
    records = summary.astype(object).where(summary.notna(), None).to_dict(orient="records")
    doc = {"provenance": provenance, "metric_options": report.get("options", {}), "summary": records,
           "failures": failures}  # fmt: skip
    if "scaled" in report:
        doc["scaled"] = report["scaled"]["summary"].replace({np.nan: None}).to_dict(orient="records")
        doc["mean_scaled"] = report["scaled"]["means"].replace({np.nan: None}).to_dict(orient="records")
    paths[2].write_text(json.dumps(doc, indent=1, default=str))
    return paths
