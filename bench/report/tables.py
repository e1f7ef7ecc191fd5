"""The report's tables of a run: the main table per dataset (:mod:`bench.report.main_table`), the
paper-shaped tables the metrics declare (``Metric.tables``), the metric suite's tables, the tables by
evaluation protocol (:mod:`bench.report.protocol_tables`) and the control-scaled scores, gathered in a
:class:`Report`. Their renderers (console, Markdown, HTML) are :mod:`bench.report.render`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.api.metric import TableSpec
from bench.failures import failure_notes
from bench.registry import available
from bench.report import scaling
from bench.report.main_table import best_models, cells_of, main_table
from bench.report.protocol_tables import planned_protocols, protocol_of, protocol_tables
from bench.report.summary import (
    CONTROL,
    cell_text,
    direction_of,
    metric_options,
    order_models,
    params_of,
    summarise,
    table_groups,
)

SCALED_TITLE = "scaled scores (real control = 1, shuffled control = 0; mean over values every model has)"

LEGEND = (
    "mean ± sd over seeds; (n/N): only n of N planned seeds have a value; ↓ lower, ↑ higher, (→0.5) "
    "closest to 0.5 is better; best model in bold; steps and cells seen: the training budget; "
    "last 2× ΔMMD: MMD gained by the last doubling of it (over 10 %: not converged)"
)


def arms_table(
    summary: pd.DataFrame,
    dataset: str,
    models: list[str],
    experiment: str,
    spec: TableSpec,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """An experiment's arms table (``TableSpec.arms``, as Fig. 7): rows (model, arm) in the declared
    order, columns the values of ``params[spec.column_param]``, largest first; 'n/a' for models that
    cannot run the experiment (unconditional), 'failed' for models whose tasks failed."""
    row, col = spec.row_param, spec.column_param
    sub = summary[(summary.dataset == dataset) & (summary.experiment == experiment)]
    arms = [r for r in sub.itertuples() if row in r.params and col in r.params]
    if not arms:
        return pd.DataFrame()
    columns = sorted({float(r.params[col]) for r in arms}, reverse=True)
    rows_: dict[tuple[str, str], dict[str, str]] = {}
    for model in order_models(models):
        for arm in spec.arms:
            cells = {}
            for c in columns:
                hit = [
                    r for r in arms if r.model == model and r.params[row] == arm and float(r.params[col]) == c
                ]
                cells[f"{c:g}"] = cell_text(hit[0]) if hit else "n/a"
            rows_[(model, arm)] = cells
    df = pd.DataFrame.from_dict(rows_, orient="index")
    df.index = pd.MultiIndex.from_tuples(df.index, names=["model", "training set"])
    df.attrs["best"] = set()
    df.attrs["notes"] = list(notes or [])
    return df


def paper_specs() -> list[tuple[Any, TableSpec]]:
    """(metric, TableSpec) of every paper-shaped table the installed metrics declare, by order."""
    found = [(m, t) for m in available("metrics").values() for t in m.tables]
    return sorted(found, key=lambda mt: mt[1].order)


def paper_tables(
    summary: pd.DataFrame,
    dataset: str,
    notes: dict[str, list[str]] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, TableSpec]]:
    """The paper's tables for one dataset, as the metrics declare them (``Metric.tables``; each mean
    ± sd over seeds; the best non-control model of each row in ``attrs['best']``; a table of only
    n/a left out), and each table's spec by title. ``notes``: failure notes by experiment."""
    cells = cells_of(summary, dataset, "main")
    models = order_models(sorted(set(summary[summary.dataset == dataset].model)))

    def row(metric_names: tuple[str, ...]) -> pd.DataFrame:
        data: dict[str, dict[str, str]] = {}
        best: set[tuple[str, str]] = set()
        for metric in metric_names:
            direction, target = direction_of(metric)
            column = {m: cells[(m, metric)] for m in models if (m, metric) in cells}
            data[metric] = {
                ("Training Set (real)" if m == CONTROL else m): cell_text(column[m]) if m in column else "n/a"
                for m in models
            }
            best |= {(metric, m) for m in best_models(column, direction, target)}
        df = pd.DataFrame.from_dict(data, orient="index")
        df.attrs["best"] = best
        df.attrs["notes"] = []
        return df

    tables: dict[str, pd.DataFrame] = {}
    specs: dict[str, TableSpec] = {}
    for metric, spec in paper_specs():
        title = spec.title_for((options or {}).get(metric.name))
        if spec.arms:
            df = arms_table(
                summary, dataset, models, metric.experiment, spec, (notes or {}).get(metric.experiment)
            )
            keep = not df.empty
        else:
            df = row(spec.values)
            keep = not (df == "n/a").all().all()
        if keep:
            tables[title], specs[title] = df, spec
    return tables, specs


@dataclass(frozen=True)
class DatasetTables:
    """The tables of one dataset: ``main`` (the main experiment, genes protocol), ``paper`` (the
    paper-shaped tables by title; ``shapes``: the metric's TableSpec of each), ``suite`` (the metric suite's by group), ``protocols`` (by
    protocol, when the run has several) and ``scaled`` (the control-scaled scores)."""

    main: pd.DataFrame
    paper: dict[str, pd.DataFrame]
    shapes: dict[str, TableSpec]
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
    experiments = [
        "main",
        *dict.fromkeys(m.experiment for m in available("metrics").values() if m.experiment != "main"),
    ]
    datasets: dict[str, DatasetTables] = {}
    for dataset in sorted(set(planned.dataset) | set(values.dataset)):
        notes = {e: failure_notes(planned, dataset, e) for e in experiments}
        scored = set(summary[(summary.dataset == dataset) & (summary.status != "failed")].metric)
        suite = {
            g: main_table(summary, dataset, d) for g, d in groups.items() if g != "main" and scored & set(d)
        }
        paper, shapes = paper_tables(summary, dataset, notes, options)
        datasets[dataset] = DatasetTables(
            main=main_table(summary, dataset, groups.get("main", {}), notes["main"], training=True),
            paper=paper,
            shapes=shapes,
            suite={g: df for g, df in suite.items() if not df.empty},
            protocols=protocol_tables(summary, planned, dataset, groups.get("main", {}), protocols),
            scaled=scaling.table(scaled, dataset),
        )
    return Report(
        values=values, summary=summary, planned=planned, options=options, scaled=scaled, datasets=datasets
    )
