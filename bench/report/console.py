"""What `bench run` and `bench report` print: per dataset one headline table (the values metrics
declare for it, ``Metric.headline``, and the mean scaled score) and the paper-shaped tables that
the headline does not already hold, every table within the terminal's width (columns that do not
fit go to a continuation table under it, never cut), then one line saying where the full tables
are. ``bench report RUN_DIR --all`` prints every table (:func:`bench.report.render.print_tables`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.api.metric import arrow
from bench.config import CONTROLS
from bench.registry import available
from bench.report.main_table import best_models, cells_of
from bench.report.protocol_tables import PROTOCOLS_LEGEND, PROTOCOLS_TITLE, protocol_of, protocol_table
from bench.report.render import console_texts, index_names, rows
from bench.report.summary import cell_text, direction_of, fmt, order_models
from bench.report.tables import Report

HEADLINE_LEGEND = (
    "mean ± sd over seeds, (n/N) when seeds are missing; ↓ lower, ↑ higher, (→0.5) closest to 0.5 is "
    "better; best model in bold; AUC, MMD, CD: the paper's Fig. 3, Table 2, Fig. 5; aug F1: Fig. 7's "
    "augmented arm at the smallest fraction; scaled: mean control-scaled score (real = 1, shuffled = 0)"
)


def headline_values() -> dict[str, str]:
    """Value name (or ``prefix@``) -> short label, from every installed metric's ``headline``:
    the values of sample metrics first, then experiments', then the fit's (cost last)."""
    order = {"sample": 0, "experiment": 1, "fit": 2}
    out: dict[str, str] = {}
    metrics = sorted(available("metrics").values(), key=lambda m: order.get(getattr(m, "kind", ""), 3))
    for metric in metrics:
        out.update(getattr(metric, "headline", {}) or {})
    return out


def _tag(name: str) -> float:
    try:
        return float(name.split("@", 1)[1])
    except (IndexError, ValueError):
        return float("inf")


def selected_values(metrics: list[str] | None) -> dict[str, str]:
    """The directional values of the metrics a run selected by name (``--metrics``, ``metrics =`` in
    TOML), each labelled by its own name: what the user asked for is shown, a plugin's too."""
    if not metrics:
        return {}
    installed = available("metrics")
    out: dict[str, str] = {}
    for name in metrics:
        metric = installed.get(name)
        for value in getattr(metric, "directions", {}) or {}:
            out[value if "@" not in value else value.split("@", 1)[0] + "@"] = value.split("@", 1)[0]
    return out


def headline_table(report: Report, dataset: str, selected: list[str] | None = None) -> pd.DataFrame:
    """Rows models (controls last), columns the declared headline values of the main experiment
    (and of experiments such as augmentation at their smallest tag), the values of the metrics the
    run selected by name (``selected``), then the mean scaled score."""
    summary = report.summary
    sub = summary[summary.dataset == dataset]
    # the genes protocol's values (the main experiment's own) and the experiments'; the other
    # protocols' go to the protocol table (:func:`bench.report.protocol_tables.protocol_table`)
    keep = [protocol_of(e, p) in (None, "genes") for e, p in zip(sub.experiment, sub.params, strict=True)]
    sub = sub[pd.Series(keep, index=sub.index, dtype=bool)]  # (a bare empty list would pick columns)
    models = order_models(sorted(set(sub.model)))
    if not models:
        return pd.DataFrame()
    cells = {(r.model, r.metric): r for r in sub.itertuples()}
    present = {metric for _, metric in cells}
    columns: list[tuple[str, str]] = []  # (value name, column label)
    declared = headline_values()
    wanted = [*declared.items(), *((k, v) for k, v in selected_values(selected).items() if k not in declared)]
    for name, label in wanted:
        if any(col == name or col.startswith(name) for col, _ in columns):
            continue
        if name.endswith("@"):
            tagged = sorted((m for m in present if m.startswith(name)), key=_tag)
            if not tagged:
                continue
            name, label = tagged[0], f"{label} @{tagged[0].split('@', 1)[1]}"
        elif name not in present:
            continue
        direction, target = direction_of(name)
        columns.append((name, f"{label} {arrow(direction, target)}" if direction else label))
    data: dict[str, dict[str, str]] = {m: {} for m in models}
    best: set[tuple[str, str]] = set()
    for name, label in columns:
        column = {m: pd.Series(cells[(m, name)]._asdict()) for m in models if (m, name) in cells}
        for model in models:
            data[model][label] = cell_text(column[model]) if model in column else "n/a"
        direction, target = direction_of(name)
        best |= {(m, label) for m in best_models(column, direction, target)}
    means = report.scaled.means
    if means is not None and not means.empty:
        means = means[means.dataset == dataset].set_index("model")
        planned = report.planned
        planned = planned[(planned.dataset == dataset) & (planned.experiment == "main")]
        n_planned = planned.groupby("model").seed.nunique()
        label, scores = "scaled ↑", {}
        for model in models:
            failed = any(r.status == "failed" for (m, _), r in cells.items() if m == model)
            if model in means.index:
                r = means.loc[model]
                scores[model] = float(r["mean"])
                data[model][label] = fmt(scores[model], float(r["sd"]), int(r["n"]), n_planned.get(model))
            else:  # no scaled score: its main tasks failed, or it has no value every model has
                data[model][label] = "failed" if failed else "n/a"
        ranked = {m: v for m, v in scores.items() if m not in CONTROLS}
        if len(ranked) >= 2:
            best |= {(m, label) for m, v in ranked.items() if v == max(ranked.values())}
    df = pd.DataFrame.from_dict(data, orient="index")
    df.attrs["best"] = best
    main = report.datasets[dataset].main if dataset in report.datasets else None
    df.attrs["notes"] = list(main.attrs.get("notes", [])) if main is not None else []
    return df


def values_compact(report: Report, dataset: str, short: dict[str, str]) -> pd.DataFrame:
    """A values table (``TableSpec.values``, as Table 1) with models as rows and the short column
    names its metric declares (``TableSpec.short``)."""
    cells = cells_of(report.summary, dataset, "main")
    models = order_models(sorted({m for m, _ in cells}))
    data: dict[str, dict[str, str]] = {m: {} for m in models}
    best: set[tuple[str, str]] = set()
    for name, label in short.items():
        column = {m: cells[(m, name)] for m in models if (m, name) in cells}
        if not column or all(not np.isfinite(r["mean"]) for r in column.values()):
            continue
        direction, target = direction_of(name)
        col = f"{label} {arrow(direction, target)}" if direction else label
        for model in models:
            data[model][col] = cell_text(column[model]) if model in column else "n/a"
        best |= {(m, col) for m in best_models(column, direction, target)}
    df = pd.DataFrame.from_dict(data, orient="index")
    df.attrs["best"] = best
    df.attrs["notes"] = []
    return df


def arms_compact(df: pd.DataFrame, spec) -> pd.DataFrame:
    """An arms table (``TableSpec.arms``, as Fig. 7) with the arms that do not depend on the
    generator once (``TableSpec.short``: 'real cells only', '+ oversampled real', the same forests
    for every model), then '+ <model>' per model for each other arm ('augmented'); models that did
    not run the experiment (unconditional) are named in a note."""
    if df.empty:
        return df
    shared = spec.short
    own = [arm for arm in spec.arms if arm not in shared]
    rows_: dict[str, pd.Series] = {}
    skipped = []
    for model in dict.fromkeys(df.index.get_level_values(0)):
        part = df.loc[model]
        if (part == "n/a").all().all():
            skipped.append(model)
            continue
        for arm, label in shared.items():
            if label not in rows_ and arm in part.index:
                rows_[label] = part.loc[arm]
        for arm in own:
            if arm in part.index:
                rows_[f"+ {model}"] = part.loc[arm]
    out = pd.DataFrame(rows_).T
    out.index.name = "training set"
    out.attrs["best"] = set()
    out.attrs["notes"] = list(df.attrs.get("notes", []))
    if skipped:
        out.attrs["info"] = [f"n/a (unconditional): {', '.join(skipped)}"]
    return out


def _rich_table(df: pd.DataFrame, columns: list, title: str | None):
    from rich.table import Table

    t = Table(title=title, title_justify="left", pad_edge=False, collapse_padding=True)
    for name in index_names(df):
        t.add_column(name or "", style="bold", no_wrap=True)
    for col in columns:
        t.add_column(str(col), justify="right", no_wrap=True)
    for idx, cells in rows(df[columns]):
        t.add_row(*map(str, idx), *console_texts(cells))
    return t


def show_fitted(df: pd.DataFrame, title: str, console) -> None:
    """Print ``df`` within ``console.width``: the columns that fit, then the rest under it in
    continuation tables that repeat the row labels (a cell is never cut)."""
    from rich.markup import escape

    if df.empty:
        return
    width = console.width
    cols = list(df.columns)
    chunks: list[list] = []
    while cols:
        take = 1
        while take < len(cols):
            trial = _rich_table(df, cols[: take + 1], None)
            natural = console.measure(trial, options=console.options.update(width=100_000)).maximum
            if natural > width:
                break
            take += 1
        chunks.append(cols[:take])
        cols = cols[take:]
    for i, chunk in enumerate(chunks):
        head = title if i == 0 else f"{title.split(':', 1)[0]}: (continued)"
        console.print(_rich_table(df, chunk, escape(head)), soft_wrap=False)
    for note in df.attrs.get("info", []):
        console.print(escape(_wrap(f"  {note}", width)), highlight=False, style="dim")
    for note in df.attrs.get("notes", []):
        text = escape(_wrap(f"  failed {note}", width))
        console.print(text.replace("failed", "[red]failed[/red]", 1), highlight=False)


def print_headline(report: Report, console, run_dir=None, selected: list[str] | None = None) -> None:
    """The console view of a run (module docstring); ``selected``: the metrics the run named."""
    from rich.markup import escape

    for dataset, tables in report.datasets.items():
        by_protocol = protocol_table(report.summary, dataset, headline_values())
        title = f"{dataset}: headline" + (" (protocol genes)" if not by_protocol.empty else "")
        show_fitted(headline_table(report, dataset, selected), title, console)
        console.print(escape(_wrap(HEADLINE_LEGEND, console.width)), style="dim", highlight=False)
        if not by_protocol.empty:
            show_fitted(by_protocol, f"{dataset}: {PROTOCOLS_TITLE}", console)
            console.print(escape(_wrap(PROTOCOLS_LEGEND, console.width)), style="dim", highlight=False)
        for title, df in tables.paper.items():  # the tables that declare a compact shape
            spec = tables.shapes[title]
            if spec.short and spec.arms:
                show_fitted(arms_compact(df, spec), f"{dataset}: {title}", console)
            elif spec.short:
                show_fitted(values_compact(report, dataset, spec.short), f"{dataset}: {title}", console)
    where = f"{run_dir}" if run_dir is not None else "RUN_DIR"
    text = (
        f"full tables: {where}/summary.md; all tables here: `bench report {where} --all`; "
        f"figures: `bench report {where} --html`"
    )
    console.print(_wrap(text, console.width), highlight=False, markup=False)


def _wrap(text: str, width: int) -> str:
    """``text`` broken at spaces to ``width`` columns (the console may not wrap: soft_wrap)."""
    import textwrap

    return textwrap.fill(text, width=max(20, width), break_long_words=False, break_on_hyphens=False)
