"""`bench site RUN_DIR... -o DIR`: a static results site across runs.

Plain HTML files with the report's CSS inlined, no script and no external resource, relative links
only, so the site works opened from disk and served by any static host:

* ``index.html``: one row per run (dataset, profile, protocols, models, seeds, date, commit,
  machine), with links to the run's page and its full report; links to the dataset and model pages;
* ``datasets/<dataset>.html``: every model across the runs that hold the dataset: the mean scaled
  score and each value the metrics declare for the headline (``Metric.headline``), mean ± sd (n);
* ``models/<model>.html``: one model's scores across datasets, runs, profiles and protocols;
* ``run/<name>/index.html``: the run's headline (bench.report.headline) and its files; the full
  report is copied (a store's is generated) next to it, or linked where it lies (``--link``).

A run is a run dir with a store (``bench.sqlite``: everything is read from it) or, for the committed
reference runs whose stores are not committed, a folder with the ``summary.json`` that
``bench run`` / ``bench report`` wrote. The pages hold no date of their own, so a site rebuilt from
the same runs is byte-identical (the test that the published ``docs/site/`` is up to date relies on
it).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.api.errors import UserError
from bench.config import CONTROLS
from bench.report import headline
from bench.report.summary import fmt, order_models

CSS = """
.site-links a { margin-right: 12px; }
td.num { white-space: nowrap; }
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-").lower() or "x"


@dataclass
class SiteRun:
    """One input run: its ``name`` (unique in the site), folder, summary document (summary.json's
    shape) and the full report to copy or link (None: there is none)."""

    name: str
    path: Path
    doc: dict[str, Any]
    report: Path | None
    files: list[Path] = field(default_factory=list)
    generated: str | None = None  # the generated report's HTML (a store's), written into the site
    report_href: str | None = None  # where the run's page links its full report (set by build_site)

    @property
    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(self.doc.get("summary") or [])

    @property
    def datasets(self) -> list[str]:
        s = self.summary
        return sorted(set(s.dataset)) if len(s) else []

    @property
    def models(self) -> list[str]:
        s = self.summary
        return order_models(sorted(set(s.model))) if len(s) else []

    @property
    def provenance(self) -> dict[str, Any]:
        return self.doc.get("provenance") or {}

    @property
    def profiles(self) -> list[str]:
        return profiles_of(self.doc, self.path)

    @property
    def protocols(self) -> list[str]:
        return headline._protocols(self.summary)


def profiles_of(doc: dict[str, Any], folder: Path) -> list[str]:
    """The profiles of a run's values: as recorded (summary.json's ``profiles``, its ``runs``), else
    read from the command (``--profile``), else from the folder's ``config.toml``, else ``quick``
    (the default) for a command without ``--config``."""
    if doc.get("profiles"):
        return list(doc["profiles"])
    found = sorted({r["profile"] for r in doc.get("runs") or [] if r.get("profile")})
    if found:
        return found
    command = str((doc.get("provenance") or {}).get("command") or "")
    m = re.search(r"--profile[ =](\w+)", command)
    if m:
        return [m.group(1)]
    config = folder / "config.toml"
    if config.is_file():
        m = re.search(r'^\s*profile\s*=\s*"(\w+)"', config.read_text(encoding="utf-8"), re.M)
        if m:
            return [m.group(1)]
    if command and "--config" not in command:
        return ["quick"]
    return []


def load_run(path: Path) -> SiteRun:
    """A run from a run dir with a store, or a folder (or the file itself) with a summary.json."""
    path = Path(path)
    folder = path.parent if path.name == "summary.json" else path
    if (folder / "bench.sqlite").is_file():
        from bench import report as rpt
        from bench.report.files import summary_doc
        from bench.report.html import profiles_of as store_profiles
        from bench.report.html import render
        from bench.store import Store

        with Store(folder, create=False) as store:
            report = rpt.build(store)
            runs = store.runs()
            prov = runs[-1]["provenance"] if runs else None
            doc = summary_doc(report, prov, runs, store_profiles(store, report.planned))
            page = render(store, report)
        return SiteRun(folder.name, folder, doc, None, generated=page)
    if (folder / "summary.json").is_file():
        doc = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        report = folder / "report.html"
        files = [folder / f for f in ("summary.md", "summary.json", "values.csv") if (folder / f).is_file()]
        return SiteRun(folder.name, folder, doc, report if report.is_file() else None, files)
    raise UserError(
        f"{path}: neither a run dir with a store (bench.sqlite) nor a folder with a summary.json",
        "pass run dirs of `bench run`, or folders holding their summary.json",
    )


