"""The report's figures of the paper (matplotlib, drawn from the store through
:class:`bench.report.view.RunView`): UMAP by source and cell type and marker genes (Fig. 4), ROC
curves (Fig. 3), correlation heatmaps (Fig. 5), rare-class F1 (Fig. 7), time (Table 1), quality
against training time and convergence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.config import CONTROLS
from bench.report.summary import CONTROL, align_augmentation_arms, cell_text, finite, order_models, params_of
from bench.report.view import RunView

REAL_COLOUR = "#9e9e9e"


def figure_class():
    from matplotlib.figure import Figure

    return Figure


def colour_map(names: list[str], cmap: str = "tab10") -> dict[str, Any]:
    import matplotlib

    n = len(names)
    cm = matplotlib.colormaps[cmap if n <= 10 else "tab20"]
    return {name: cm(i % cm.N) for i, name in enumerate(names)}


def model_label(model: str) -> str:
    return f"{model} (control)" if model in CONTROLS else model


def summary_cell(summary: pd.DataFrame, dataset: str, model: str, metric: str) -> tuple[float, float, str]:
    """(mean, sd, table text) of a main-experiment value; NaN and 'n/a' when absent."""
    hit = summary[
        (summary.dataset == dataset)
        & (summary.model == model)
        & (summary.metric == metric)
        & (summary.experiment == "main")
    ]
    if hit.empty:
        return float("nan"), float("nan"), "n/a"
    r = hit.iloc[0]
    return float(r["mean"]), float(r["sd"]), cell_text(r)


# -- Fig. 4: UMAP by source and by cell type -----------------------------------------------------
def _scatter(ax, xy, colour, size, alpha=0.8, label=None, zorder=1):
    if len(xy):
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=size,
            c=[colour],
            alpha=alpha,
            linewidths=0,
            label=label,
            zorder=zorder,
            rasterized=True,
        )


def _clean(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _point_size(n: int) -> float:
    return float(np.clip(3000.0 / max(n, 1), 2.0, 25.0))


def fig_umap(arts: dict[str, dict[str, np.ndarray]], dataset: str):
    """Row 1: generated cells (colour) over real test cells (grey) per model. Row 2: real test
    cells and each model's generated cells coloured by cell type (conditional models: the label
    they were asked for; unconditional: the type of the nearest real cells, marked *)."""
    models = list(arts)
    first = arts[models[0]]
    types = sorted(
        set(first["real_labels"].tolist()).union(
            *(
                set(a["generated_labels"].tolist()) | set(a["generated_knn_labels"].tolist())
                for a in arts.values()
            )
        )
    )
    tcol = colour_map(types)
    mcol = colour_map(models, "Set1")
    ncol = 1 + len(models)
    Figure = figure_class()
    fig = Figure(figsize=(3.1 * ncol + 1.8, 6.4))
    axes = fig.subplots(2, ncol, squeeze=False)
    real_xy = first["real_umap"]
    size = _point_size(len(real_xy))
    ax = axes[0, 0]
    _scatter(ax, real_xy, REAL_COLOUR, size, label="real test")
    ax.set_title(f"real test (n={len(real_xy)})", fontsize=10)
    for j, m in enumerate(models, start=1):
        a = arts[m]
        ax = axes[0, j]
        _scatter(ax, a["real_umap"], REAL_COLOUR, size, alpha=0.5, label="real test")
        _scatter(ax, a["generated_umap"], mcol[m], size, alpha=0.7, label="generated", zorder=2)
        ax.set_title(f"{model_label(m)} (n={len(a['generated_umap'])})", fontsize=10)
    ax = axes[1, 0]
    for t in types:
        _scatter(ax, real_xy[first["real_labels"] == t], tcol[t], size, label=t)
    ax.set_title("real test, by cell type", fontsize=10)
    for j, m in enumerate(models, start=1):
        a = arts[m]
        ax = axes[1, j]
        conditional = len(a["generated_labels"]) > 0
        labels = a["generated_labels"] if conditional else a["generated_knn_labels"]
        _scatter(ax, a["real_umap"], "#e0e0e0", size, alpha=0.5)
        for t in types:
            _scatter(ax, a["generated_umap"][labels == t], tcol[t], size, zorder=2)
        ax.set_title(
            f"{model_label(m)}, by {'cell type' if conditional else 'nearest real type*'}", fontsize=10
        )
    for ax in axes.ravel():
        _clean(ax)
    from matplotlib.lines import Line2D

    src = [Line2D([], [], marker="o", ls="", color=REAL_COLOUR, label="real test")]
    src += [
        Line2D([], [], marker="o", ls="", color=mcol[m], label=f"{model_label(m)} generated") for m in models
    ]
    axes[0, -1].legend(handles=src, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    typ = [Line2D([], [], marker="o", ls="", color=tcol[t], label=t) for t in types]
    axes[1, -1].legend(
        handles=typ,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        fontsize=8,
        frameon=False,
        ncol=1 if len(types) <= 14 else 2,
    )
    fig.suptitle(
        f"{dataset}: UMAP fit on real test cells (50 PCs); generated cells placed on it", fontsize=11
    )
    fig.tight_layout()
    return fig


def fig_markers(arts: dict[str, dict[str, np.ndarray]], dataset: str):
    """Rows: marker genes; columns: real test then each model; colour: log expression (library
    size 20,000, log1p) on one scale per gene (0 to the real cells' 99th percentile)."""
    models = list(arts)
    first = arts[models[0]]
    genes = [str(g) for g in first["marker_genes"]]
    ncol = 1 + len(models)
    Figure = figure_class()
    fig = Figure(figsize=(2.6 * ncol + 1.0, 2.3 * len(genes) + 0.6), layout="constrained")
    axes = fig.subplots(len(genes), ncol, squeeze=False)
    size = _point_size(len(first["real_umap"]))
    for i, g in enumerate(genes):
        real = first["real_markers"][:, i]
        vmax = float(np.percentile(real, 99)) if len(real) else 1.0
        vmax = vmax if vmax > 0 else max(float(real.max(initial=0.0)), 1.0)
        panels = [("real test", first["real_umap"], real, None)]
        for m in models:
            a = arts[m]
            names = [str(x) for x in a["marker_genes"]]
            col = a["generated_markers"][:, names.index(g)] if g in names else None
            panels.append((model_label(m), a["generated_umap"], col, a["real_umap"]))
        sc = None
        for j, (title, xy, expr, background) in enumerate(panels):
            ax = axes[i, j]
            if background is not None and len(background):
                ax.scatter(
                    background[:, 0], background[:, 1], s=size, c="#eeeeee", linewidths=0, rasterized=True
                )
            if expr is not None and len(xy):
                order = np.argsort(expr, kind="stable")  # high expression drawn on top
                sc = ax.scatter(
                    xy[order, 0],
                    xy[order, 1],
                    s=size,
                    c=expr[order],
                    cmap="viridis",
                    vmin=0,
                    vmax=vmax,
                    linewidths=0,
                    rasterized=True,
                )
            if i == 0:
                ax.set_title(title, fontsize=10)
            if j == 0:
                ax.set_ylabel(g, fontsize=11, fontweight="bold")
            _clean(ax)
        if sc is not None:
            cb = fig.colorbar(sc, ax=list(axes[i, :]), fraction=0.03, pad=0.01, aspect=12)
            cb.ax.tick_params(labelsize=7)
            cb.set_label("log expr.", fontsize=7)
    fig.suptitle(f"{dataset}: marker-gene log expression on the UMAP", fontsize=11)
    return fig


# -- Fig. 3: ROC curves ---------------------------------------------------------------------------
def _roc_curves(run: RunView, keys: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    curves = []
    for key in keys:
        a = run.artifacts(key, "auc")
        k = 0
        while f"roc_fpr_{k}" in a:
            curves.append((np.asarray(a[f"roc_fpr_{k}"], float), np.asarray(a[f"roc_tpr_{k}"], float)))
            k += 1
    return curves


def interp_roc(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """TPR of a ROC curve on an FPR grid (step-wise upper envelope at ties, as sklearn's curves)."""
    order = np.lexsort((tpr, fpr))
    fpr, tpr = fpr[order], tpr[order]
    out = np.interp(grid, fpr, tpr)
    out[0] = 0.0 if grid[0] < fpr.min() else out[0]
    return out


def fig_roc(run: RunView, dataset: str, summary: pd.DataFrame):
    t = run.main_tasks(dataset)
    models = [m for m in order_models(sorted(set(t.model))) if _roc_curves(run, list(t[t.model == m].key))]
    if not models:
        return None
    ncol = min(4, len(models))
    nrow = int(np.ceil(len(models) / ncol))
    Figure = figure_class()
    fig = Figure(figsize=(3.6 * ncol, 3.6 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    grid = np.linspace(0, 1, 201)
    for ax in axes.ravel()[len(models) :]:
        ax.set_visible(False)
    for ax, m in zip(axes.ravel(), models, strict=False):
        keys = list(t[t.model == m].key)
        curves = _roc_curves(run, keys)
        for fpr, tpr in curves:
            ax.plot(fpr, tpr, color="#90caf9", lw=0.8, alpha=0.8, drawstyle="default")
        tprs = np.array([interp_roc(f, p, grid) for f, p in curves])
        mean, sd = tprs.mean(0), tprs.std(0)
        ax.fill_between(
            grid,
            np.clip(mean - sd, 0, 1),
            np.clip(mean + sd, 0, 1),
            color="#1e88e5",
            alpha=0.2,
            lw=0,
            label="mean ± sd over folds",
        )
        ax.plot(grid, mean, color="#0d47a1", lw=2, label="mean ROC")
        ax.plot([0, 1], [0, 1], ls="--", color="#d32f2f", lw=1.2, label="chance (AUC 0.5)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate", fontsize=9)
        ax.set_ylabel("true positive rate", fontsize=9)
        auc = summary_cell(summary, dataset, m, "auc")[2]
        ax.set_title(f"{model_label(m)}: AUC {auc}\n{len(curves)} folds, {len(keys)} seed(s)", fontsize=10)
        ax.legend(loc="lower right", fontsize=7)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{dataset}: random forest separating real test from generated cells", fontsize=11)
    fig.tight_layout()
    return fig


# -- Fig. 5: correlation heatmaps -----------------------------------------------------------------
def combine_corr(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """One matrix: generated correlations below the diagonal, real above, 1 on it (Fig. 5)."""
    out = np.triu(np.asarray(real, float), 1) + np.tril(np.asarray(generated, float), -1)
    np.fill_diagonal(out, 1.0)
    return out


def fig_corr(run: RunView, keys: dict[str, str], dataset: str):
    models = list(keys)
    ncol = min(3, len(models))
    nrow = int(np.ceil(len(models) / ncol))
    Figure = figure_class()
    fig = Figure(figsize=(5.0 * ncol + 0.8, 5.0 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax in axes.ravel()[len(models) :]:
        ax.set_visible(False)
    im = None
    for ax, m in zip(axes.ravel(), models, strict=False):
        a = run.artifacts(keys[m], "correlation_discrepancy")
        genes = [str(g) for g in a["genes"]]
        mat = combine_corr(np.nan_to_num(a["real_corr"]), np.nan_to_num(a["generated_corr"]))
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        n = len(genes)
        if n <= 60:
            fs = 7 if n <= 30 else 5
            ax.set_xticks(range(n), genes, rotation=90, fontsize=fs)
            ax.set_yticks(range(n), genes, fontsize=fs)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        cd = run.task_value(keys[m], "cd")
        cd_txt = f"CD {cd:.3f}" if cd is not None else "CD n/a"
        ax.set_title(
            f"{model_label(m)} (seed {run.seed_of(keys[m])}): {cd_txt}\nlower: generated, upper: real",
            fontsize=10,
        )
    if im is not None:
        fig.colorbar(im, ax=list(axes.ravel()), fraction=0.02, pad=0.02, label="Pearson r")
    fig.suptitle(f"{dataset}: Pearson correlation of the top DE genes per cluster", fontsize=11)
    return fig


# -- Fig. 7: augmentation ------------------------------------------------------------------------
CONDITIONS = {
    "real": ("real only (downsampled)", "#1e88e5"),
    "oversampled": ("oversampled", "#757575"),
    "augmented": ("augmented with generated cells", "#e53935"),
}


def augmentation_frame(values: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """F1 per (model, condition, fraction): mean, min and max over the seeds the arms share."""
    v = values[(values.dataset == dataset) & (values.experiment == "augmentation")]
    v = align_augmentation_arms(finite(v))
    rows = []
    for r, p in zip(v.itertuples(), params_of(v), strict=True):
        if p.get("condition") in CONDITIONS and "fraction" in p:
            rows.append((r.model, p["condition"], float(p["fraction"]), r.seed, r.value))
    df = pd.DataFrame(rows, columns=["model", "cond", "frac", "seed", "value"])
    if df.empty:
        return df
    return df.groupby(["model", "cond", "frac"])["value"].agg(["mean", "min", "max", "count"]).reset_index()


def fig_augmentation(run: RunView, dataset: str):
    agg = augmentation_frame(run.values, dataset)
    if agg.empty:
        return None
    models = order_models(sorted(set(agg.model)))
    ncol = min(4, len(models))
    nrow = int(np.ceil(len(models) / ncol))
    Figure = figure_class()
    fig = Figure(figsize=(3.8 * ncol, 3.3 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax in axes.ravel()[len(models) :]:
        ax.set_visible(False)
    for ax, m in zip(axes.ravel(), models, strict=False):
        sub = agg[agg.model == m]
        for k, (cond, (label, colour)) in enumerate(CONDITIONS.items()):
            c = sub[sub.cond == cond].sort_values("frac")
            if c.empty:
                continue
            x = c.frac.to_numpy() * (1 + 0.04 * (k - 1))  # small offset so bars do not overlap
            err = np.vstack([c["mean"] - c["min"], c["max"] - c["mean"]])
            ax.errorbar(
                x, c["mean"], yerr=err, color=colour, marker="o", ms=4, lw=1.5, capsize=3, label=label
            )
        ax.set_xscale("log")
        fr = sorted(set(sub.frac))
        ax.set_xticks(fr, [f"{f:g}" for f in fr])
        ax.minorticks_off()
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("fraction of the rare class kept", fontsize=9)
        ax.set_ylabel("rare-class F1", fontsize=9)
        ax.set_title(model_label(m), fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{dataset}: F1 of the rare class (mean over seeds; bars: range)", fontsize=11)
    fig.tight_layout()
    return fig


# -- Table 1 and the trade-off -------------------------------------------------------------------
def fig_timing(summary: pd.DataFrame, dataset: str):
    metrics = [
        ("train_seconds", "training time (s)"),
        ("generate_seconds_per_100k", "generation s / 100k cells"),
    ]
    sub = summary[(summary.dataset == dataset) & summary.metric.isin([m for m, _ in metrics])]
    if sub.empty:
        return None
    models = order_models(sorted(set(sub.model)))
    Figure = figure_class()
    fig = Figure(figsize=(10, 0.5 * len(models) + 1.6))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    colours = colour_map(models, "Set1")
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        y = np.arange(len(models))
        vals = [summary_cell(summary, dataset, m, metric) for m in models]
        means = np.array([v[0] for v in vals])
        sds = np.nan_to_num(np.array([v[1] for v in vals]))
        ok = ~np.isnan(means)
        ax.barh(
            y[ok],
            means[ok],
            xerr=sds[ok],
            color=[colours[m] for m, o in zip(models, ok, strict=True) if o],
            capsize=3,
        )
        for yi, mean, sd, text in zip(y, means, sds, [v[2] for v in vals], strict=True):
            if not np.isnan(mean):
                ax.text(mean + sd, yi, "  " + text, va="center", fontsize=8)
        ax.set_yticks(y, [model_label(m) for m in models], fontsize=9)
        ax.invert_yaxis()
        pos = means[ok & (means > 0)]
        if len(pos) > 1 and pos.max() / pos.min() > 100:
            ax.set_xscale("log")
        ax.set_xlim(
            right=(np.nanmax(means + sds) if ok.any() else 1) * (3 if ax.get_xscale() == "log" else 1.35)
        )
        ax.set_xlabel(label, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"{dataset}: time per model (mean ± sd over seeds)", fontsize=11)
    fig.tight_layout()
    return fig


def fig_tradeoff(summary: pd.DataFrame, dataset: str):
    quality = [
        ("auc", "real-vs-synthetic AUC (0.5 ideal)"),
        ("mmd", "MMD (lower is better)"),
        ("cd", "correlation discrepancy (lower)"),
    ]
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
        if metric == "auc":
            ax.axhline(0.5, ls="--", color="#d32f2f", lw=1)
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


def fig_convergence(run: RunView, dataset: str):
    """MMD and AUC (50 PCs, 100 trees) of each snapshot against training time and against
    optimizer steps, one line per model and seed: the paper's "good quality sooner" as a curve."""
    curves = convergence_curves(run, dataset)
    if not curves:
        return None
    panels = [
        (y, lab)
        for y, lab in (("mmd", "MMD (lower is better)"), ("auc", "AUC, 50 PCs (0.5 ideal)"))
        if any(y in c for cs in curves.values() for c in cs)
    ]
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
            if y == "auc":
                ax.axhline(0.5, ls="--", color="#d32f2f", lw=1)
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
