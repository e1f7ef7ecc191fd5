"""`bench report RUN_DIR --html`: one self-contained HTML file with the paper's figures.

Everything is drawn from the store (values and the arrays the scoring stage kept), so a report
never retrains or regenerates. Figures are matplotlib PNGs embedded as base64 data URIs; the page
is plain HTML + CSS with no script and no external resource, so it opens offline and can be
attached to a paper draft. docs/report.md says what each figure shows and how it maps to the paper.

Sections, read from the top: the headline (:mod:`bench.report.headline`: models x values heatmap of
control-scaled scores and three sentences); per dataset the paper's tables and figures: the
figures the metrics declare for the paper's part (``FigureSpec(part="paper")``, in their order:
UMAP and marker genes (Fig. 4), ROC curves (Fig. 3), correlation of DE genes (Fig. 5), rare-class
F1 (Fig. 7), training time (Table 1)), then the report's own figures that span several metrics
(quality against training time, convergence, and the quality each model had reached at equal
training seconds, :mod:`bench.report.equal_time`); then per dataset the rest of the metric suite (its
tables, the per-protocol and scaled tables, and the figures the metrics declare for the suite:
PRDC, memorisation, per-type heatmap, DE recovery, and any plugin's); task status; provenance last,
folded (:mod:`bench.report.html_provenance`). Every table scrolls inside its own box. The report
names no metric: each figure is its metric's ``FigureSpec`` with its ``draw`` callable.
"""

from __future__ import annotations

import os
import tempfile
import time
from importlib import resources
from pathlib import Path

import pandas as pd

from bench.api.metric import Drawing
from bench.report import equal_time, headline, headline_html
from bench.report.figures_training import convergence_curves, fig_convergence, fig_tradeoff, quality_values
from bench.report.html_parts import box as _box
from bench.report.html_parts import esc as _esc
from bench.report.html_parts import img as _img
from bench.report.html_parts import note as _note
from bench.report.html_parts import slug as _slug
from bench.report.html_provenance import provenance_html
from bench.report.protocol_tables import PROTOCOLS_LEGEND, PROTOCOLS_TITLE
from bench.report.render import table_html
from bench.report.tables import LEGEND, SCALED_TITLE, DatasetTables, Report, build, paper_specs
from bench.report.view import RunView, figures_of

# the report's own figures, after the paper part's declared ones: they draw on several metrics
REPORT_FIGURES = {
    "tradeoff": (
        "Quality against training time",
        "Each model's quality against its training time (mean ± sd over seeds); closer to the "
        "bottom-left is better (AUC: closer to 0.5).",
    ),
    "convergence": (
        "Convergence: quality during training",
        "Cells generated part-way through training (1/8, 1/4, 1/2 and all of the budget) scored against "
        "the real test cells with the cheap metrics (MMD; AUC of a 100-tree forest on 50 PCs); a curve "
        "still falling at the end means the budget was too short (tables: last doubling).",
    ),
}

CSS = resources.files("bench.report").joinpath("report.css").read_text(encoding="utf-8")


