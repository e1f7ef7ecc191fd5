"""Control-scaled scores (openproblems style): the positive control scores 1, the negative control 0.

For every value a metric declares scalable (a direction, and not in ``Metric.not_scaled``), within
one dataset, experiment and seed::

    scaled = (value - negative) / (positive - negative)

on the value's own scale; a value ranked by its distance to a target (AUC, ideal 0.5) is scaled on
that distance (``-|value - target|`` for value, positive and negative), so an AUC of 0.3 and one of
0.7 get the same scaled score. With ``positive`` the value of the `real` control (real training cells: the noise floor) and
``negative`` the value of the `shuffled` control (each gene permuted across cells) for the same
seed; when a control lacks that seed, its mean over its seeds is used. The scale is left undefined
(NaN) when the controls do not separate (|positive - negative| <= 1e-9 + 1e-6 max(|positive|,
|negative|)) or when the negative control does better than the positive one in the metric's own
direction: then the metric cannot tell a model from noise on this dataset, and a scaled value would
only amplify noise.

The mean scaled score of a model averages, per seed, its scaled values clipped to [0, 1] (so one
metric far outside the controls' range cannot dominate) over the values that *every* model of the
dataset has (per-type metrics exist only for conditional models: a mean over different sets would
not be comparable), then takes mean and sd over seeds. Tables keep the raw values; the scaled ones
go to summary.json and the report next to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.report.summary import fmt, order_models
from bench.report.summary import summarise as summarise_values

POSITIVE = "real"
NEGATIVE = "shuffled"
KEYS = ["dataset", "experiment", "metric"]


def scaled_values() -> tuple[Any, Any]:
    """(is_scaled(value name) -> bool, direction_of(value name) -> 'lower' | 'higher' | None |
    ('target', target)) over every installed metric plugin."""
    from bench.registry import available

    metrics = list(available("metrics").values())

    def direction_of(name: str):
        for m in metrics:
            d = m.direction_of(name)
            if d == "target":
                return ("target", m.target_of(name))
            if d is not None:
                return d
        return None

    def is_scaled(name: str) -> bool:
        return any(m.direction_of(name) is not None and m.is_scaled(name) for m in metrics)

    return is_scaled, direction_of


def _control(values: pd.DataFrame, model: str, name: str) -> pd.DataFrame:
    """The control's value per (dataset, experiment, metric, seed), plus its mean over seeds."""
    c = values[values.model == model]
    per_seed = c[[*KEYS, "seed", "value"]].rename(columns={"value": name})
    mean = c.groupby(KEYS, as_index=False)["value"].mean().rename(columns={"value": f"{name}_mean"})
    return per_seed, mean


def scale(
    values: pd.DataFrame,
    *,
    positive: str = POSITIVE,
    negative: str = NEGATIVE,
    is_scaled=None,
    direction_of=None,
) -> pd.DataFrame:
    """The long value table (dataset, model, seed, experiment, metric, value) restricted to scalable
    values, with the columns ``positive``, ``negative`` (the controls' values used, on the scale
    that is scaled: ``-|x - target|`` for a target direction) and ``scaled``."""
    cols = ["dataset", "model", "seed", "experiment", "metric", "value", "positive", "negative", "scaled"]
    if values.empty:
        return pd.DataFrame(columns=cols)
    if is_scaled is None or direction_of is None:
        found_scaled, found_direction = scaled_values()
        is_scaled, direction_of = is_scaled or found_scaled, direction_of or found_direction
    v = values[values.metric.map(is_scaled)].copy()
    # a target direction: scale the negated distance to the target (higher is better)
    directions = {m: direction_of(m) for m in v.metric.unique()}  # one lookup per value name
    target = v.metric.map(lambda m: d[1] if isinstance(d := directions[m], tuple) else np.nan).astype(float)
    v["raw"] = v["value"].astype(float)
    v["value"] = np.where(target.notna(), -(v["raw"] - target).abs(), v["raw"])
    out = v[["dataset", "model", "seed", "experiment", "metric", "value", "raw"]]
    for model, name in ((positive, "positive"), (negative, "negative")):
        per_seed, mean = _control(v, model, name)
        out = out.merge(per_seed, on=[*KEYS, "seed"], how="left").merge(mean, on=KEYS, how="left")
        out[name] = out[name].fillna(out[f"{name}_mean"])
        out = out.drop(columns=f"{name}_mean")
    sep = out["positive"] - out["negative"]
    tol = 1e-9 + 1e-6 * np.maximum(out["positive"].abs(), out["negative"].abs())
    higher = out.metric.map(lambda m: directions[m] == "higher" or isinstance(directions[m], tuple))
    sign = np.where(higher, 1.0, -1.0)
    ok = (sep.abs() > tol) & (sep * sign > 0)  # separated, and the positive control is the better
    out["scaled"] = np.where(ok, (out["value"] - out["negative"]) / sep.where(ok, 1.0), np.nan)
    out["value"] = out["raw"]
    return out[cols].reset_index(drop=True)


