"""The main table of a run's dataset (models x the directional values of an experiment, the best
model per column marked) and the cells and ranking every report table shares."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.api.metric import badness
from bench.config import CONTROLS
from bench.report.summary import cell_text, direction_of, directions, header, order_models


def best_models(cells: dict[str, pd.Series], direction: str | None, target: float | None) -> set[str]:
    """The models (not the control) with the best mean among ``cells`` {model: summary row}; only
    cells over every planned seed compete (a mean over fewer seeds is not comparable)."""
    if direction is None:
        return set()
    scores = {
        m: badness(float(r["mean"]), direction, target)
        for m, r in cells.items()
        if m not in CONTROLS and r["status"] == "ok" and np.isfinite(r["mean"])
    }
    if len(scores) < 2:
        return set()
    best = min(scores.values())
    return {m for m, v in scores.items() if math.isclose(v, best, rel_tol=1e-12, abs_tol=1e-15)}


def cells_of(summary: pd.DataFrame, dataset: str, experiment: str) -> dict[tuple[str, str], pd.Series]:
    sub = summary[(summary.dataset == dataset) & (summary.experiment == experiment)]
    return {(r["model"], r["metric"]): r for _, r in sub.iterrows()}


def _count(x: float) -> str:
    """``13,680`` / ``1.23M``: a step or cell count (mean over seeds) in a table cell."""
    if not np.isfinite(x):
        return "n/a"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x:,.0f}"


def training_columns(cells: dict[tuple[str, str], pd.Series], models: list[str]) -> dict[str, dict[str, str]]:
    """{column: {model: text}}: the training budget every value was measured at (``steps``,
    ``cells seen``: means over seeds) and whether it had converged (``last 2× ΔMMD``: the mean
    relative MMD gain of the last doubling of the budget, bench.convergence; ``not converged`` when
    above 10 %). Empty when no model reports them (e.g. a non-iterative model only)."""
    from bench.convergence import NOT_CONVERGED_GAIN, convergence_value, gain_name

    def mean(model: str, value: str) -> float:
        r = cells.get((model, value))
        return float(r["mean"]) if r is not None and r["n"] > 0 else float("nan")

    out: dict[str, dict[str, str]] = {}
    for col, value in (("steps", "train_steps"), ("cells seen", "cells_seen")):
        if any(np.isfinite(mean(m, value)) for m in models):
            out[col] = {m: _count(mean(m, value)) for m in models}
    gains = {m: mean(m, gain_name(convergence_value())) for m in models}
    if any(np.isfinite(g) for g in gains.values()):
        out["last 2× ΔMMD"] = {
            m: "n/a"
            if not np.isfinite(g)
            else f"{100 * g:+.0f} %" + (" not converged" if g > NOT_CONVERGED_GAIN else "")
            for m, g in gains.items()
        }
    return out


def main_table(
    summary: pd.DataFrame,
    dataset: str,
    dirs: dict[str, str] | None = None,
    notes: list[str] | None = None,
    *,
    training: bool = False,
    experiment: str = "main",
) -> pd.DataFrame:
    """Rows models (a failed one included), columns every directional value of the main
    experiment (``experiment``: the main experiment in another evaluation protocol, ``main@pca-real``): 'mean ± sd', '(n/N)' when seeds are missing, 'failed'; with ``training`` also the
    budget and convergence columns (:func:`training_columns`). ``attrs['best']`` holds the
    (model, column) of the best non-control model per column (ranked with the value's direction;
    a target by the distance to it); ``attrs['notes']`` the failure notes."""
    cells = cells_of(summary, dataset, experiment)
    models = order_models(sorted({m for m, _ in cells}))
    if not models:
        return pd.DataFrame()
    present = {metric for _, metric in cells}
    metrics = [m for m in (dirs or directions()) if m in present]
    rows: dict[str, dict[str, str]] = {model: {} for model in models}
    best: set[tuple[str, str]] = set()
    for metric in metrics:
        direction, target = direction_of(metric)
        col = header(metric, direction or "lower", target)
        column = {m: cells[(m, metric)] for m in models if (m, metric) in cells}
        for model in models:
            rows[model][col] = cell_text(column[model]) if model in column else "n/a"
        best |= {(m, col) for m in best_models(column, direction, target)}
    if not metrics:  # nothing scored (e.g. every model failed): still one row per model
        for model in models:
            statuses = {r["status"] for (m, _), r in cells.items() if m == model}
            rows[model]["status"] = "failed" if "failed" in statuses else "n/a"
    if training:
        for col, texts in training_columns(cells, models).items():
            for model in models:
                rows[model][col] = texts[model]
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.attrs["best"] = best
    df.attrs["notes"] = list(notes or [])
    return df
