"""The report's own figures, which span several metrics (matplotlib): quality against training time,
and the convergence curves of the snapshots taken during training. Each metric's own figures are
its declarations (``Metric.figures``), drawn by the metric."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.api.plotting import colour_map, figure_class
from bench.report.summary import CONTROL, order_models
from bench.report.view import RunView, model_label, summary_cell


def quality_values(only: set[str] | None = None) -> list[tuple[str, str, float | None]]:
    """(value, axis label, target) of the values the sample metrics declare for the headline
    (``Metric.headline``: AUC, MMD, CD for the built-ins), in registry order; ``only``: keep these."""
    from bench.registry import available

    words = {"lower": "lower is better", "higher": "higher is better"}
    out = []
    for metric in available("metrics").values():
        if metric.kind != "sample":
            continue
        for value, short in metric.headline.items():
            if value.endswith("@") or (only is not None and value not in only):
                continue
            direction, target = metric.direction_of(value), metric.target_of(value)
            hint = f"{target:g} ideal" if target is not None else words.get(direction or "", "")
            out.append((value, f"{short} ({hint})" if hint else short, target))
    return out


def fig_tradeoff(summary: pd.DataFrame, dataset: str):
    quality = [(value, label) for value, label, _ in quality_values()]
    targets = {value: target for value, _, target in quality_values()}
    sub = summary[summary.dataset == dataset]
    have = [(m, lab) for m, lab in quality if m in set(sub.metric)]
    if "train_seconds" not in set(sub.metric) or not have:
        return None
    models = order_models(sorted(set(sub.model)))
    colours = colour_map(models, "Set1")
    Figure = figure_class()
    fig = Figure(figsize=(4.2 * len(have), 3.8))
    axes = fig.subplots(1, len(have), squeeze=False)[0]
    for ax, (metric, label) in zip(axes, have, strict=True):
        for m in models:
            x, xsd, _ = summary_cell(summary, dataset, m, "train_seconds")
            y, ysd, _ = summary_cell(summary, dataset, m, metric)
            if np.isnan(x) or np.isnan(y):
                continue
            x = max(x, 1e-3)
            ax.errorbar(
                [x],
                [y],
                xerr=[np.nan_to_num(xsd)],
                yerr=[np.nan_to_num(ysd)],
                marker="o" if m != CONTROL else "s",
                mfc="none" if m == CONTROL else colours[m],
                color=colours[m],
                ms=7,
                capsize=3,
            )
            ax.annotate(model_label(m), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if targets.get(metric) is not None:
            ax.axhline(targets[metric], ls="--", color="#d32f2f", lw=1)
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.12)
        ax.set_xlabel("training time (s, log)", fontsize=9)
        ax.set_ylabel(label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{dataset}: quality against training time (mean ± sd over seeds; square: control)", fontsize=11
    )
    fig.tight_layout()
    return fig


def convergence_curves(run: RunView, dataset: str) -> dict[str, list[dict[str, np.ndarray]]]:
    """{model: [one dict of snapshot columns (step, train_seconds, mmd, auc, ...) per seed]} from
    the main tasks' ``convergence/*`` artifacts (bench.convergence)."""
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for r in run.main_tasks(dataset).sort_values(["model", "seed"]).itertuples():
        arts = run.artifacts(r.key, "convergence")
        if len(arts.get("step", [])):
            out.setdefault(r.model, []).append(arts)
    return {m: out[m] for m in order_models(list(out))}


def fig_convergence(curves: dict[str, list[dict[str, np.ndarray]]], dataset: str):
    """The snapshot scores (``Metric.snapshot``) that metrics declare for the headline -- the
    convergence value first (built-ins: MMD, then AUC on 50 PCs with 100 trees, CD) -- of each
    snapshot against training time and against optimizer steps, one line per model and seed: the
    paper's "good quality sooner" as a curve. ``curves``: :func:`convergence_curves`."""
    from bench.convergence import convergence_value, snapshot_metrics

    if not curves:
        return None
    snapped = {v for _, _, vs in snapshot_metrics() for v in vs}
    first = convergence_value()
    found = sorted(quality_values(snapped), key=lambda q: q[0] != first)
    targets = {value: target for value, _, target in found}
    panels = [(y, lab) for y, lab, _ in found if any(y in c for cs in curves.values() for c in cs)]
    if not panels:
        return None
    colours = colour_map(list(curves), "Set1")
    Figure = figure_class()
    fig = Figure(figsize=(10, 3.4 * len(panels)))
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for row, (y, label) in enumerate(panels):
        for col, (x, xlabel) in enumerate(
            (("train_seconds", "training time (s, log)"), ("step", "optimizer steps (log)"))
        ):
            ax = axes[row][col]
            for model, runs in curves.items():
                for i, c in enumerate(runs):
                    if y not in c:
                        continue
                    xs = np.maximum(np.asarray(c[x], float), 1e-3)
                    ax.plot(
                        xs,
                        c[y],
                        marker="o",
                        ms=3,
                        lw=1.2,
                        color=colours[model],
                        alpha=0.85,
                        label=model_label(model) if i == 0 else None,
                    )
            if targets.get(y) is not None:
                ax.axhline(targets[y], ls="--", color="#d32f2f", lw=1)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel, fontsize=9)
            ax.set_ylabel(label, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        f"{dataset}: cheap metrics at 1/8, 1/4, 1/2 and all of each model's budget (one line per seed)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig
