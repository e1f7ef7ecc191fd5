"""The pages of the results site: the frame (the report's CSS inlined, relative links only), the
index of runs, one page per dataset, per model and per run. Each is a string of HTML."""

from __future__ import annotations

import html
from typing import Any

from bench.config import CONTROLS
from bench.report import headline, headline_html
from bench.report.summary import order_models
from bench.site.runs import SiteRun

CSS = """
.site-links a { margin-right: 12px; }
td.num { white-space: nowrap; }
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-").lower() or "x"


def _page(title: str, body: str, depth: int) -> str:
    from bench.report.html import CSS as REPORT_CSS

    up = "../" * depth
    nav = f'<nav><a href="{up}index.html">all runs</a></nav>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{REPORT_CSS}{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>scgenbench results site: built from the runs' stores and "
        f"summary files by <code>bench site</code></p></header>{nav}<main>{body}</main></body></html>\n"
    )


def _table(header: list[str], rows: list[list[str]], num_from: int = 1) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    head = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"num" if i >= num_from else "idx"}">{c}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f'<div class="scroll"><table>{head}<tbody>{body}</tbody></table></div>'


def _machine(prov: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    host, gpu = prov.get("host") or {}, prov.get("gpu") or {}
    if not host and runs:
        m = runs[-1].get("machine") or {}
        host, gpu = {"name": m.get("host"), "cpus": m.get("cpus")}, {"gpus": m.get("gpus")}
    if not host:
        return "not recorded"
    return f"{host.get('name')}, {host.get('cpus')} CPUs, GPU: {', '.join(gpu.get('gpus') or []) or 'none'}"


def _seeds(run: SiteRun) -> str:
    seeds = sorted({s for r in run.doc.get("runs") or [] for s in r.get("seeds") or []})
    if seeds:
        return ", ".join(map(str, seeds))
    s = run.summary
    n = int(s.n_planned.max()) if len(s) and "n_planned" in s else 0
    return f"{n} per value (ids not recorded)" if n else "not recorded"


def _label(value: str) -> str:
    """A value's name with its direction: ``auc (→0.5)``, ``mmd ↓``, ``mean scaled ↑``."""
    from bench.api.metric import arrow
    from bench.report.summary import direction_of

    if value == "mean scaled":
        return "mean scaled ↑"
    direction, target = direction_of(value)
    return f"{value} {arrow(direction, target)}" if direction else value


def index_page(runs: list[SiteRun], datasets: list[str], models: list[str]) -> str:
    rows = []
    for r in runs:
        prov = r.provenance
        commit = ((prov.get("git") or {}).get("commit") or "")[:10] or "not recorded"
        date = str(prov.get("time") or "not recorded")[:19].replace("T", " ")
        report = (
            f' · <a href="run/{esc(r.name)}/{esc(r.report_href)}">full report</a>' if r.report_href else ""
        )
        rows.append(
            [
                f'<a href="run/{esc(r.name)}/index.html">{esc(r.name)}</a>{report}',
                ", ".join(f'<a href="datasets/{slug(d)}.html">{esc(d)}</a>' for d in r.datasets),
                esc(", ".join(r.profiles) or "not recorded"),
                esc(", ".join(r.protocols) or "genes"),
                ", ".join(f'<a href="models/{slug(m)}.html">{esc(m)}</a>' for m in r.models),
                esc(_seeds(r)),
                esc(date),
                f"<code>{esc(commit)}</code>",
                esc(_machine(prov, r.doc.get("runs") or [])),
            ]
        )
    header = ["run", "dataset", "profile", "protocols", "models", "seeds", "date", "commit", "machine"]
    body = [f"<section><h2>Runs</h2>{_table(header, rows, num_from=99)}</section>"]
    body.append(
        '<section><h2>Datasets</h2><p class="site-links">'
        + "".join(f'<a href="datasets/{slug(d)}.html">{esc(d)}</a>' for d in datasets)
        + '</p><h2>Models</h2><p class="site-links">'
        + "".join(
            f'<a href="models/{slug(m)}.html">{esc(m)}{" (control)" if m in CONTROLS else ""}</a>'
            for m in models
        )
        + "</p></section>"
    )
    return _page("scgenbench results", "".join(body), 0)


def _run_columns(runs: list[SiteRun], dataset: str, all_cells: dict[str, dict]) -> list[tuple[SiteRun, str]]:
    cols = []
    for r in runs:
        protos = sorted({k[2] for k in all_cells[r.name] if k[0] == dataset}, key=lambda p: (p != "genes", p))
        cols += [(r, p) for p in protos]
    return cols


