"""`bench report RUN_DIR --html`: one self-contained HTML file with the paper's figures.

Everything is drawn from the store (values and the arrays the scoring stage kept), so a report
never retrains or regenerates. Figures are matplotlib PNGs embedded as base64 data URIs; the page
is plain HTML + CSS with no script and no external resource, so it opens offline and can be
attached to a paper draft. docs/report.md says what each figure shows and how it maps to the paper.

Sections, read from the top: the headline (:mod:`bench.report.headline`: models x values heatmap of
control-scaled scores and three sentences); per dataset the paper's tables and figures: UMAP by
source and by cell type (Fig. 4), marker genes on the UMAP (Fig. 4C-D), ROC curves of the
real-vs-synthetic classifier with fold bands (Fig. 3), correlation of DE genes (Fig. 5), rare-class
F1 against the training fraction (Fig. 7), training time (Table 1) and quality against training
time; then per dataset the rest of the metric suite (its tables, the per-protocol and scaled
tables, :mod:`bench.report.suite`'s figures: PRDC, memorisation, per-type heatmap, DE recovery, and
the plugins' declared figures); task status; provenance last, folded (readable tables, the raw
records behind a "raw" fold). Every table scrolls inside its own box.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report import headline, suite
from bench.report.figures import fig_augmentation, fig_corr, fig_roc
from bench.report.figures_cells import fig_markers, fig_umap
from bench.report.figures_training import fig_convergence, fig_timing, fig_tradeoff
from bench.report.tables import (
    LEGEND,
    PROTOCOLS_LEGEND,
    PROTOCOLS_TITLE,
    SCALED_TITLE,
    DatasetTables,
    Report,
    build,
    table_html,
)
from bench.report.view import RunView, declared_figures

DPI = 90

# the paper's figure sections in page order; each metric declares the title and caption of its own
# (Metric.figures, read through RunView); the last two draw on several metrics and are the report's
PAPER_SECTIONS = (
    "umap",
    "markers",
    "roc",
    "correlation",
    "augmentation",
    "timing",
    "tradeoff",
    "convergence",
)
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


def section_title(run: RunView, section: str) -> str:
    return REPORT_FIGURES[section][0] if section in REPORT_FIGURES else run.title(section)


CSS = resources.files("bench.report").joinpath("report.css").read_text(encoding="utf-8")


# -- small helpers -------------------------------------------------------------------------------
def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text)).strip("-").lower() or "x"


def png_data_uri(fig) -> str:
    """PNG of a matplotlib figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str, caption: str) -> str:
    return (
        f'<figure><img alt="{_esc(alt)}" src="{png_data_uri(fig)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


# -- page sections -------------------------------------------------------------------------------
def _box(table: str) -> str:
    """A table in its own horizontal scroll box (never past the page edge)."""
    return f'<div class="scroll">{table}</div>' if table else ""


def _kv_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return _box(f'<table class="prov"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _count(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else _esc(x if x is not None else "n/a")


def dataset_rows(runs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """One row per dataset the runs recorded (the latest run's record): source, cells (train / test),
    genes, split, sha256 of the input and the prepared data's hash."""
    out: dict[str, list[str]] = {}
    for run in runs:
        for name, info in ((run.get("provenance") or {}).get("datasets") or {}).items():
            info = info if isinstance(info, dict) else {}
            cells = info.get("n_cells_filtered")
            split = info.get("split") or ""
            if info.get("n_train") is not None:
                split = f"{split} ({_count(info.get('n_train'))} train / {_count(info.get('n_test'))} test)".strip()
            out[name] = [
                _esc(name),
                _esc(info.get("source") or info.get("path") or info.get("kind") or "n/a"),
                _count(cells),
                _count(info.get("n_genes")),
                _esc(split or "n/a"),
                f"<code>{_esc(info.get('sha256') or 'n/a')}</code>",
                f"<code>{_esc(info.get('hash') or 'n/a')}</code>",
            ]
    return out


def run_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """One row per run: id, started, command, commit, profile, models, seeds, versions, hardware."""
    rows = []
    for run in runs:
        prov, spec = run.get("provenance") or {}, run.get("spec") or {}
        git, host, gpu = prov.get("git") or {}, prov.get("host") or {}, prov.get("gpu") or {}
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.get("created") or 0))
        versions = [f"python {prov.get('python', '?')}"] + [
            f"{k} {v}" for k, v in (prov.get("packages") or {}).items()
        ]
        hardware = f"{host.get('name')}: {host.get('platform')}, {host.get('cpus')} CPUs" + (
            f", Slurm job {host['slurm_job']}" if host.get("slurm_job") else ""
        )
        hardware += "; GPU: " + (", ".join(gpu.get("gpus") or []) or "none")
        hardware += f" (CUDA {gpu['cuda']})" if gpu.get("cuda") else ""
        rows.append(
            [
                _esc(run.get("run_id")),
                _esc(prov.get("time") or created),
                f"<code>{_esc(prov.get('command', ''))}</code>",
                _esc(f"{git.get('commit')}{' (dirty working tree)' if git.get('dirty') else ''}"),
                _esc(spec.get("profile", "")),
                _esc(", ".join(map(str, spec.get("models") or []))),
                _esc(", ".join(map(str, spec.get("seeds") or []))),
                _esc(", ".join(versions)),
                _esc(hardware),
            ]
        )
    return rows


def _code_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for run in runs:
        code = (run.get("provenance") or {}).get("code") or {}
        for name, v in (code.get("generators") or {}).items():
            rows.append(
                [
                    _esc(run.get("run_id")),
                    _esc(name),
                    _esc(
                        f"{v.get('distribution') or 'not installed'} {v.get('version') or ''}"
                        f"{' (editable)' if v.get('editable') else ''}"
                    ),
                    _esc(f"{v.get('code_hash')} ({v.get('files')} files)"),
                ]
            )
        if code.get("scoring"):
            rows.append([_esc(run.get("run_id")), "scoring code", "", _esc(code["scoring"])])
    return rows


def _provenance_html(runs: list[dict[str, Any]]) -> str:
    """Readable tables (datasets, runs, code versions); each run's raw record only behind a "raw" fold."""
    if not runs:
        return _note("this store records no run")
    parts = ["<h3>datasets</h3>"]
    ds = dataset_rows(runs)
    parts.append(
        _kv_table(
            ["dataset", "source", "cells", "genes", "split", "input sha256", "prepared hash"],
            list(ds.values()),
        )
        if ds
        else _note("no dataset record")
    )
    parts.append("<h3>runs</h3>")
    header = ["run", "started", "command", "commit", "profile", "models", "seeds", "versions", "hardware"]
    parts.append(_kv_table(header, run_rows(runs)))
    code = _code_rows(runs)
    if code:
        parts.append("<h3>code versions (the task keys hold them)</h3>")
        parts.append(_kv_table(["run", "generator", "distribution", "code hash"], code))
    merged = [r for r in runs if (r.get("provenance") or {}).get("merged_from")]
    for r in merged:
        parts.append(_note(f"run {r.get('run_id')} merged from {r['provenance']['merged_from']}"))
    raw = "".join(
        f"<h4>run {_esc(run.get('run_id'))}</h4><pre>"
        f"{_esc(json.dumps({'spec': run.get('spec'), 'provenance': run.get('provenance')}, indent=1, default=str))}</pre>"
        for run in runs
    )
    parts.append(f"<details><summary>raw</summary>{raw}</details>")
    return "".join(parts)


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


def _suite_html(run, dataset: str, summary: pd.DataFrame) -> str:
    """The four figure sections of one dataset (h3 ids ``<section>-<dataset slug>``)."""
    slug = _slug(dataset)
    parts: list[str] = []
    for sec in suite.SECTIONS:
        title = run.title(sec)
        parts.append(f'<h3 id="{sec}-{slug}">{_esc(title)}</h3>')
        seed, keys, fig = None, None, None
        if sec == "prdc":
            k = [o.get("k") for o in run.options("prdc", run.tasks[run.tasks.dataset == dataset].key)]
            fig = suite.fig_prdc(summary, dataset, k=k[0] if len(k) == 1 else "varied")
        else:
            required = {
                "memorisation": "generated_distances",
                "per_type": "types",
                "de_recovery": "real_lfc",
            }[sec]
            seed, keys = run.figure_tasks(dataset, sec, required)
            if keys:
                fig = {
                    "memorisation": suite.fig_memorisation,
                    "per_type": suite.fig_per_type,
                    "de_recovery": suite.fig_de_recovery,
                }[sec](run, keys, dataset)
        if fig is None:
            parts.append(_note(suite.MISSING[sec]))
        else:
            caption = run.caption(sec, dataset, None if keys is None else keys.values(), seed)
            parts.append(_img(fig, f"{dataset} {title}", _esc(caption)))
    return "".join(parts)


def _dataset_html(run: RunView, dataset: str, summary: pd.DataFrame, tables: DatasetTables) -> str:
    """The paper's figures and tables of one dataset."""
    slug = _slug(dataset)
    parts = [f'<section id="ds-{slug}"><h2>{_esc(dataset)}: the paper\'s figures and tables</h2>']
    parts.append(_paper_tables_html(dataset, tables))

    def head(sec: str) -> str:
        return f'<h3 id="{sec}-{slug}">{_esc(section_title(run, sec))}</h3>'

    seed, keys = run.figure_tasks(dataset, "embedding", "real_umap")
    arts = {m: run.artifacts(k, "embedding") for m, k in keys.items()}
    for sec in ("umap", "markers"):
        parts.append(head(sec))
        if not arts:
            parts.append(_note("no embedding artifacts: the run did not include the 'embedding' metric"))
            continue
        if sec == "markers" and not len(next(iter(arts.values()))["marker_genes"]):
            parts.append(_note("no marker genes were found for this dataset"))
            continue
        fig = fig_umap(arts, dataset) if sec == "umap" else fig_markers(arts, dataset)
        caption = run.caption(sec, dataset, keys.values(), seed)
        parts.append(_img(fig, f"{dataset} {section_title(run, sec)}", _esc(caption)))

    parts.append(head("roc"))
    fig = fig_roc(run, dataset, summary)
    caption = run.caption("roc", dataset, run.main_tasks(dataset).key)
    parts.append(_img(fig, f"{dataset} ROC", _esc(caption)) if fig else _note("no ROC curves stored (auc)"))

    parts.append(head("correlation"))
    cseed, ckeys = run.figure_tasks(dataset, "correlation_discrepancy", "real_corr")
    if ckeys:
        caption = run.caption("correlation", dataset, ckeys.values(), cseed)
        parts.append(_img(fig_corr(run, ckeys, dataset), f"{dataset} correlation", _esc(caption)))
    else:
        parts.append(_note("no correlation matrices stored (correlation_discrepancy)"))

    for sec, fn in (
        ("augmentation", lambda: fig_augmentation(run, dataset)),
        ("timing", lambda: fig_timing(summary, dataset)),
        ("tradeoff", lambda: fig_tradeoff(summary, dataset)),
        ("convergence", lambda: fig_convergence(run, dataset)),
    ):
        parts.append(head(sec))
        fig = fn()
        if fig is None:
            what = {
                "augmentation": "no augmentation experiment in this run (conditional models only)",
                "timing": "no timing values in this run",
                "tradeoff": "needs train_seconds and a quality value (auc, mmd or cd)",
                "convergence": "no training snapshots (only iteratively trained models report them)",
            }[sec]
            parts.append(_note(what))
        else:
            caption = REPORT_FIGURES[sec][1] if sec in REPORT_FIGURES else run.caption(sec, dataset)
            parts.append(_img(fig, f"{dataset} {sec}", _esc(caption)))
    parts.append("</section>")
    return "".join(parts)


def _rest_html(run: RunView, dataset: str, summary: pd.DataFrame, tables: DatasetTables) -> str:
    """The rest of the metric suite for one dataset: its tables, then its figures and the plugins'."""
    slug = _slug(dataset)
    return (
        f'<section id="suite-{slug}"><h2>{_esc(dataset)}: the rest of the metric suite</h2>'
        f"{_suite_tables_html(dataset, tables)}{_suite_html(run, dataset, summary)}"
        f"{_declared_html(run, dataset)}</section>"
    )


def _declared_html(run: RunView, dataset: str) -> str:
    """The sections the metrics declare with a ``draw`` callable (FigureSpec.draw; a plugin's own
    figures), after the report's own, in the order the metrics declare them."""
    slug = _slug(dataset)
    own = {*PAPER_SECTIONS, *suite.SECTIONS}
    parts: list[str] = []
    for sec, (metric, spec) in declared_figures().items():
        if sec in own or spec.draw is None:
            continue
        parts.append(f'<h3 id="{_esc(sec)}-{slug}">{_esc(spec.title)}</h3>')
        try:
            fig = spec.draw(run, dataset)
        except Exception as exc:  # a plugin's drawing must not take the report down
            parts.append(
                _note(f"metric {metric.name} could not draw this figure: {type(exc).__name__}: {exc}")
            )
            continue
        if fig is None:
            parts.append(_note(f"nothing to draw for {dataset} (metric {metric.name})"))
        else:
            parts.append(_img(fig, f"{dataset} {spec.title}", _esc(run.caption(sec, dataset))))
    return "".join(parts)


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
        parts.append(headline.to_html(headline.build(inputs, d)))
    parts.append("</section>")
    return "".join(parts)


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
        f"<header><h1>{_esc(title)}</h1><p>{_esc(str(store.run_dir))} — generated "
        f"{_esc(time.strftime('%Y-%m-%d %H:%M:%S'))}; figures follow the ACTIVA paper (Heydari et al.)</p></header>",
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
        body.append(_rest_html(run, d, summary, report.datasets[d]))
    body.append(f'<section id="tasks"><h2>Tasks</h2>{_tasks_html(run)}</section>')
    body.append(
        '<section id="provenance"><details><summary>Provenance: datasets, runs, code versions '
        f"(the command, commit, versions and hardware of each run)</summary>{_provenance_html(runs)}"
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
