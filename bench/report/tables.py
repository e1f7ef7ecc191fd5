"""The report's tables of a run (console table per dataset, the paper-shaped tables, the metric
suite's tables, the control-scaled scores) and their three renderers (console, Markdown, HTML),
which share one row iterator (:func:`rows`)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.api.metric import arrow, badness
from bench.config import CONTROLS
from bench.failures import failure_notes
from bench.registry import available
from bench.report import scaling
from bench.report.summary import (
    CONTROL,
    cell_text,
    direction_of,
    directions,
    header,
    metric_options,
    order_models,
    params_of,
    summarise,
    table_groups,
)
from bench.timing import HARDWARE_VALUES

# the paper-shaped tables that the console's headline view prints in its own shape (bench.report.console)
TABLE1_TITLE = "Table 1 — training and generation time"
FIG7_TITLE = "Fig. 7 — rare-class F1 per training fraction (arms over the seeds they share)"
SCALED_TITLE = "scaled scores (real control = 1, shuffled control = 0; mean over values every model has)"


def _best(cells: dict[str, pd.Series], direction: str | None, target: float | None) -> set[str]:
    """The models (not the control) with the best mean among ``cells`` {model: summary row}; only
    cells over every planned seed compete (a mean over fewer seeds is not comparable)."""
    if direction is None:
        return set()
    scores = {
        m: badness(float(r["mean"]), direction, target)
        for m, r in cells.items()
        if m not in CONTROLS and r["status"] == "ok" and np.isfinite(r["mean"])
    }
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
    from bench.convergence import NOT_CONVERGED_GAIN, convergence_value, gain_name

    def mean(model: str, value: str) -> float:
        r = cells.get((model, value))
        return float(r["mean"]) if r is not None and r["n"] > 0 else float("nan")

    out: dict[str, dict[str, str]] = {}
    for col, value in (("steps", "train_steps"), ("cells seen", "cells_seen")):
        if any(np.isfinite(mean(m, value)) for m in models):
            out[col] = {m: _count(mean(m, value)) for m in models}
    gains = {m: mean(m, gain_name(convergence_value())) for m in models}
    if any(np.isfinite(g) for g in gains.values()):
        out["last 2× ΔMMD"] = {
            m: "n/a"
            if not np.isfinite(g)
            else f"{100 * g:+.0f} %" + (" not converged" if g > NOT_CONVERGED_GAIN else "")
            for m, g in gains.items()
        }
    return out


def main_table(
    summary: pd.DataFrame,
    dataset: str,
    dirs: dict[str, str] | None = None,
    notes: list[str] | None = None,
    *,
    training: bool = False,
    experiment: str = "main",
) -> pd.DataFrame:
    """Rows models (a failed one included), columns every directional value of the main
    experiment (``experiment``: the main experiment in another evaluation protocol, ``main@pca-real``): 'mean ± sd', '(n/N)' when seeds are missing, 'failed'; with ``training`` also the
    budget and convergence columns (:func:`training_columns`). ``attrs['best']`` holds the
    (model, column) of the best non-control model per column (ranked with the value's direction;
    a target by the distance to it); ``attrs['notes']`` the failure notes."""
    cells = _cells(summary, dataset, experiment)
    models = order_models(sorted({m for m, _ in cells}))
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


def augmentation_table(
    summary: pd.DataFrame, dataset: str, models: list[str], notes: list[str] | None = None
) -> pd.DataFrame:
    """Fig. 7: F1 of the rare class per fraction; rows (model, training set), 'n/a' for models
    that cannot run the experiment (unconditional), 'failed' for models whose tasks failed."""
    sub = summary[(summary.dataset == dataset) & (summary.experiment == "augmentation")]
    arms = [r for r in sub.itertuples() if "condition" in r.params and "fraction" in r.params]
    if not arms:
        return pd.DataFrame()
    fracs = sorted({float(r.params["fraction"]) for r in arms}, reverse=True)
    conds = ["real", "oversampled", "augmented"]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for model in order_models(models):
        for cond in conds:
            cells = {}
            for f in fracs:
                hit = [
                    r
                    for r in arms
                    if r.model == model and r.params["condition"] == cond and float(r.params["fraction"]) == f
                ]
                cells[f"{f:g}"] = cell_text(hit[0]) if hit else "n/a"
            rows[(model, cond)] = cells
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["model", "training set"])
    df.attrs["best"] = set()
    df.attrs["notes"] = list(notes or [])
    return df


def paper_tables(
    summary: pd.DataFrame,
    dataset: str,
    notes: dict[str, list[str]] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """The paper's tables for one dataset (each mean ± sd over seeds); the best non-control model
    of each row in ``attrs['best']``."""
    cells = _cells(summary, dataset, "main")
    models = order_models(sorted(set(summary[summary.dataset == dataset].model)))

    def row(metric_names: list[str]) -> pd.DataFrame:
        data: dict[str, dict[str, str]] = {}
        best: set[tuple[str, str]] = set()
        for metric in metric_names:
            direction, target = direction_of(metric)
            column = {m: cells[(m, metric)] for m in models if (m, metric) in cells}
            data[metric] = {
                ("Training Set (real)" if m == CONTROL else m): cell_text(column[m]) if m in column else "n/a"
                for m in models
            }
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
        TABLE1_TITLE: row(list(HARDWARE_VALUES)),
    }
    tables = {k: v for k, v in tables.items() if not (v == "n/a").all().all()}
    aug = augmentation_table(summary, dataset, models, (notes or {}).get("augmentation"))
    if not aug.empty:
        tables[FIG7_TITLE] = aug
    return tables


def protocol_of(experiment: str, params: dict[str, Any]) -> str | None:
    """The evaluation protocol a summary cell was scored in: its params' (every sample value written
    since protocols are an axis), else ``genes`` for the main experiment's (older stores), else None."""
    return params.get("protocol") or ("genes" if experiment == "main" else None)