def dataset_page(dataset: str, runs: list[SiteRun], all_cells: dict[str, dict], values: list[str]) -> str:
    here = [r for r in runs if dataset in r.datasets]
    cols = _run_columns(here, dataset, all_cells)
    models = order_models(sorted({m for r in here for m in r.models}))
    header = ["model"] + [
        f'<a href="../run/{esc(r.name)}/index.html">{esc(r.name)}</a><br>'
        f"{esc(', '.join(r.profiles) or 'profile not recorded')} · {esc(p)}"
        for r, p in cols
    ]
    parts = [
        f"<section><h2>{esc(dataset)}: every model across {len(here)} run(s)</h2>"
        '<p class="caption">Mean ± sd over seeds (n: seeds with a value) per run and evaluation protocol; the mean '
        "scaled score is the run's (real control = 1, shuffled control = 0; genes protocol). Runs differ in "
        "profile, budget and seeds: compare a model across columns with that in mind.</p>"
    ]
    for value in ["mean scaled", *values]:
        rows = []
        for m in models:
            row = [all_cells[r.name].get((dataset, m, p, value), "n/a") for r, p in cols]
            if any(c != "n/a" for c in row):
                rows.append([f'<a href="../models/{slug(m)}.html">{esc(m)}</a>', *map(esc, row)])
        if rows:
            parts.append(f"<h3>{esc(_label(value))}</h3>{_table(header, rows)}")
    parts.append("</section>")
    return _page(f"scgenbench: {dataset}", "".join(parts), 1)


def model_page(model: str, runs: list[SiteRun], all_cells: dict[str, dict], values: list[str]) -> str:
    keys = sorted(
        {(k[0], r.name, k[2]) for r in runs for k in all_cells[r.name] if k[1] == model},
        key=lambda k: (k[0], k[1], k[2] != "genes", k[2]),
    )
    by_name = {r.name: r for r in runs}
    cols = [v for v in ["mean scaled", *values] if any((d, model, p, v) in all_cells[n] for d, n, p in keys)]
    rows = [
        [
            f'<a href="../datasets/{slug(d)}.html">{esc(d)}</a>',
            f'<a href="../run/{esc(n)}/index.html">{esc(n)}</a>',
            esc(", ".join(by_name[n].profiles) or "not recorded"),
            esc(p),
            *(esc(all_cells[n].get((d, model, p, v), "n/a")) for v in cols),
        ]
        for d, n, p in keys
    ]
    label = f"{model} (control)" if model in CONTROLS else model
    cols = [_label(c) for c in cols]
    body = (
        f"<section><h2>{esc(label)}: scores across datasets, runs, profiles and protocols</h2>"
        '<p class="caption">Mean ± sd over seeds (n: seeds with a value); the mean scaled score is the run\'s '
        "(real control = 1, shuffled control = 0).</p>"
        + _table(["dataset", "run", "profile", "protocol", *map(esc, cols)], rows, num_from=4)
        + "</section>"
    )
    return _page(f"scgenbench: {label}", body, 1)


def run_page(run: SiteRun, files: list[tuple[str, str]]) -> str:
    inputs = headline.from_summary_json(run.doc, run.profiles)
    prov = run.provenance
    meta = [
        ["command", f"<code>{esc(prov.get('command') or 'not recorded')}</code>"],
        ["commit", f"<code>{esc((prov.get('git') or {}).get('commit') or 'not recorded')}</code>"],
        ["date", esc(prov.get("time") or "not recorded")],
        ["machine", esc(_machine(prov, run.doc.get("runs") or []))],
        ["profile", esc(", ".join(run.profiles) or "not recorded")],
        ["seeds", esc(_seeds(run))],
    ]
    if run.doc.get("covers"):
        meta.append(["covers", esc(run.doc["covers"])])
    links = "".join(f'<a href="{esc(href)}">{esc(label)}</a>' for label, href in files)
    parts = [
        f"<section><h2>Run {esc(run.name)}</h2>{_table(['', ''], meta, num_from=99)}"
        f'<p class="site-links">{links or "no report or summary files"}</p></section>'
    ]
    for d in run.datasets:
        parts.append(
            f'<section><h2>Headline: <a href="../../datasets/{slug(d)}.html">{esc(d)}</a></h2>'
            f"{headline_html.to_html(headline.build(inputs, d))}</section>"
        )
    return _page(f"scgenbench run: {run.name}", "".join(parts), 2)