def _unique_names(runs: list[SiteRun]) -> None:
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{r.path.parent.name}-{r.path.name}"


# -- page frame ----------------------------------------------------------------------------------
def _page(title: str, body: str, depth: int) -> str:
    from bench.report.html import CSS as REPORT_CSS

    up = "../" * depth
    nav = f'<nav><a href="{up}index.html">all runs</a></nav>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{REPORT_CSS}{CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1><p>scgenbench results site: built from the runs' stores and "
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


# -- the values compared across runs -------------------------------------------------------------
def headline_values(summaries: list[pd.DataFrame]) -> list[str]:
    """The value names the metrics declare for the headline (``Metric.headline``; a name ending in
    ``@`` stands for every value with that prefix), in declaration order, that some run has."""
    from bench.registry import available

    present = sorted({m for s in summaries if len(s) for m in s.metric})
    out: list[str] = []
    for metric in available("metrics").values():
        for name in metric.headline:
            if name.endswith("@"):
                tagged = [m for m in present if m.startswith(name)]
                out += sorted(
                    tagged, key=lambda m: float(m.split("@", 1)[1]) if _isfloat(m.split("@", 1)[1]) else 0
                )
            elif name in present:
                out.append(name)
    return list(dict.fromkeys(out))


def _label(value: str) -> str:
    """A value's name with its direction: ``auc (→0.5)``, ``mmd ↓``, ``mean scaled ↑``."""
    from bench.api.metric import arrow
    from bench.report.summary import direction_of

    if value == "mean scaled":
        return "mean scaled ↑"
    direction, target = direction_of(value)
    return f"{value} {arrow(direction, target)}" if direction else value


def _isfloat(x: str) -> bool:
    try:
        float(x)
    except ValueError:
        return False
    return True


def _protocol(experiment: str, params: Any) -> str:
    from bench.report.protocol_tables import protocol_of

    p = protocol_of(str(experiment), params if isinstance(params, dict) else {})
    if p:
        return p
    return str(experiment).split("@", 1)[1] if "@" in str(experiment) else "genes"


def cells(run: SiteRun) -> dict[tuple[str, str, str, str], str]:
    """{(dataset, model, protocol, value): 'mean ± sd (n = k)'} of a run, the mean scaled score as
    value ``mean scaled`` (genes protocol)."""
    out = {}
    s = run.summary
    for r in s.to_dict(orient="records"):
        key = (r["dataset"], r["model"], _protocol(r["experiment"], r.get("params")), r["metric"])
        out[key] = _cell(r.get("mean"), r.get("sd"), r.get("n"), r.get("status"))
    for r in run.doc.get("mean_scaled") or []:
        out[(r["dataset"], r["model"], "genes", "mean scaled")] = _cell(
            r.get("mean"), r.get("sd"), r.get("n")
        )
    return out


def _cell(mean, sd, n, status=None) -> str:
    n = int(n or 0)
    mean = float("nan") if mean is None else float(mean)
    sd = float("nan") if sd is None else float(sd)
    text = fmt(mean, sd, n, None, status)
    return text if text in ("n/a", "failed") else f"{text} (n = {n})"


