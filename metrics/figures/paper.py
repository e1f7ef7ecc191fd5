"""The report figures of the paper's metrics (matplotlib, drawn from the store through the report's
view, ``FigureSpec.draw``): ROC curves of the real-vs-synthetic classifier (Fig. 3, metric auc),
correlation heatmaps of DE genes (Fig. 5, correlation_discrepancy), rare-class F1 against the kept
fraction (Fig. 7, augmentation) and training and generation time (Table 1, timing)."""

from __future__ import annotations

import numpy as np

from bench.api import Drawing, colour_map, figure_class


# -- Fig. 3: ROC curves ---------------------------------------------------------------------------
def _roc_curves(run, keys: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
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


def fig_roc(run, dataset: str):
    t = run.main_tasks(dataset)
    models = [m for m in run.order(sorted(set(t.model))) if _roc_curves(run, list(t[t.model == m].key))]
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
        auc = run.summary_cell(dataset, m, "auc")[2]
        ax.set_title(f"{run.label(m)}: AUC {auc}\n{len(curves)} folds, {len(keys)} seed(s)", fontsize=10)
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


def fig_corr(run, keys: dict[str, str], dataset: str):
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
            f"{run.label(m)} (seed {run.seed_of(keys[m])}): {cd_txt}\nlower: generated, upper: real",
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


def augmentation_frame(run, dataset: str):
    """F1 per (model, condition, fraction): mean, min and max over the seeds the arms share (a
    DataFrame)."""
    import pandas as pd

    v = run.arm_values(dataset, "augmentation")
    rows = []
    for r, p in zip(v.itertuples(), v.params, strict=True):
        if p.get("condition") in CONDITIONS and "fraction" in p:
            rows.append((r.model, p["condition"], float(p["fraction"]), r.seed, r.value))
    df = pd.DataFrame(rows, columns=["model", "cond", "frac", "seed", "value"])
    if df.empty:
        return df
    return df.groupby(["model", "cond", "frac"])["value"].agg(["mean", "min", "max", "count"]).reset_index()


def fig_augmentation(run, dataset: str):
    agg = augmentation_frame(run, dataset)
    if agg.empty:
        return None
    models = run.order(sorted(set(agg.model)))
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
        ax.set_title(run.label(m), fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{dataset}: F1 of the rare class (mean over seeds; bars: range)", fontsize=11)
    fig.tight_layout()
    return fig


# -- Table 1: time ------------------------------------------------------------------------------
def fig_timing(run, dataset: str):
    summary = run.summary
    metrics = [
        ("train_seconds", "training time (s)"),
        ("generate_seconds_per_100k", "generation s / 100k cells"),
    ]
    sub = summary[(summary.dataset == dataset) & summary.metric.isin([m for m, _ in metrics])]
    if sub.empty:
        return None
    models = run.order(sorted(set(sub.model)))
    Figure = figure_class()
    fig = Figure(figsize=(10, 0.5 * len(models) + 1.6))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    colours = colour_map(models, "Set1")
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        y = np.arange(len(models))
        vals = [run.summary_cell(dataset, m, metric) for m in models]
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
        ax.set_yticks(y, [run.label(m) for m in models], fontsize=9)
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


# -- the draw callables (FigureSpec.draw) ---------------------------------------------------------
def draw_roc(view, dataset: str):
    fig = fig_roc(view, dataset)
    return None if fig is None else Drawing(fig, tuple(view.main_tasks(dataset).key))


def draw_corr(view, dataset: str):
    seed, keys = view.figure_tasks(dataset, "correlation_discrepancy", "real_corr")
    return Drawing(fig_corr(view, keys, dataset), tuple(keys.values()), seed) if keys else None


def draw_augmentation(view, dataset: str):
    return fig_augmentation(view, dataset)


def draw_timing(view, dataset: str):
    return fig_timing(view, dataset)
