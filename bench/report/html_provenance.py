"""The HTML report's provenance section: readable tables of the datasets, the runs (command,
commit, versions, hardware) and the code versions the task keys hold; each run's raw record behind a
"raw" fold."""

from __future__ import annotations

import json
import time
from typing import Any

from bench.report.html_parts import esc as _esc
from bench.report.html_parts import kv_table as _kv_table
from bench.report.html_parts import note as _note


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


def provenance_html(runs: list[dict[str, Any]]) -> str:
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