# -- pages ---------------------------------------------------------------------------------------
def _index(runs: list[SiteRun], datasets: list[str], models: list[str]) -> str:
    rows = []
    for r in runs:
        prov = r.provenance
        commit = ((prov.get("git") or {}).get("commit") or "")[:10] or "not recorded"
        date = str(prov.get("time") or "not recorded")[:19].replace("T", " ")
        report = (
            f' · <a href="run/{_esc(r.name)}/{_esc(_report_href(r))}">full report</a>'
            if _report_href(r)
            else ""
        )
        rows.append(
            [
                f'<a href="run/{_esc(r.name)}/index.html">{_esc(r.name)}</a>{report}',
                ", ".join(f'<a href="datasets/{_slug(d)}.html">{_esc(d)}</a>' for d in r.datasets),
                _esc(", ".join(r.profiles) or "not recorded"),
                _esc(", ".join(r.protocols) or "genes"),
                ", ".join(f'<a href="models/{_slug(m)}.html">{_esc(m)}</a>' for m in r.models),
                _esc(_seeds(r)),
                _esc(date),
                f"<code>{_esc(commit)}</code>",
                _esc(_machine(prov, r.doc.get("runs") or [])),
            ]
        )
    header = ["run", "dataset", "profile", "protocols", "models", "seeds", "date", "commit", "machine"]
    body = [f"<section><h2>Runs</h2>{_table(header, rows, num_from=99)}</section>"]
    body.append(
        '<section><h2>Datasets</h2><p class="site-links">'
        + "".join(f'<a href="datasets/{_slug(d)}.html">{_esc(d)}</a>' for d in datasets)
        + '</p><h2>Models</h2><p class="site-links">'
        + "".join(
            f'<a href="models/{_slug(m)}.html">{_esc(m)}{" (control)" if m in CONTROLS else ""}</a>'
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


def _dataset_page(dataset: str, runs: list[SiteRun], all_cells: dict[str, dict], values: list[str]) -> str:
    here = [r for r in runs if dataset in r.datasets]
    cols = _run_columns(here, dataset, all_cells)
    models = order_models(sorted({m for r in here for m in r.models}))
    header = ["model"] + [
        f'<a href="../run/{_esc(r.name)}/index.html">{_esc(r.name)}</a><br>'
        f"{_esc(', '.join(r.profiles) or 'profile not recorded')} · {_esc(p)}"
        for r, p in cols
    ]
    parts = [
        f"<section><h2>{_esc(dataset)}: every model across {len(here)} run(s)</h2>"
        '<p class="caption">Mean ± sd over seeds (n: seeds with a value) per run and evaluation protocol; the mean '
        "scaled score is the run's (real control = 1, shuffled control = 0; genes protocol). Runs differ in "
        "profile, budget and seeds: compare a model across columns with that in mind.</p>"
    ]
    for value in ["mean scaled", *values]:
        rows = []
        for m in models:
            row = [all_cells[r.name].get((dataset, m, p, value), "n/a") for r, p in cols]
            if any(c != "n/a" for c in row):
                rows.append([f'<a href="../models/{_slug(m)}.html">{_esc(m)}</a>', *map(_esc, row)])
        if rows:
            parts.append(f"<h3>{_esc(_label(value))}</h3>{_table(header, rows)}")
    parts.append("</section>")
    return _page(f"scgenbench: {dataset}", "".join(parts), 1)


def _model_page(model: str, runs: list[SiteRun], all_cells: dict[str, dict], values: list[str]) -> str:
    keys = sorted(
        {(k[0], r.name, k[2]) for r in runs for k in all_cells[r.name] if k[1] == model},
        key=lambda k: (k[0], k[1], k[2] != "genes", k[2]),
    )
    by_name = {r.name: r for r in runs}
    cols = [v for v in ["mean scaled", *values] if any((d, model, p, v) in all_cells[n] for d, n, p in keys)]
    rows = [
        [
            f'<a href="../datasets/{_slug(d)}.html">{_esc(d)}</a>',
            f'<a href="../run/{_esc(n)}/index.html">{_esc(n)}</a>',
            _esc(", ".join(by_name[n].profiles) or "not recorded"),
            _esc(p),
            *(_esc(all_cells[n].get((d, model, p, v), "n/a")) for v in cols),
        ]
        for d, n, p in keys
    ]
    label = f"{model} (control)" if model in CONTROLS else model
    cols = [_label(c) for c in cols]
    body = (
        f"<section><h2>{_esc(label)}: scores across datasets, runs, profiles and protocols</h2>"
        '<p class="caption">Mean ± sd over seeds (n: seeds with a value); the mean scaled score is the run\'s '
        "(real control = 1, shuffled control = 0).</p>"
        + _table(["dataset", "run", "profile", "protocol", *map(_esc, cols)], rows, num_from=4)
        + "</section>"
    )
    return _page(f"scgenbench: {label}", body, 1)


def _report_href(run: SiteRun) -> str | None:
    return run.report_href


def _run_page(run: SiteRun, files: list[tuple[str, str]]) -> str:
    inputs = headline.from_summary_json(run.doc, run.profiles)
    prov = run.provenance
    meta = [
        ["command", f"<code>{_esc(prov.get('command') or 'not recorded')}</code>"],
        ["commit", f"<code>{_esc((prov.get('git') or {}).get('commit') or 'not recorded')}</code>"],
        ["date", _esc(prov.get("time") or "not recorded")],
        ["machine", _esc(_machine(prov, run.doc.get("runs") or []))],
        ["profile", _esc(", ".join(run.profiles) or "not recorded")],
        ["seeds", _esc(_seeds(run))],
    ]
    if run.doc.get("covers"):
        meta.append(["covers", _esc(run.doc["covers"])])
    links = "".join(f'<a href="{_esc(href)}">{_esc(label)}</a>' for label, href in files)
    parts = [
        f"<section><h2>Run {_esc(run.name)}</h2>{_table(['', ''], meta, num_from=99)}"
        f'<p class="site-links">{links or "no report or summary files"}</p></section>'
    ]
    for d in run.datasets:
        parts.append(
            f'<section><h2>Headline: <a href="../../datasets/{_slug(d)}.html">{_esc(d)}</a></h2>'
            f"{headline.to_html(headline.build(inputs, d))}</section>"
        )
    return _page(f"scgenbench run: {run.name}", "".join(parts), 2)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def build_site(paths: list[str | Path], out: str | Path, *, link: bool = False) -> list[Path]:
    """Write the site for ``paths`` (run dirs or folders with a summary.json) into ``out``; ``link``:
    link each run's full report and files where they lie (relative paths) instead of copying them.
    Returns the pages written."""
    out = Path(out)
    runs = sorted((load_run(Path(p)) for p in paths), key=lambda r: str(r.path))
    if not runs:
        raise UserError("bench site: no run given", "pass one or more run dirs: bench site RUN_DIR... -o DIR")
    _unique_names(runs)
    for sub in ("run", "datasets", "models"):
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)
    all_cells = {r.name: cells(r) for r in runs}
    values = headline_values([r.summary for r in runs])
    datasets = sorted({d for r in runs for d in r.datasets})
    models = order_models(sorted({m for r in runs for m in r.models}))
    written = [_write(out / "index.html", _index(runs, datasets, models))]
    for d in datasets:
        written.append(
            _write(out / "datasets" / f"{_slug(d)}.html", _dataset_page(d, runs, all_cells, values))
        )
    for m in models:
        written.append(_write(out / "models" / f"{_slug(m)}.html", _model_page(m, runs, all_cells, values)))
    for r in runs:
        folder = out / "run" / r.name
        folder.mkdir(parents=True, exist_ok=True)
        files: list[tuple[str, str]] = []
        if r.generated is not None:
            _write(folder / "report.html", r.generated)
            files.append(("full report", "report.html"))
            r.report_href = "report.html"
        for src in [*([r.report] if r.report else []), *r.files]:
            if link:
                href = Path(os.path.relpath(src.resolve(), folder.resolve())).as_posix()
            else:
                shutil.copyfile(src, folder / src.name)
                href = src.name
            files.append(("full report" if src.name == "report.html" else src.name, href))
            if src.name == "report.html":
                r.report_href = href
        written.append(_write(folder / "index.html", _run_page(r, files)))
    # the index links the full reports: rewrite it now that their places are known
    _write(out / "index.html", _index(runs, datasets, models))
    return written


__all__ = ["SiteRun", "build_site", "cells", "headline_values", "load_run", "profiles_of"]
