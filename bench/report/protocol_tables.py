"""The report's tables by evaluation protocol: the values a run scored in more than one protocol side
by side, and the main experiment's table in each protocol other than genes."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.api.metric import arrow
from bench.failures import failure_notes
from bench.registry import available
from bench.report.main_table import best_models, main_table
from bench.report.summary import cell_text, direction_of, directions, order_models


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
            best |= {(m, col) for m in best_models(column, direction, target)}
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
