"""The files ``bench report`` writes into a run dir: ``values.csv`` (long), ``summary.md`` and
``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.failures import is_transient, reason
from bench.report.protocol_tables import PROTOCOLS_LEGEND, PROTOCOLS_TITLE
from bench.report.render import md_table
from bench.report.summary import CELL, params_of
from bench.report.tables import LEGEND, SCALED_TITLE, Report


def _provenance_md(provenance: dict[str, Any]) -> list[str]:
    git = provenance.get("git", {})
    host = provenance.get("host", {})
    lines = [
        f"- command: `{provenance.get('command', '')}`",
        f"- commit: {git.get('commit')}{' (dirty)' if git.get('dirty') else ''}",
        f"- host: {host.get('name')} ({host.get('cpus')} CPUs"
        f"{', ' + host['cpu_model'] if host.get('cpu_model') else ''}); "
        f"GPU: {', '.join(provenance.get('gpu', {}).get('gpus') or []) or 'none'}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in provenance.get("packages", {}).items()),
    ]
    code = provenance.get("code") or {}
    for name, v in (code.get("generators") or {}).items():
        lines.append(
            f"- generator {name}: {v.get('distribution') or 'not installed'} {v.get('version') or ''}"
            f"{' (editable)' if v.get('editable') else ''}, code {v.get('code_hash')}"
        )
    if code.get("scoring"):
        lines.append(f"- scoring code: {code['scoring']}")
    return [*lines, ""]


def runs_covered(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What each run of a store recorded, in short (summary.json's ``runs``, the site's index)."""
    out = []
    for run in runs:
        prov, spec = run.get("provenance") or {}, run.get("spec") or {}
        host, gpu = prov.get("host") or {}, prov.get("gpu") or {}
        out.append(
            {
                "run_id": run.get("run_id"),
                "time": prov.get("time") or run.get("created"),
                "command": prov.get("command"),
                "commit": (prov.get("git") or {}).get("commit"),
                "dirty": (prov.get("git") or {}).get("dirty"),
                "profile": spec.get("profile"),
                "protocols": spec.get("protocols"),
                "models": spec.get("models"),
                "datasets": spec.get("datasets"),
                "seeds": spec.get("seeds"),
                "machine": {
                    "host": host.get("name"),
                    "cpus": host.get("cpus"),
                    "cpu_model": host.get("cpu_model"),
                    "platform": host.get("platform"),
                    "gpus": gpu.get("gpus") or [],
                },
            }
        )
    return out


def coverage_line(report: Report, runs: list[dict[str, Any]]) -> str:
    """The first line of summary.md: which runs, models and datasets the files cover."""
    models = sorted(set(report.planned.model)) if report.planned is not None and len(report.planned) else []
    ids = [str(r.get("run_id")) for r in runs]
    return (
        f"Covers every task of the store: {len(runs)} run(s) ({', '.join(ids) or 'none'}); "
        f"datasets {', '.join(report.datasets) or 'none'}; models {', '.join(models) or 'none'}."
    )


def summary_doc(
    report: Report,
    provenance: dict[str, Any] | None = None,
    runs: list[dict[str, Any]] | None = None,
    profiles: list[str] | None = None,
) -> dict[str, Any]:
    """What summary.json holds (also what `bench site` reads from a store)."""
    planned = report.planned
    failures = []
    if planned is not None and not planned.empty:
        for r in planned[planned.status != "done"].itertuples():
            failures.append(
                {
                    "dataset": r.dataset,
                    "model": r.model,
                    "seed": int(r.seed),
                    "experiment": r.experiment,
                    "status": r.status,
                    "reason": reason(r.error) if r.status == "failed" else None,
                    "transient": is_transient(r.error) if r.status == "failed" else None,
                }
            )
    summary = report.summary
    records = summary.astype(object).where(summary.notna(), None).to_dict(orient="records")
    doc = {
        "covers": coverage_line(report, runs) if runs is not None else None,
        "runs": runs_covered(runs or []),
        "profiles": sorted(set(profiles or [])),
        "provenance": provenance,
        "metric_options": report.options,
        "summary": records,
        "failures": failures,
        "scaled": report.scaled.summary.replace({np.nan: None}).to_dict(orient="records"),
        "mean_scaled": report.scaled.means.replace({np.nan: None}).to_dict(orient="records"),
    }
    return doc


def write_files(
    report: Report,
    run_dir: str | Path,
    provenance: dict[str, Any] | None = None,
    runs: list[dict[str, Any]] | None = None,
    profiles: list[str] | None = None,
) -> list[Path]:
    """``values.csv`` (long: one row per task value, with its cell's n and n_planned and its params
    as JSON),
    ``summary.md`` and ``summary.json`` (cells with n, n_planned and status; failed tasks with
    their one-line reason; the options each metric ran with). ``report``: the whole store's
    (``bench.report.build(store)``), so a second `bench run` into a run dir never drops the first
    one's values; ``runs`` (the store's runs): summary.md's first line says what the files cover and
    summary.json lists them (``runs``); ``profiles``: the profiles of the values."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [run_dir / "values.csv", run_dir / "summary.md", run_dir / "summary.json"]
    summary = report.summary
    values = report.values.drop(columns=["task_key"], errors="ignore")
    values = values.merge(summary[[*CELL, "n", "n_planned"]], on=CELL, how="left")
    params = [json.dumps(p, sort_keys=True, default=str) for p in params_of(values)]
    values = values.drop(columns="params", errors="ignore").assign(params=params)  # the last column
    values.to_csv(paths[0], index=False)
    md = [coverage_line(report, runs) if runs is not None else "# scgenbench summary", ""]
    if runs is not None:
        md += ["# scgenbench summary", ""]
    if provenance:
        md += _provenance_md(provenance)
    for name, opts in report.options.items():
        md.append(f"- {name} options: {json.dumps(opts, default=str)}")
    if report.options:
        md.append("")
    for dataset, tables in report.datasets.items():
        md += [f"## {dataset}", "", LEGEND[0].upper() + LEGEND[1:] + ".", ""]
        md += [md_table(tables.main), ""]
        for title, df in tables.paper.items():
            md += [f"### {title}", "", md_table(df), ""]
        for group, df in tables.suite.items():
            md += [f"### {group}", "", md_table(df), ""]
        for title, df in tables.protocols.items():
            md += [f"### {title}", "", md_table(df), ""]
            if title == PROTOCOLS_TITLE:
                md += [PROTOCOLS_LEGEND + ".", ""]
        if not tables.scaled.empty:
            md += [f"### {SCALED_TITLE}", "", md_table(tables.scaled), ""]
    paths[1].write_text("\n".join(md))
    doc = summary_doc(report, provenance, runs, profiles)
    paths[2].write_text(json.dumps(doc, indent=1, default=str))
    return paths