def protocol_order(protocols) -> list[str]:
    from bench.protocols import protocol_keys

    known = protocol_keys()
    return sorted(set(protocols), key=lambda p: (known.index(p) if p in known else len(known), p))


def protocol_table(summary: pd.DataFrame, dataset: str, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Rows models, a column per (value, protocol) for every value the run scored in more than one
    evaluation protocol (``labels``: only these values, with these short labels): ``AUC · genes``,
    ``AUC · pca-real``, ... Empty when the run has one protocol. Best model per column in bold."""
    sub = summary[summary.dataset == dataset]
    proto = [protocol_of(e, p) for e, p in zip(sub.experiment, sub.params, strict=True)]
    sub = sub.assign(protocol=proto)
    sub = sub[sub.protocol.notna()]
    protocols = protocol_order(sub.protocol)
    if len(protocols) < 2:
        return pd.DataFrame()
    multi = sub.groupby("metric").protocol.nunique()
    names = [n for n in (labels or directions()) if multi.get(n, 0) > 1]
    models = order_models(sorted(set(sub.model)))
    cells = {(r["model"], r["metric"], r["protocol"]): r for _, r in sub.iterrows()}
    rows_: dict[str, dict[str, str]] = {m: {} for m in models}
    best: set[tuple[str, str]] = set()
    for name in names:
        direction, target = direction_of(name)
        short = (labels or {}).get(name) or name
        for protocol in protocols:
            column = {m: cells[(m, name, protocol)] for m in models if (m, name, protocol) in cells}
            if not column:
                continue
            col = f"{short} · {protocol}" + (f" {arrow(direction, target)}" if direction and labels else "")
            for model in models:
                rows_[model][col] = cell_text(column[model]) if model in column else "n/a"
            best |= {(m, col) for m in _best(column, direction, target)}
    df = pd.DataFrame.from_dict(rows_, orient="index")
    df.attrs["best"] = best
    df.attrs["notes"] = []
    return df


PROTOCOLS_TITLE = "by evaluation protocol"
PROTOCOLS_LEGEND = (
    "genes: every gene, log-normalised (MMD: their 50 PCs); pca-real: HVGs, scaling and 50 PCs fit on "
    "real training cells; paper: the authors' Seurat integration with the generated cells, then 50 "
    "PCs (joint: every model at once; pairwise: one at a time); harmony: a Python stand-in for paper. "
    "The real control's AUC is each protocol's leakage check: 0.5 when the protocol adds no signal "
    "(docs/metrics.md, Evaluation protocols)"
)


def protocol_tables(
    summary: pd.DataFrame,
    planned: pd.DataFrame,
    dataset: str,
    dirs: dict[str, str],
    protocols: dict[str, str],
) -> dict[str, pd.DataFrame]:
    """The tables of a run with several evaluation protocols: the values side by side per protocol
    (:data:`PROTOCOLS_TITLE`), then the main experiment's table in each protocol other than genes
    (``protocols``: experiment label -> protocol key, of the planned protocol tasks; a protocol whose
    tasks all failed keeps its table, with the failure notes)."""
    out = {}
    side = protocol_table(summary, dataset)
    if not side.empty:
        out[PROTOCOLS_TITLE] = side
    sub = planned[planned.dataset == dataset] if not planned.empty else planned
    here = {e: p for e, p in protocols.items() if not sub.empty and e in set(sub.experiment)}
    for experiment in sorted(here, key=lambda e: protocol_order(here.values()).index(here[e])):
        notes = failure_notes(planned, dataset, experiment)
        table = main_table(summary, dataset, dirs, notes, experiment=experiment)
        if table.empty and notes:
            table = pd.DataFrame({"status": {n.split(":", 1)[0]: "failed" for n in notes}})
            table.attrs.update(best=set(), notes=notes)
        out[f"main experiment, protocol {here[experiment]}"] = table
    return out


def planned_protocols(store, planned: pd.DataFrame) -> dict[str, str]:
    """Experiment label -> protocol key of the planned protocol tasks (read from one task spec per
    label; the main experiment and the metrics' own experiments are not protocol tasks)."""
    if planned.empty:
        return {}
    own = {"main"} | {m.experiment for m in available("metrics").values()}
    out = {}
    for experiment, rows_ in planned.groupby("experiment"):
        if experiment in own:
            continue
        spec = store.task_spec(rows_.key.iloc[0]) or {}
        if spec.get("protocol"):
            out[str(experiment)] = str(spec["protocol"])
    return out


@dataclass(frozen=True)
class DatasetTables:
    """The tables of one dataset: ``main`` (the main experiment, genes protocol), ``paper`` (the
    paper-shaped tables by title), ``suite`` (the metric suite's by group), ``protocols`` (by
    protocol, when the run has several) and ``scaled`` (the control-scaled scores)."""

    main: pd.DataFrame
    paper: dict[str, pd.DataFrame]
    suite: dict[str, pd.DataFrame]
    protocols: dict[str, pd.DataFrame]
    scaled: pd.DataFrame


@dataclass(frozen=True)
class Report:
    """What the report of a run holds (:func:`build`): every ``values`` row (long format, with
    params), the ``summary`` over seeds, the ``planned`` tasks with their status, each metric's
    ``options``, the ``scaled`` scores, and per dataset its :class:`DatasetTables`."""

    values: pd.DataFrame
    summary: pd.DataFrame
    planned: pd.DataFrame
    options: dict[str, Any]
    scaled: scaling.ScaledScores
    datasets: dict[str, DatasetTables]


def build(store, run_id: int | None = None) -> Report:
    """Tables of one run's plan (``run_id``) or of the whole store (per task slot, the latest
    run's task: results of replaced code are left out)."""
    planned = store.planned(run_id)
    values = store.values(list(planned.key)) if not planned.empty else store.values([])
    summary = summarise(values, planned)
    options = metric_options(store, planned[planned.status == "done"].key)
    groups = table_groups()
    # the scaled scores are the genes protocol's (the headline's); other protocols have their own tables
    in_genes = [
        protocol_of(e, p) in (None, "genes")
        for e, p in zip(values.experiment, params_of(values), strict=True)
    ]
    scaled = scaling.build(values[in_genes] if len(values) else values)
    protocols = planned_protocols(store, planned)
    datasets: dict[str, DatasetTables] = {}
    for dataset in sorted(set(planned.dataset) | set(values.dataset)):
        notes = {e: failure_notes(planned, dataset, e) for e in ("main", "augmentation")}
        scored = set(summary[(summary.dataset == dataset) & (summary.status != "failed")].metric)
        suite = {
            g: main_table(summary, dataset, d) for g, d in groups.items() if g != "main" and scored & set(d)
        }
        datasets[dataset] = DatasetTables(
            main=main_table(summary, dataset, groups.get("main", {}), notes["main"], training=True),
            paper=paper_tables(summary, dataset, notes, options),
            suite={g: df for g, df in suite.items() if not df.empty},
            protocols=protocol_tables(summary, planned, dataset, groups.get("main", {}), protocols),
            scaled=scaling.table(scaled, dataset),
        )
    return Report(
        values=values, summary=summary, planned=planned, options=options, scaled=scaled, datasets=datasets
    )


LEGEND = (
    "mean ± sd over seeds; (n/N): only n of N planned seeds have a value; ↓ lower, ↑ higher, (→0.5) "
    "closest to 0.5 is better; best model in bold; steps and cells seen: the training budget; "
    "last 2× ΔMMD: MMD gained by the last doubling of it (over 10 %: not converged)"
)


def rows(df: pd.DataFrame):
    """(index tuple, [(column, text, is_best)]) per row of a table."""
    best = df.attrs.get("best", set())
    for idx, r in df.iterrows():
        key = idx if isinstance(idx, tuple) else (idx,)
        yield key, [(col, str(v), (idx, col) in best) for col, v in r.items()]


def console_texts(cells) -> list[str]:
    """A row's cells (:func:`rows`) as rich markup: the best model's in bold green, failed in red."""
    from rich.markup import escape

    return [
        f"[bold green]{escape(text)}[/]"
        if best
        else f"[red]{escape(text)}[/]"
        if text == "failed"
        else escape(text)
        for _, text, best in cells
    ]


def index_names(df: pd.DataFrame) -> list[str]:
    return list(df.index.names) if isinstance(df.index, pd.MultiIndex) else [df.index.name or "model"]


def print_tables(report: Report, console, *, paper: bool = True) -> None:
    from rich.markup import escape
    from rich.table import Table

    def show(df: pd.DataFrame, title: str) -> None:
        if df.empty:
            return
        t = Table(title=title, title_justify="left")
        for name in index_names(df):
            t.add_column(name or "", style="bold")
        for col in df.columns:
            t.add_column(str(col), justify="right")
        for idx, cells in rows(df):
            t.add_row(*map(str, idx), *console_texts(cells))
        console.print(t)
        for note in df.attrs.get("notes", []):
            console.print(f"  [red]failed[/red] {escape(note)}", highlight=False, soft_wrap=True)

    for dataset, tables in report.datasets.items():
        show(tables.main, f"{dataset}: {LEGEND}")
        if paper:
            for title, df in tables.paper.items():
                show(df, f"{dataset}: {title}")
        for group, df in tables.suite.items():
            show(df, f"{dataset}: {group}")
        for title, df in tables.protocols.items():
            show(df, f"{dataset}: {title}")
        show(tables.scaled, f"{dataset}: {SCALED_TITLE}")


def md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    head = [*(n or "" for n in index_names(df)), *map(str, df.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, cells in rows(df):
        texts = [f"**{text}**" if best else text for _, text, best in cells]
        lines.append("| " + " | ".join([*map(str, idx), *texts]) + " |")
    notes = df.attrs.get("notes", [])
    if notes:
        lines += ["", *(f"- failed: {note}" for note in notes)]
    return "\n".join(lines)


def table_html(df: pd.DataFrame) -> str:
    """An HTML table with the index as leading columns (MultiIndex levels each a column); the best
    model's cells (``df.attrs['best']``) coloured, failed cells in red, and the failure notes
    (``df.attrs['notes']``) under the table."""
    if df.empty:
        return ""
    head = "".join(f"<th>{html.escape(str(n or ''), quote=True)}</th>" for n in index_names(df))
    head += "".join(f"<th>{html.escape(str(c), quote=True)}</th>" for c in df.columns)
    body = []
    for idx, cells in rows(df):
        tds = "".join(f'<td class="idx">{html.escape(str(i), quote=True)}</td>' for i in idx)
        for _, text, best in cells:
            cls = "num best" if best else "num failed" if text == "failed" else "num"
            tds += f'<td class="{cls}">{html.escape(str(text), quote=True)}</td>'
        body.append(f"<tr>{tds}</tr>")
    notes = "".join(
        f'<p class="note failed">failed: {html.escape(str(n), quote=True)}</p>'
        for n in df.attrs.get("notes", [])
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"