def summarise(scaled: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd (ddof 1) and n over seeds of the scaled values, per (dataset, model, experiment, metric)."""

    return summarise_values(scaled.drop(columns=["value"]).rename(columns={"scaled": "value"}))


def mean_scores(scaled: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and model: the mean over seeds (and sd, n) of the per-seed mean of the scaled values
    clipped to [0, 1], over the (experiment, metric) values every model of the dataset has scaled."""
    cols = ["dataset", "model", "mean", "sd", "n", "n_metrics", "metrics"]
    rows: list[dict[str, Any]] = []
    for dataset, d in scaled.dropna(subset=["scaled"]).groupby("dataset", sort=True):
        have = [set(zip(g.experiment, g.metric, strict=True)) for _, g in d.groupby("model")]
        common = sorted(set.intersection(*have)) if have else []
        if not common:
            continue
        keep = d[[(e, m) in set(common) for e, m in zip(d.experiment, d.metric, strict=True)]]
        per_seed = (
            keep.assign(clipped=keep.scaled.clip(0.0, 1.0))
            .groupby(["model", "seed"])["clipped"]
            .mean()
            .reset_index()
        )
        for model, g in per_seed.groupby("model", sort=True):
            x = g["clipped"].to_numpy()
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "mean": float(x.mean()),
                    "sd": float(np.std(x, ddof=1)) if len(x) > 1 else float("nan"),
                    "n": int(len(x)),
                    "n_metrics": len(common),
                    "metrics": [f"{e}/{m}" for e, m in common],
                }
            )
    return pd.DataFrame(rows, columns=cols)


def build(values: pd.DataFrame) -> ScaledScores:
    """``values`` (per seed, with the controls used), ``summary`` (over seeds), ``means`` (per model)."""
    scaled = scale(values)
    return ScaledScores(values=scaled, summary=summarise(scaled), means=mean_scores(scaled))


@dataclass(frozen=True)
class ScaledScores:
    """The control-scaled scores of a run: ``values`` per seed (with the controls' values used),
    ``summary`` over seeds per (dataset, model, experiment, metric), ``means`` per (dataset, model)."""

    values: pd.DataFrame
    summary: pd.DataFrame
    means: pd.DataFrame


def table(scaled: ScaledScores, dataset: str) -> pd.DataFrame:
    """Rows models (controls last), columns the main experiment's scaled values then the mean scaled
    score: 'mean ± sd' over seeds, 'n/a' where undefined."""

    summ = scaled.summary
    sub = summ[(summ.dataset == dataset) & (summ.experiment == "main")]
    means = scaled.means[scaled.means.dataset == dataset]
    if sub["mean"].isna().all() and means.empty:  # no control to scale by (--no-control): no table
        return pd.DataFrame()
    metrics = list(dict.fromkeys(sub.metric))
    rows: dict[str, dict[str, str]] = {}
    for model in order_models(sorted(set(sub.model) | set(means.model))):
        cells = {}
        for metric in metrics:
            hit = sub[(sub.model == model) & (sub.metric == metric)]
            cells[metric] = fmt(*hit[["mean", "sd", "n"]].iloc[0]) if len(hit) else "n/a"
        hit = means[means.model == model]
        cells["mean scaled"] = fmt(*hit[["mean", "sd", "n"]].iloc[0]) if len(hit) else "n/a"
        rows[model] = cells
    return pd.DataFrame.from_dict(rows, orient="index")


__all__ = [
    "NEGATIVE",
    "POSITIVE",
    "ScaledScores",
    "build",
    "mean_scores",
    "scale",
    "scaled_values",
    "summarise",
    "table",
]
