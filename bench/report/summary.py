"""Summary statistics of a run's values: one row per (dataset, model, experiment, metric) cell
with mean, sd, n over seeds, a status and the value's params, the cell's text, and the directions
of the values. Value parameters (an experiment's arm and fraction) are read from the values'
``params`` (bench.store), never from their names."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.api.metric import arrow
from bench.config import CONTROLS
from bench.registry import available

CONTROL = "real"
CELL = ["dataset", "model", "experiment", "metric"]
SUMMARY_COLUMNS = [*CELL, "mean", "sd", "n", "n_planned", "status", "params"]


def params_of(values: pd.DataFrame) -> pd.Series:
    """Each value's params (a dict; ``{}`` for none or when the table has no ``params`` column)."""
    if "params" not in values.columns:
        return pd.Series([{} for _ in range(len(values))], index=values.index, dtype=object)
    return values["params"].map(lambda p: p if isinstance(p, dict) else {})


def directions() -> dict[str, str]:
    """Direction of every value name declared by an installed metric."""
    out: dict[str, str] = {}
    for metric in available("metrics").values():
        out.update(metric.directions)
    return out


def table_groups() -> dict[str, dict[str, str]]:
    """Directions of every value, grouped by the report table its metric declares (``Metric.table``:
    "main" for the paper's metrics and plugins, a group name for the metric suite's)."""
    out: dict[str, dict[str, str]] = {}
    for metric in available("metrics").values():
        out.setdefault(metric.table, {}).update(metric.directions)
    return out


def direction_of(value: str) -> tuple[str | None, float | None]:
    """(direction, target) of a value name over the installed metrics; (None, None) when
    informational (not ranked, not gated). ``target`` is set for direction "target" only."""
    for metric in available("metrics").values():
        direction = metric.direction_of(value)
        if direction is not None:
            return direction, metric.target_of(value)
    return None, None


def header(metric: str, direction: str, target: float | None = None) -> str:
    """Column header of a value: ``mmd ↓``, ``mean_corr ↑``, ``auc (→0.5)``."""
    return f"{metric} {arrow(direction, target)}"


def finite(values: pd.DataFrame) -> pd.DataFrame:
    return values[np.isfinite(values.value.astype(float))]


def align_augmentation_arms(values: pd.DataFrame) -> pd.DataFrame:
    """Keep, per (dataset, model, experiment) and parameters other than the arm (the augmentation
    experiment's fraction and rare class), only the seeds at which every arm (values with a
    ``condition`` param: real-only, oversampled, augmented, gain) that has a value at all has one, so
    the arms are compared over the same seeds. Values must be finite already."""
    if values.empty:
        return values
    params = params_of(values)
    is_arm = params.map(lambda p: "condition" in p)
    if not is_arm.any():
        return values
    rest = params[is_arm].map(
        lambda p: json.dumps({k: v for k, v in p.items() if k != "condition"}, sort_keys=True, default=str)
    )
    arms = values[is_arm].assign(_rest=rest)
    keep = pd.Series(True, index=values.index)
    for _, group in arms.groupby(["dataset", "model", "experiment", "_rest"]):
        seed_sets = [set(g.seed) for _, g in group.groupby("metric")]
        shared = set.intersection(*seed_sets)
        keep[group.index[~group.seed.isin(shared)]] = False
    return values[keep]


