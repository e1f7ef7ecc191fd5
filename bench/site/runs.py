"""The runs a site is built from (:class:`SiteRun`: a run dir with a store, or a folder with the
summary.json of a committed reference run) and the values compared across them (:func:`cells`,
:func:`headline_values`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.api.errors import UserError
from bench.report import headline
from bench.report.summary import fmt, order_models


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


def unique_names(runs: list[SiteRun]) -> None:
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{r.path.parent.name}-{r.path.name}"


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
