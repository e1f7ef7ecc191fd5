"""The headline of a report: models x values as a heatmap of control-scaled scores, and three
sentences generated from the values.

Rows are the models, best mean scaled score first, the controls last (`real` = 1, `shuffled` = 0 by
construction); columns are the scaled values (bench.report.scaling: the genes protocol's), grouped
by what their metric measures (``Metric.measures``, in the order of ``bench.api.metric.MEASURES``),
then the cost values (a ``cost`` metric's ``Metric.headline`` values; hardware measurements are
never scaled, so they show raw and uncoloured). Each cell shows the raw value's mean ± sd over seeds
and is coloured by its scaled score. The headline is built from plain tables (:class:`Inputs`): a
store's :class:`~bench.report.tables.Report` (:func:`from_report`) or a run's ``summary.json``
(:func:`from_summary_json`, what `bench site` reads from committed runs), so both say the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from bench.api.metric import MEASURES, arrow
from bench.config import CONTROLS
from bench.report.summary import cell_text, direction_of, fmt

COST = MEASURES[-1]
# a value "fails" for a model when its scaled score is below this: closer to the shuffled control
# (0) than to real cells (1)
FAIL_BELOW = 0.5


def value_groups() -> tuple[dict[str, str], dict[str, str]]:
    """({value name: group}, {cost value name: its headline label}) over the installed metrics;
    a name ending in ``@`` stands for every value with that prefix."""
    from bench.registry import available

    groups: dict[str, str] = {}
    cost: dict[str, str] = {}
    for metric in available("metrics").values():
        for name in metric.directions:
            groups.setdefault(name, metric.measured)
        if metric.measured == COST:
            cost.update(metric.headline)
    return groups, cost


def group_of(name: str, groups: dict[str, str]) -> str:
    if name in groups:
        return groups[name]
    if "@" in name:
        prefix = name.split("@", 1)[0] + "@"
        for declared, group in groups.items():
            if declared.startswith(prefix):
                return group
    return "other"


def _group_rank(group: str) -> tuple[int, str]:
    order = [g for g in MEASURES if g != COST]
    if group in order:
        return (order.index(group), group)
    return (len(order) + (2 if group == COST else 1), group)


@dataclass(frozen=True)
class Inputs:
    """What a headline reads, for one store or one summary.json: ``summary`` (raw cells: dataset,
    model, experiment, metric, mean, sd, n, n_planned, status), ``scaled`` (the scaled cells:
    dataset, model, experiment, metric, mean, sd, n), ``means`` (dataset, model, mean, sd, n),
    ``missing`` (tasks without values: dataset, model, seed, experiment, status), the ``profiles``
    and the evaluation ``protocols`` of the values."""

    summary: pd.DataFrame
    scaled: pd.DataFrame
    means: pd.DataFrame
    missing: pd.DataFrame
    profiles: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)


def _protocols(summary: pd.DataFrame) -> list[str]:
    from bench.report.protocol_tables import protocol_of, protocol_order

    if summary.empty:
        return []
    params = summary["params"] if "params" in summary else [{}] * len(summary)
    found = {
        protocol_of(e, p if isinstance(p, dict) else {})
        for e, p in zip(summary.experiment, params, strict=True)
    }
    found |= {e.split("@", 1)[1] for e in summary.experiment if "@" in str(e)}
    return protocol_order(p for p in found if p)


def from_report(report, profiles: list[str] | None = None) -> Inputs:
    """The headline's inputs from :func:`bench.report.build`'s Report."""
    planned = report.planned
    missing = (
        planned[planned.status != "done"][["dataset", "model", "seed", "experiment", "status"]]
        if planned is not None and not planned.empty
        else pd.DataFrame(columns=["dataset", "model", "seed", "experiment", "status"])
    )
    return Inputs(
        summary=report.summary,
        scaled=report.scaled.summary,
        means=report.scaled.means,
        missing=missing.reset_index(drop=True),
        profiles=sorted(set(profiles or [])),
        protocols=_protocols(report.summary),
    )


def from_summary_json(doc: dict[str, Any], profiles: list[str] | None = None) -> Inputs:
    """The headline's inputs from a run's ``summary.json`` (written by bench.report.files)."""
    cols = ["dataset", "model", "seed", "experiment", "status"]
    summary = pd.DataFrame(doc.get("summary") or [])
    if not summary.empty:
        summary["mean"] = summary["mean"].astype(float)
        summary["sd"] = summary["sd"].astype(float)
    scaled = pd.DataFrame(
        doc.get("scaled") or [], columns=["dataset", "model", "experiment", "metric", "mean", "sd", "n"]
    )
    scaled[["mean", "sd"]] = scaled[["mean", "sd"]].astype(float)
    means = pd.DataFrame(doc.get("mean_scaled") or [], columns=["dataset", "model", "mean", "sd", "n"])
    means[["mean", "sd"]] = means[["mean", "sd"]].astype(float)
    missing = pd.DataFrame([{c: f.get(c) for c in cols} for f in doc.get("failures") or []], columns=cols)
    return Inputs(
        summary=summary,
        scaled=scaled,
        means=means,
        missing=missing,
        profiles=sorted(set(profiles or doc.get("profiles") or [])),
        protocols=_protocols(summary),
    )


@dataclass(frozen=True)
class Column:
    experiment: str
    metric: str
    group: str
    label: str


@dataclass(frozen=True)
class Headline:
    """One dataset's headline: ``models`` in row order (controls last), ``columns``, per
    (model, column) the raw text and the scaled score (NaN: none), per model its mean scaled score
    (mean, sd, n), the note on protocol, profile and missing seeds, and the three ``sentences``."""

    dataset: str
    models: list[str]
    columns: list[Column]
    raw: dict[tuple[str, Column], str]
    scaled: dict[tuple[str, Column], float]
    means: dict[str, tuple[float, float, int]]
    cost: dict[tuple[str, Column], float]
    note: str
    sentences: list[str]


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _is_control(model: str) -> bool:
    return model in CONTROLS


def build(inputs: Inputs, dataset: str) -> Headline:
    groups, cost_labels = value_groups()
    summ = inputs.summary[inputs.summary.dataset == dataset] if not inputs.summary.empty else inputs.summary
    sc = inputs.scaled[inputs.scaled.dataset == dataset]
    mn = inputs.means[inputs.means.dataset == dataset]
    raw_cells = {(r["model"], r["experiment"], r["metric"]): r for _, r in summ.iterrows()}
    # scaled columns: a value with a scaled score for some model other than the controls
    finite = sc[sc["mean"].notna() & ~sc.model.isin(CONTROLS)]
    keys = sorted(
        set(zip(finite.experiment, finite.metric, strict=True)),
        key=lambda k: (_group_rank(group_of(k[1], groups)), k[0] != "main", k[0], k[1]),
    )
    columns = []
    for experiment, metric in keys:
        direction, target = direction_of(metric)
        label = f"{metric} {arrow(direction, target)}" if direction else metric
        if experiment != "main":
            label = f"{label} ({experiment})"
        columns.append(Column(experiment, metric, group_of(metric, groups), label))
    cost_cols = [
        Column("main", name, COST, f"{name} {arrow('lower')}")
        for name in cost_labels
        if any(k[1:] == ("main", name) for k in raw_cells)
    ]
    models = sorted({*summ.model, *sc.model, *mn.model}) if len(summ) or len(sc) else []
    means = {r["model"]: (float(r["mean"]), float(r["sd"]), int(r["n"])) for _, r in mn.iterrows()}

    def rank(m: str) -> tuple:
        if _is_control(m):
            return (1, CONTROLS.index(m), 0.0, m)
        mean = means.get(m, (math.nan,))[0]
        return (0, 0, -mean if np.isfinite(mean) else math.inf, m)

    models = sorted(models, key=rank)
    raw: dict[tuple[str, Column], str] = {}
    scaled: dict[tuple[str, Column], float] = {}
    cost: dict[tuple[str, Column], float] = {}
    sc_cells = {(r["model"], r["experiment"], r["metric"]): float(r["mean"]) for _, r in sc.iterrows()}
    for m in models:
        for c in [*columns, *cost_cols]:
            r = raw_cells.get((m, c.experiment, c.metric))
            raw[(m, c)] = cell_text(r) if r is not None else "n/a"
            scaled[(m, c)] = sc_cells.get((m, c.experiment, c.metric), math.nan)
            if c.group == COST and r is not None and r["n"] and np.isfinite(r["mean"]):
                cost[(m, c)] = float(r["mean"])
    head = Headline(dataset, models, [*columns, *cost_cols], raw, scaled, means, cost, "", [])
    return replace(head, note=_note(inputs, dataset), sentences=sentences(head))


def _note(inputs: Inputs, dataset: str) -> str:
    protocols = inputs.protocols or ["genes"]
    others = [p for p in protocols if p != "genes"]
    text = (
        "Protocol: genes (every gene, log-normalised; the scaled scores are this protocol's)"
        + (f"; also scored in {', '.join(others)} (tables below)" if others else "")
        + f". Profile: {', '.join(inputs.profiles) or 'not recorded'}. "
    )
    miss = inputs.missing[inputs.missing.dataset == dataset] if len(inputs.missing) else inputs.missing
    if miss.empty:
        return text + "Every planned seed has its values."
    parts = []
    for (model, experiment, status), g in miss.groupby(["model", "experiment", "status"], sort=True):
        seeds = ", ".join(str(int(s)) for s in sorted(g.seed))
        parts.append(f"{model} seed {seeds} ({experiment}, {status})")
    return text + "Missing seeds: " + "; ".join(parts) + "."


def _ratio(x: float) -> str:
    return f"{x:.1f}×" if x < 10 else f"{x:,.0f}×"


def sentences(h: Headline) -> list[str]:
    """Three sentences from the values: the best model and its margin over the next (beyond the
    seed spread or not), where every model fails, the cost ratio."""
    models = [m for m in h.models if not _is_control(m)]
    ranked = [m for m in models if m in h.means and np.isfinite(h.means[m][0])]
    # 1. the best model
    if not ranked:
        best_text = "No model has a mean scaled score (no controls in the run, or no model finished)."
    elif len(ranked) == 1:
        m, (mean, sd, n) = ranked[0], h.means[ranked[0]]
        best_text = f"{m} is the only model with a mean scaled score: {fmt(mean, sd, n)} over {n} seed(s)."
    else:
        (b, (bm, bs, bn)), (s, (sm, ss, sn)) = ((m, h.means[m]) for m in ranked[:2])
        margin = bm - sm
        spread = (
            max(x for x in (bs, ss) if np.isfinite(x)) if np.isfinite(bs) or np.isfinite(ss) else math.nan
        )
        if not np.isfinite(spread):
            judged = "with one seed each there is no seed spread to judge the margin by"
        elif margin > spread:
            judged = f"beyond the seed spread (the margin exceeds the larger sd, {_f(spread)})"
        else:
            judged = (
                f"within the seed spread (the larger sd is {_f(spread)}): these seeds do not separate the two"
            )
        best_text = (
            f"{b} has the best mean scaled score, {_f(bm)} ± {_f(bs)} (n = {bn}), "
            f"{_f(margin)} above {s} ({_f(sm)} ± {_f(ss)}, n = {sn}): {judged}."
        )
    # 2. where every model fails
    scaled_cols = [c for c in h.columns if c.group != COST]
    fails = []
    for c in scaled_cols:
        vals = {m: h.scaled[(m, c)] for m in models if np.isfinite(h.scaled[(m, c)])}
        if vals:
            top = max(vals, key=vals.get)
            fails.append((vals[top], c, top))
    if not models or not fails:
        fail_text = "No scaled value to judge failures by."
    else:
        bad = sorted((f for f in fails if f[0] < FAIL_BELOW), key=lambda f: f[0])
        if bad:
            listed = "; ".join(
                f"{c.metric}{'' if c.experiment == 'main' else f' ({c.experiment})'} (best: {m}, {_f(v)})"
                for v, c, m in bad[:4]
            )
            more = f"; and {len(bad) - 4} more" if len(bad) > 4 else ""
            fail_text = (
                f"Every model is closer to the shuffled control than to real cells (scaled < {FAIL_BELOW}) on "
                f"{len(bad)} of {len(fails)} values: {listed}{more}."
            )
        else:
            v, c, m = min(fails, key=lambda f: f[0])
            fail_text = (
                f"No value on which every model fails (each has a model scaled ≥ {FAIL_BELOW}); the hardest "
                f"is {c.metric}, best {m} at {_f(v)}."
            )
    # 3. the cost ratio
    cost_cols = [c for c in h.columns if c.group == COST]
    cost_text = "No cost value in this run."
    for c in cost_cols:
        vals = {m: h.cost[(m, c)] for m in models if (m, c) in h.cost and h.cost[(m, c)] > 0}
        if len(vals) == 1:
            ((only, x),) = vals.items()
            cost_text = (
                f"Cost ({c.metric}, mean over seeds): {only} only ({x:.3g}); no other model to compare with."
            )
        if len(vals) < 2:
            continue
        fast, slow = min(vals, key=vals.get), max(vals, key=vals.get)
        cost_text = (
            f"Cost ({c.metric}, mean over seeds): {fast} is the cheapest ({vals[fast]:.3g}), {slow} the "
            f"dearest ({vals[slow]:.3g}), {_ratio(vals[slow] / vals[fast])} as much"
        )
        if ranked and ranked[0] in vals and ranked[0] != fast:
            cost_text += (
                f"; the best model, {ranked[0]}, costs {_ratio(vals[ranked[0]] / vals[fast])} the cheapest"
            )
        elif ranked and ranked[0] == fast:
            cost_text += f"; the best model, {fast}, is also the cheapest"
        cost_text += "."
        break
    return [best_text, fail_text, cost_text]


__all__ = [
    "Headline",
    "Inputs",
    "build",
    "from_report",
    "from_summary_json",
    "sentences",
]