def summarise(values: pd.DataFrame, planned: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (dataset, model, experiment, metric): mean, sd (ddof 1) and n over the seeds
    with a finite value, ``n_planned`` (the seeds the run planned; without ``planned``: the seeds
    seen) and ``status``: "ok" (n = n_planned), "partial" (fewer), "failed" (no value and a task
    failed) or "missing" (no value, e.g. not finished). Every planned model gets a row for every
    value its (dataset, experiment) has for any model, so a model whose tasks all failed keeps
    its rows. Augmentation arms are compared over the seeds they share. ``params``: the value's
    params (the same for every task that writes the value name)."""
    if values.empty and (planned is None or planned.empty):
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    values = (
        values[[*CELL, "seed", "value"]].assign(params=params_of(values))
        if not values.empty
        else pd.DataFrame(columns=[*CELL, "seed", "value", "params"])
    )
    found = {(e, m): p for e, m, p in zip(values.experiment, values.metric, values.params, strict=True)}
    good = align_augmentation_arms(finite(values))
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")  # noqa: E731
    out = good.groupby(CELL, sort=True)["value"].agg(mean="mean", sd=sd, n="count").reset_index()
    group = ["dataset", "model", "experiment"]
    if planned is not None and not planned.empty:
        n_planned = planned.groupby(group).size().rename("n_planned").reset_index()
        failed = planned[planned.status == "failed"].groupby(group).size().rename("n_failed").reset_index()
    else:
        n_planned = values.groupby(group)["seed"].nunique().rename("n_planned").reset_index()
        failed = pd.DataFrame(columns=[*group, "n_failed"])
    # every planned (dataset, model, experiment) x every value seen in its (dataset, experiment)
    seen = values[["dataset", "experiment", "metric"]].drop_duplicates()
    grid = n_planned.merge(seen, on=["dataset", "experiment"], how="left")
    grid = grid[grid.metric.notna()]
    out = grid.merge(out, on=CELL, how="outer")
    out = out.merge(failed, on=group, how="left")
    out["n"] = pd.to_numeric(out.n).fillna(0).astype(int)
    out["n_planned"] = np.maximum(pd.to_numeric(out.n_planned).fillna(out.n).astype(int), out.n)
    n_failed = pd.to_numeric(out.n_failed).fillna(0).astype(int)
    out["status"] = np.where(
        out.n == 0,
        np.where(n_failed > 0, "failed", "missing"),
        np.where(out.n < out.n_planned, "partial", "ok"),
    )
    out["mean"] = out["mean"].astype(float)
    out["sd"] = out["sd"].astype(float)
    out["params"] = [found.get((e, m), {}) for e, m in zip(out.experiment, out.metric, strict=True)]
    return out[SUMMARY_COLUMNS].sort_values(CELL).reset_index(drop=True)


def fmt(mean: float, sd: float, n: int, n_planned: int | None = None, status: str | None = None) -> str:
    """``0.612 ± 0.020``; over fewer seeds than planned ``0.612 ± 0.020 (2/3)``; no value:
    ``failed`` when its tasks failed, else ``n/a``."""
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "failed" if status == "failed" else "n/a"
    digits = 3 if abs(mean) < 100 else 1
    text = f"{mean:.{digits}f}"
    if n > 1 and not math.isnan(sd):
        text += f" ± {sd:.{digits}f}"
    if n_planned is not None and n < n_planned:
        text += f" ({n}/{n_planned})"
    return text


def cell_text(row) -> str:
    """:func:`fmt` of one summary row (a Series or a namedtuple)."""
    get = row.get if hasattr(row, "get") else lambda k: getattr(row, k)
    return fmt(get("mean"), get("sd"), int(get("n")), int(get("n_planned")), get("status"))


def order_models(models: list[str]) -> list[str]:
    """Models by name, the controls last (in CONTROLS order)."""
    return sorted(models, key=lambda m: (m in CONTROLS, CONTROLS.index(m) if m in CONTROLS else 0, m))


def metric_options(store, keys) -> dict[str, Any]:
    """The options each metric ran with over the given tasks (from their specs): one dict per
    metric, or a list of the distinct ones when tasks differ."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for key in keys:
        spec = store.task_spec(key) or {}
        for name, opts in (spec.get("metrics") or {}).items():
            if opts not in seen.setdefault(name, []):
                seen[name].append(opts)
    return {name: opts[0] if len(opts) == 1 else opts for name, opts in sorted(seen.items())}