def _tasks_html(run: RunView) -> str:
    t = run.all_tasks
    if t.empty:
        return _note("no tasks")
    counts = t.groupby(["dataset", "experiment", "status"]).size().rename("tasks").reset_index()
    out = _box(table_html(counts.set_index(["dataset", "experiment", "status"])))
    failed = t[t.status != "done"]
    if len(failed):
        rows = "".join(
            f"<tr><td>{_esc(r.dataset)}</td><td>{_esc(r.model)}</td><td>{_esc(r.seed)}</td>"
            f"<td>{_esc(r.experiment)}</td><td>{_esc(r.status)}</td><td class='failed'>{_esc(r.error or '')}</td></tr>"
            for r in failed.itertuples()
        )
        out += "<h3>tasks not done</h3>" + _box(
            "<table><thead><tr><th>dataset</th><th>model</th><th>seed</th>"
            f"<th>experiment</th><th>status</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return out


def _paper_tables_html(dataset: str, tables: DatasetTables) -> str:
    """The main experiment's table and the paper-shaped tables of one dataset."""
    slug = _slug(dataset)
    parts = [
        f'<h3 id="tables-{slug}">Tables: the main experiment and the paper\'s'
        + (" (protocol genes; the other protocols below)" if tables.protocols else "")
        + "</h3>",
        _box(table_html(tables.main)),
    ]
    parts.append(f'<p class="caption">{_esc(LEGEND[0].upper() + LEGEND[1:])} (here: highlighted).</p>')
    for title, df in tables.paper.items():
        parts.append(f"<h4>{_esc(title)}</h4>{_box(table_html(df))}")
    # the paper's values in every evaluation protocol of the run (the paper's own among them)
    for title, df in tables.protocols.items():
        anchor = f' id="protocols-{slug}"' if title == PROTOCOLS_TITLE else ""
        parts.append(f"<h4{anchor}>{_esc(title)}</h4>{_box(table_html(df))}")
        if title == PROTOCOLS_TITLE:
            parts.append(f'<p class="caption">{_esc(PROTOCOLS_LEGEND)}.</p>')
    return "".join(parts)


def _suite_tables_html(dataset: str, tables: DatasetTables) -> str:
    """The metric suite's tables and the scaled scores."""
    slug = _slug(dataset)
    parts = []
    for group, df in tables.suite.items():
        parts.append(f"<h4>{_esc(group)}</h4>{_box(table_html(df))}")
    if not tables.scaled.empty:
        parts.append(f'<h4 id="scaled-{slug}">{_esc(SCALED_TITLE)}</h4>{_box(table_html(tables.scaled))}')
    return "".join(parts)


def _figure_html(run: RunView, dataset: str, metric, spec) -> str:
    """One declared figure section (h3 id ``<section>-<dataset slug>``): what ``spec.draw`` returns
    (a figure, a :class:`~bench.api.Drawing`, a note, or None: the spec's ``missing`` note) with its
    caption filled from the options of the tasks drawn. A figure that fails to draw becomes a note:
    a metric's drawing must not take the report down."""
    parts = [f'<h3 id="{_esc(spec.section)}-{_slug(dataset)}">{_esc(spec.title)}</h3>']
    try:
        got = spec.draw(run, dataset)
    except Exception as exc:
        return parts[0] + _note(
            f"metric {metric.name} could not draw this figure: {type(exc).__name__}: {exc}"
        )
    if isinstance(got, str):
        return parts[0] + _note(got)
    if got is None:
        return parts[0] + _note(spec.missing or f"nothing to draw for {dataset} (metric {metric.name})")
    drawing = got if isinstance(got, Drawing) else Drawing(got)
    caption = run.caption(spec.section, dataset, drawing.keys, drawing.seed)
    return parts[0] + _img(drawing.figure, f"{dataset} {spec.alt or spec.title}", _esc(caption))


def _declared_html(run: RunView, dataset: str, part: str) -> str:
    """The figures the metrics declare for one part of the report ("paper" or "suite"), in order."""
    return "".join(_figure_html(run, dataset, metric, spec) for metric, spec in figures_of(part))


def _report_figures_html(run: RunView, dataset: str, summary: pd.DataFrame) -> str:
    """The report's own figures (:data:`REPORT_FIGURES`), which span several metrics."""
    slug = _slug(dataset)
    # the quality values in the paper's order (their tables' order, Metric.tables), then the others
    place = {v: spec.order for _, spec in paper_specs() for v in spec.values}
    quality = sorted((value for value, _, _ in quality_values()), key=lambda v: place.get(v, float("inf")))
    named = ", ".join(quality[:-1]) + (f" or {quality[-1]}" if len(quality) > 1 else "".join(quality))
    missing = {
        "tradeoff": f"needs train_seconds and a quality value ({named})",
        "convergence": "no training snapshots (only iteratively trained models report them)",
    }
    curves = convergence_curves(run, dataset)  # read once: the figure and the equal-seconds table
    parts = []
    for sec, fn in (
        ("tradeoff", lambda: fig_tradeoff(summary, dataset)),
        ("convergence", lambda: fig_convergence(curves, dataset)),
    ):
        title, caption = REPORT_FIGURES[sec]
        parts.append(f'<h3 id="{sec}-{slug}">{_esc(title)}</h3>')
        fig = fn()
        parts.append(_note(missing[sec]) if fig is None else _img(fig, f"{dataset} {sec}", _esc(caption)))
    equal = equal_time.equal_seconds_table(curves)
    if not equal.empty:
        parts.append(f'<h3 id="equal-seconds-{slug}">Quality at equal training seconds</h3>')
        parts.append(_box(table_html(equal)))
        parts.append(f'<p class="caption">{_esc(equal_time.caption(equal.attrs["value"]))}</p>')
    return "".join(parts)


def _dataset_html(run: RunView, dataset: str, summary: pd.DataFrame, tables: DatasetTables) -> str:
    """The paper's figures and tables of one dataset."""
    return (
        f'<section id="ds-{_slug(dataset)}"><h2>{_esc(dataset)}: the paper\'s figures and tables</h2>'
        f"{_paper_tables_html(dataset, tables)}{_declared_html(run, dataset, 'paper')}"
        f"{_report_figures_html(run, dataset, summary)}</section>"
    )


def _rest_html(run: RunView, dataset: str, tables: DatasetTables) -> str:
    """The rest of the metric suite for one dataset: its tables, then the figures declared for it."""
    slug = _slug(dataset)
    return (
        f'<section id="suite-{slug}"><h2>{_esc(dataset)}: the rest of the metric suite</h2>'
        f"{_suite_tables_html(dataset, tables)}{_declared_html(run, dataset, 'suite')}</section>"
    )


def profiles_of(store, planned: pd.DataFrame) -> list[str]:
    """The profiles of the planned tasks (from their specs; one spec per model and experiment)."""
    if planned is None or planned.empty:
        return []
    keys = planned.drop_duplicates(["dataset", "model", "experiment"]).key
    return sorted({str(p) for k in keys if (p := (store.task_spec(k) or {}).get("profile"))})


def _headline_html(report: Report, profiles: list[str]) -> str:
    inputs = headline.from_report(report, profiles)
    parts = ['<section id="headline"><h2>Headline: models against the controls</h2>']
    for d in report.datasets:
        parts.append(f'<h3 id="headline-{_slug(d)}">{_esc(d)}</h3>')
        parts.append(headline_html.to_html(headline.build(inputs, d)))
    parts.append("</section>")
    return "".join(parts)


def _as_of(store) -> str:
    """When the store's newest finished task ended (UTC): the page says what it shows, not when it was
    drawn, so the same store gives the same page (the results site checks its published copy)."""
    last = store.last_finished()
    if last is None:
        return "no finished task yet"
    return "results as of " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last))


def render(store, report: Report | None = None) -> str:
    """The whole report page as a string; ``report``: the store's tables when the caller has built
    them already (``bench.report.build(store)``), else built here. Read from the top: the headline,
    per dataset the paper's figures and tables, then the rest of the metric suite, the tasks, and
    the provenance last, folded."""
    report = report if report is not None else build(store)
    run = RunView(store, report)
    summary = report.summary
    runs = store.runs()
    datasets = list(report.datasets)
    nav = ['<a href="#headline">headline</a>']
    nav += [f'<a href="#ds-{_slug(d)}">{_esc(d)}: paper</a>' for d in datasets]
    nav += [f'<a href="#suite-{_slug(d)}">{_esc(d)}: suite</a>' for d in datasets]
    nav += ['<a href="#tasks">tasks</a>', '<a href="#provenance">provenance</a>']
    title = "scgenbench report" + (f": {', '.join(datasets)}" if datasets else "")
    body = [
        f"<header><h1>{_esc(title)}</h1><p>run dir {_esc(Path(store.run_dir).name)} — {_esc(_as_of(store))}; figures "
        "follow the ACTIVA paper (Heydari et al.)</p></header>",
        f"<nav>{' '.join(nav)}</nav><main>",
    ]
    if not datasets:
        body.append(
            '<section id="headline"><h2>No results</h2>'
            + _note("the store has no finished task yet")
            + "</section>"
        )
    else:
        body.append(_headline_html(report, profiles_of(store, report.planned)))
    for d in datasets:
        body.append(_dataset_html(run, d, summary, report.datasets[d]))
    for d in datasets:
        body.append(_rest_html(run, d, report.datasets[d]))
    body.append(f'<section id="tasks"><h2>Tasks</h2>{_tasks_html(run)}</section>')
    body.append(
        '<section id="provenance"><details><summary>Provenance: datasets, runs, code versions '
        f"(the command, commit, versions and hardware of each run)</summary>{provenance_html(runs)}"
        "</details></section>"
    )
    body.append("</main>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_html(
    store, run_dir: str | Path, out: str | Path | None = None, report: Report | None = None
) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) atomically; returns its path. ``report``:
    as for :func:`render`."""
    out = Path(out) if out else Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(store, report)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is a normal file
    os.replace(tmp, out)
    return out
