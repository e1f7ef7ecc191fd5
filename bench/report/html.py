"""`bench report RUN_DIR --html`: one self-contained HTML file with the paper's figures.

Everything is drawn from the store (values and the arrays the scoring stage kept), so a report
never retrains or regenerates. Figures are matplotlib PNGs embedded as base64 data URIs; the page
is plain HTML + CSS with no script and no external resource, so it opens offline and can be
attached to a paper draft. docs/report.md says what each figure shows and how it maps to the paper.

Sections: summary tables (the console tables of :func:`bench.report.build`, same numbers),
provenance of every run, task status, then per dataset: UMAP by source and by cell type (Fig. 4),
marker genes on the UMAP (Fig. 4C-D), ROC curves of the real-vs-synthetic classifier with fold
bands (Fig. 3), correlation of DE genes (Fig. 5), rare-class F1 against the training fraction
(Fig. 7), training time (Table 1) and quality against training time; then the metric suite's
figures (:mod:`bench.html_suite`: PRDC, memorisation, per-type heatmap, DE recovery).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import report as rpt
from bench.config import CONTROLS

DPI = 90
CONTROL = rpt.CONTROL
REAL_COLOUR = "#9e9e9e"

SECTIONS = {
    "umap": "UMAP of real and generated cells (Fig. 4A-B)",
    "markers": "Marker genes on the UMAP (Fig. 4C-D)",
    "roc": "Real-vs-synthetic classifier ROC (Fig. 3)",
    "correlation": "Correlation of DE genes (Fig. 5)",
    "augmentation": "Rare-class F1 with augmentation (Fig. 7)",
    "timing": "Training and generation time (Table 1)",
    "tradeoff": "Quality against training time",
    "convergence": "Convergence: quality during training",
}

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #222;
       background: #fafafa; line-height: 1.4; }
header { background: #263238; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; color: #cfd8dc; font-size: 14px; }
nav { padding: 10px 32px; background: #eceff1; font-size: 14px; }
nav a { margin-right: 14px; color: #1565c0; text-decoration: none; }
main { padding: 8px 32px 40px 32px; max-width: 1600px; }
section { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; padding: 12px 20px;
          margin: 16px 0; }
h2 { font-size: 20px; border-bottom: 2px solid #263238; padding-bottom: 4px; }
h3 { font-size: 16px; margin-top: 18px; }
table { border-collapse: collapse; margin: 8px 0 14px 0; font-size: 13px; }
th, td { border: 1px solid #cfd8dc; padding: 3px 8px; }
th { background: #eceff1; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.idx { font-weight: 600; }
figure { margin: 8px 0 16px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; max-width: 1100px; }
p.note { font-size: 13px; color: #777; font-style: italic; }
pre { background: #f5f5f5; padding: 8px; font-size: 12px; overflow-x: auto; max-height: 400px; }
.failed { color: #b71c1c; }
td.best { background: #e8f5e9; color: #1b5e20; font-weight: 700; }
td.failed { background: #ffebee; }
p.note.failed { color: #b71c1c; font-style: normal; margin: 0 0 4px 0; }
"""


# -- small helpers -------------------------------------------------------------------------------
def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text)).strip("-").lower() or "x"


def _figure():
    from matplotlib.figure import Figure

    return Figure


def png_data_uri(fig) -> str:
    """PNG of a matplotlib figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(fig, alt: str, caption: str) -> str:
    return (
        f'<figure><img alt="{_esc(alt)}" src="{png_data_uri(fig)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def table_html(df: pd.DataFrame) -> str:
    """An HTML table with the index as leading columns (MultiIndex levels each a column); the best
    model's cells (``df.attrs['best']``) coloured, failed cells in red, and the failure notes
    (``df.attrs['notes']``) under the table."""
    if df.empty:
        return ""
    head = "".join(f"<th>{_esc(n or '')}</th>" for n in rpt._index_names(df))
    head += "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    rows = []
    for idx, cells in rpt._rows(df):
        tds = "".join(f'<td class="idx">{_esc(i)}</td>' for i in idx)
        for _, text, best in cells:
            cls = "num best" if best else "num failed" if text == "failed" else "num"
            tds += f'<td class="{cls}">{_esc(text)}</td>'
        rows.append(f"<tr>{tds}</tr>")
    notes = "".join(f'<p class="note failed">failed: {_esc(n)}</p>' for n in df.attrs.get("notes", []))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{notes}"


def _colours(names: list[str], cmap: str = "tab10") -> dict[str, Any]:
    import matplotlib

    n = len(names)
    cm = matplotlib.colormaps[cmap if n <= 10 else "tab20"]
    return {name: cm(i % cm.N) for i, name in enumerate(names)}


def _model_label(model: str) -> str:
    return f"{model} (control)" if model in CONTROLS else model


def _summary_cell(summary: pd.DataFrame, dataset: str, model: str, metric: str) -> tuple[float, float, str]:
    """(mean, sd, table text) of a main-experiment value; NaN and 'n/a' when absent."""
    hit = summary[(summary.dataset == dataset) & (summary.model == model) & (summary.metric == metric)
                  & (summary.experiment == "main")]  # fmt: skip
    if hit.empty:
        return float("nan"), float("nan"), "n/a"
    r = hit.iloc[0]
    return float(r["mean"]), float(r["sd"]), rpt.cell_text(r)


class _Run:
    """What the figures read from the store: the planned tasks of the report (per task slot, the
    latest run's), the finished ones and their artifacts."""

    def __init__(self, store, report: dict[str, Any] | None = None):
        self.store = store
        report = report if report is not None else rpt.build(store)
        planned = report["planned"]
        tasks = store.tasks()
        self.all_tasks = tasks[tasks.key.isin(set(planned.key))].reset_index(drop=True)
        self.tasks = self.all_tasks[self.all_tasks.status == "done"].reset_index(drop=True)
        self.values = report["values"]

    def main_tasks(self, dataset: str) -> pd.DataFrame:
        t = self.tasks
        return t[(t.dataset == dataset) & (t.experiment == "main")]

    def models(self, dataset: str) -> list[str]:
        return rpt._order_models(sorted(set(self.tasks[self.tasks.dataset == dataset].model)))

    def artifacts(self, key: str, prefix: str) -> dict[str, np.ndarray]:
        names = [n for n in self.store.artifact_names(key) if n.startswith(prefix + "/")]
        return {n[len(prefix) + 1 :]: self.store.artifact(key, n) for n in names}

    def figure_tasks(self, dataset: str, prefix: str, required: str) -> tuple[int | None, dict[str, str]]:
        """One main task per model holding artifact ``prefix/required``, all of one seed when
        possible (the lowest seed the most models share): {model: task key}."""
        t = self.main_tasks(dataset)
        have: dict[str, dict[int, str]] = {}
        for r in t.itertuples():
            if f"{prefix}/{required}" in self.store.artifact_names(r.key):
                have.setdefault(r.model, {})[int(r.seed)] = r.key
        if not have:
            return None, {}
        seeds = sorted({s for d in have.values() for s in d})
        seed = max(seeds, key=lambda s: (sum(s in d for d in have.values()), -s))
        chosen = {m: d.get(seed, d[min(d)]) for m, d in have.items()}
        order = rpt._order_models(list(chosen))
        return seed, {m: chosen[m] for m in order}

    def task_value(self, key: str, metric: str) -> float | None:
        hit = self.values[(self.values.task_key == key) & (self.values.metric == metric)]
        return float(hit.value.iloc[0]) if len(hit) else None

    def seed_of(self, key: str) -> int:
        return int(self.tasks[self.tasks.key == key].seed.iloc[0])


# -- Fig. 4: UMAP by source and by cell type -----------------------------------------------------
def _scatter(ax, xy, colour, size, alpha=0.8, label=None, zorder=1):
    if len(xy):
        ax.scatter(xy[:, 0], xy[:, 1], s=size, c=[colour], alpha=alpha, linewidths=0, label=label,
                   zorder=zorder, rasterized=True)  # fmt: skip


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
    types = sorted(set(first["real_labels"].tolist()).union(
        *(set(a["generated_labels"].tolist()) | set(a["generated_knn_labels"].tolist()) for a in arts.values())
    ))  # fmt: skip
    tcol = _colours(types)
    mcol = _colours(models, "Set1")
    ncol = 1 + len(models)
    Figure = _figure()
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
        ax.set_title(f"{_model_label(m)} (n={len(a['generated_umap'])})", fontsize=10)
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
        ax.set_title(f"{_model_label(m)}, by {'cell type' if conditional else 'nearest real type*'}",
                     fontsize=10)  # fmt: skip
    for ax in axes.ravel():
        _clean(ax)
    from matplotlib.lines import Line2D

    src = [Line2D([], [], marker="o", ls="", color=REAL_COLOUR, label="real test")]
    src += [
        Line2D([], [], marker="o", ls="", color=mcol[m], label=f"{_model_label(m)} generated") for m in models
    ]
    axes[0, -1].legend(handles=src, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    typ = [Line2D([], [], marker="o", ls="", color=tcol[t], label=t) for t in types]
    axes[1, -1].legend(handles=typ, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False,
                       ncol=1 if len(types) <= 14 else 2)  # fmt: skip
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
    Figure = _figure()
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
            panels.append((_model_label(m), a["generated_umap"], col, a["real_umap"]))
        sc = None
        for j, (title, xy, expr, background) in enumerate(panels):
            ax = axes[i, j]
            if background is not None and len(background):
                ax.scatter(
                    background[:, 0], background[:, 1], s=size, c="#eeeeee", linewidths=0, rasterized=True
                )
            if expr is not None and len(xy):
                order = np.argsort(expr, kind="stable")  # high expression drawn on top
                sc = ax.scatter(xy[order, 0], xy[order, 1], s=size, c=expr[order], cmap="viridis", vmin=0,
                                vmax=vmax, linewidths=0, rasterized=True)  # fmt: skip
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
def _roc_curves(run: _Run, keys: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
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


def fig_roc(run: _Run, dataset: str, summary: pd.DataFrame):
    t = run.main_tasks(dataset)
    models = [
        m for m in rpt._order_models(sorted(set(t.model))) if _roc_curves(run, list(t[t.model == m].key))
    ]
    if not models:
        return None
    ncol = min(4, len(models))
    nrow = int(np.ceil(len(models) / ncol))
    Figure = _figure()
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
        ax.fill_between(grid, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color="#1e88e5", alpha=0.2,
                        lw=0, label="mean ± sd over folds")  # fmt: skip
        ax.plot(grid, mean, color="#0d47a1", lw=2, label="mean ROC")
        ax.plot([0, 1], [0, 1], ls="--", color="#d32f2f", lw=1.2, label="chance (AUC 0.5)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate", fontsize=9)
        ax.set_ylabel("true positive rate", fontsize=9)
        auc = _summary_cell(summary, dataset, m, "auc")[2]
        ax.set_title(f"{_model_label(m)}: AUC {auc}\n{len(curves)} folds, {len(keys)} seed(s)", fontsize=10)
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


def fig_corr(run: _Run, keys: dict[str, str], dataset: str):
    models = list(keys)
    ncol = min(3, len(models))
    nrow = int(np.ceil(len(models) / ncol))
    Figure = _figure()
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
        ax.set_title(f"{_model_label(m)} (seed {run.seed_of(keys[m])}): {cd_txt}\n"
                     "lower: generated, upper: real", fontsize=10)  # fmt: skip
    if im is not None:
        fig.colorbar(im, ax=list(axes.ravel()), fraction=0.02, pad=0.02, label="Pearson r")
    fig.suptitle(f"{dataset}: Pearson correlation of the top DE genes per cluster", fontsize=11)
    return fig


# -- Fig. 7: augmentation ------------------------------------------------------------------------
CONDITIONS = {"real": ("real only (downsampled)", "#1e88e5"),
              "oversampled": ("oversampled", "#757575"),
              "augmented": ("augmented with generated cells", "#e53935")}  # fmt: skip


def augmentation_frame(values: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """F1 per (model, condition, fraction): mean, min and max over the seeds the arms share."""
    v = values[(values.dataset == dataset) & (values.experiment == "augmentation")]
    v = rpt.align_augmentation_arms(rpt._finite(v))
    rows = []
    for r in v.itertuples():
        m = rpt.AUG_RE.match(r.metric)
        if m and m["cond"] in CONDITIONS:
            rows.append((r.model, m["cond"], float(m["frac"]), r.seed, r.value))
    df = pd.DataFrame(rows, columns=["model", "cond", "frac", "seed", "value"])
    if df.empty:
        return df
    return df.groupby(["model", "cond", "frac"])["value"].agg(["mean", "min", "max", "count"]).reset_index()


def fig_augmentation(run: _Run, dataset: str):
    agg = augmentation_frame(run.values, dataset)
    if agg.empty:
        return None
    models = rpt._order_models(sorted(set(agg.model)))
    ncol = min(4, len(models))
    nrow = int(np.ceil(len(models) / ncol))
    Figure = _figure()
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
        ax.set_title(_model_label(m), fontsize=10)
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
    models = rpt._order_models(sorted(set(sub.model)))
    Figure = _figure()
    fig = Figure(figsize=(10, 0.5 * len(models) + 1.6))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    colours = _colours(models, "Set1")
    for ax, (metric, label) in zip(axes, metrics, strict=True):
        y = np.arange(len(models))
        vals = [_summary_cell(summary, dataset, m, metric) for m in models]
        means = np.array([v[0] for v in vals])
        sds = np.nan_to_num(np.array([v[1] for v in vals]))
        ok = ~np.isnan(means)
        ax.barh(y[ok], means[ok], xerr=sds[ok], color=[colours[m] for m, o in zip(models, ok, strict=True) if o],
                capsize=3)  # fmt: skip
        for yi, mean, sd, text in zip(y, means, sds, [v[2] for v in vals], strict=True):
            if not np.isnan(mean):
                ax.text(mean + sd, yi, "  " + text, va="center", fontsize=8)
        ax.set_yticks(y, [_model_label(m) for m in models], fontsize=9)
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
    quality = [("auc", "real-vs-synthetic AUC (0.5 ideal)"), ("mmd", "MMD (lower is better)"),
               ("cd", "correlation discrepancy (lower)")]  # fmt: skip
    sub = summary[summary.dataset == dataset]
    have = [(m, lab) for m, lab in quality if m in set(sub.metric)]
    if "train_seconds" not in set(sub.metric) or not have:
        return None
    models = rpt._order_models(sorted(set(sub.model)))
    colours = _colours(models, "Set1")
    Figure = _figure()
    fig = Figure(figsize=(4.2 * len(have), 3.8))
    axes = fig.subplots(1, len(have), squeeze=False)[0]
    for ax, (metric, label) in zip(axes, have, strict=True):
        for m in models:
            x, xsd, _ = _summary_cell(summary, dataset, m, "train_seconds")
            y, ysd, _ = _summary_cell(summary, dataset, m, metric)
            if np.isnan(x) or np.isnan(y):
                continue
            x = max(x, 1e-3)
            ax.errorbar([x], [y], xerr=[np.nan_to_num(xsd)], yerr=[np.nan_to_num(ysd)], marker="o" if m != CONTROL
                        else "s", mfc="none" if m == CONTROL else colours[m], color=colours[m], ms=7, capsize=3)  # fmt: skip
            ax.annotate(_model_label(m), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        if metric == "auc":
            ax.axhline(0.5, ls="--", color="#d32f2f", lw=1)
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.12)
        ax.set_xlabel("training time (s, log)", fontsize=9)
        ax.set_ylabel(label, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{dataset}: quality against training time (mean ± sd over seeds; square: control)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    return fig


def convergence_curves(run: _Run, dataset: str) -> dict[str, list[dict[str, np.ndarray]]]:
    """{model: [one dict of snapshot columns (step, train_seconds, mmd, auc, ...) per seed]} from
    the main tasks' ``convergence/*`` artifacts (bench.convergence)."""
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for r in run.main_tasks(dataset).sort_values(["model", "seed"]).itertuples():
        arts = run.artifacts(r.key, "convergence")
        if len(arts.get("step", [])):
            out.setdefault(r.model, []).append(arts)
    return {m: out[m] for m in rpt._order_models(list(out))}


def fig_convergence(run: _Run, dataset: str):
    """MMD and AUC (50 PCs, 100 trees) of each snapshot against training time and against
    optimizer steps, one line per model and seed: the paper's "good quality sooner" as a curve."""
    curves = convergence_curves(run, dataset)
    if not curves:
        return None
    panels = [(y, lab) for y, lab in (("mmd", "MMD (lower is better)"), ("auc", "AUC, 50 PCs (0.5 ideal)"))
              if any(y in c for cs in curves.values() for c in cs)]  # fmt: skip
    colours = _colours(list(curves), "Set1")
    Figure = _figure()
    fig = Figure(figsize=(10, 3.4 * len(panels)))
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for row, (y, label) in enumerate(panels):
        for col, (x, xlabel) in enumerate((("train_seconds", "training time (s, log)"),
                                           ("step", "optimizer steps (log)"))):  # fmt: skip
            ax = axes[row][col]
            for model, runs in curves.items():
                for i, c in enumerate(runs):
                    if y not in c:
                        continue
                    xs = np.maximum(np.asarray(c[x], float), 1e-3)
                    ax.plot(xs, c[y], marker="o", ms=3, lw=1.2, color=colours[model], alpha=0.85,
                            label=_model_label(model) if i == 0 else None)  # fmt: skip
            if y == "auc":
                ax.axhline(0.5, ls="--", color="#d32f2f", lw=1)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel, fontsize=9)
            ax.set_ylabel(label, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{dataset}: cheap metrics at 1/8, 1/4, 1/2 and all of each model's budget (one line per seed)",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    return fig


# -- page sections -------------------------------------------------------------------------------
def _provenance_html(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return _note("this store records no run")
    parts = []
    for run in runs:
        prov, spec = run.get("provenance") or {}, run.get("spec") or {}
        git = prov.get("git") or {}
        host = prov.get("host") or {}
        gpu = prov.get("gpu") or {}
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.get("created") or 0))
        rows = [
            ("command", f"<code>{_esc(prov.get('command', ''))}</code>"),
            ("started", _esc(prov.get("time") or created)),
            ("commit", _esc(f"{git.get('commit')}{' (dirty working tree)' if git.get('dirty') else ''}")),
            ("models", _esc(", ".join(map(str, spec.get("models") or [])))),
            ("datasets", _esc(", ".join(map(str, spec.get("datasets") or [])))),
            ("seeds", _esc(", ".join(map(str, spec.get("seeds") or [])))),
            ("profile", _esc(spec.get("profile", ""))),
            ("python", _esc(prov.get("python", ""))),
            (
                "host",
                _esc(
                    f"{host.get('name')} — {host.get('platform')}, {host.get('cpus')} CPUs"
                    + (f", Slurm job {host['slurm_job']}" if host.get("slurm_job") else "")
                ),
            ),  # fmt: skip
            (
                "GPU",
                _esc(", ".join(gpu.get("gpus") or []) or "none")
                + (_esc(f" (CUDA {gpu['cuda']})") if gpu.get("cuda") else ""),
            ),  # fmt: skip
            ("packages", _esc(", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items()))),
        ]
        code = prov.get("code") or {}
        for name, v in (code.get("generators") or {}).items():
            rows.append((f"generator {_esc(name)}", _esc(f"{v.get('distribution') or 'not installed'} "
                         f"{v.get('version') or ''}{' (editable)' if v.get('editable') else ''}, code "
                         f"{v.get('code_hash')} ({v.get('files')} files)")))  # fmt: skip
        if code.get("scoring"):
            rows.append(("scoring code", _esc(code["scoring"])))
        for name, info in (prov.get("datasets") or {}).items():
            rows.append((f"dataset {name}", _esc(json.dumps(info, default=str))))
        if prov.get("merged_from"):
            rows.append(("merged from", _esc(prov["merged_from"])))
        body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        parts.append(
            f"<h3>run {run.get('run_id')}</h3><table>{body}</table>"
            f"<details><summary>full spec</summary><pre>{_esc(json.dumps(spec, indent=1, default=str))}</pre>"
            "</details>"
        )
    return "".join(parts)


def _tasks_html(run: _Run) -> str:
    t = run.all_tasks
    if t.empty:
        return _note("no tasks")
    counts = t.groupby(["dataset", "experiment", "status"]).size().rename("tasks").reset_index()
    out = table_html(counts.set_index(["dataset", "experiment", "status"]))
    failed = t[t.status != "done"]
    if len(failed):
        rows = "".join(
            f"<tr><td>{_esc(r.dataset)}</td><td>{_esc(r.model)}</td><td>{_esc(r.seed)}</td>"
            f"<td>{_esc(r.experiment)}</td><td>{_esc(r.status)}</td><td class='failed'>{_esc(r.error or '')}</td></tr>"
            for r in failed.itertuples()
        )
        out += ("<h3>tasks not done</h3><table><thead><tr><th>dataset</th><th>model</th><th>seed</th>"
                f"<th>experiment</th><th>status</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>")  # fmt: skip
    return out


def _captions(dataset: str, seed: int | None) -> dict[str, str]:
    s = f" Seed {seed}." if seed is not None else ""
    return {
        "umap": "Top: generated cells (colour) over the real test cells (grey). Bottom: cell types; "
        "conditional models' cells carry the type they were generated for, unconditional models' "
        "cells (*) the majority type of their 15 nearest real test cells on the 50 PCs. UMAP is fit "
        f"on the real test cells and generated cells are placed with UMAP.transform.{s}",
        "markers": "Log expression (library size 20,000, log1p) of marker genes; one colour scale per "
        "gene (0 to the real cells' 99th percentile), generated cells over the real ones (light grey)." + s,
        "roc": "Each fold's ROC curve (light), the mean over folds and seeds (dark) with ± 1 sd band; the "
        "red dashed line is chance. The AUC in the title is the table's mean ± sd over seeds.",
        "correlation": "Pearson correlation of the top 5 DE genes per cluster (real training cells): "
        "generated cells below the diagonal, real test cells above. Symmetric means the generator "
        "kept the gene-gene structure; CD is the task's correlation discrepancy (Eq. 6)." + s,
        "augmentation": "Rare-class F1 of a balanced random forest trained on the downsampled real data, "
        "on it with the rare class oversampled, and with generated rare cells added; mean over seeds, "
        "bars show the range (as Fig. 7).",
        "timing": "Mean ± sd over seeds of the training wall time and the generation time scaled to "
        "100,000 cells (log axis when the models differ by more than 100x).",
        "tradeoff": "Each model's quality against its training time (mean ± sd over seeds); closer to "
        "the bottom-left is better (AUC: closer to 0.5).",
        "convergence": "Cells generated part-way through training (1/8, 1/4, 1/2 and all of the budget) "
        "scored against the real test cells with the cheap metrics (MMD; AUC of a 100-tree forest on 50 PCs); "
        "a curve still falling at the end means the budget was too short (tables: last doubling).",
    }


def _tables_html(dataset: str, tables: dict[str, Any]) -> str:
    slug = _slug(dataset)
    parts = [f'<h3 id="tables-{slug}">{_esc(dataset)}</h3>', table_html(tables["main"])]
    for title, df in tables["paper"].items():
        parts.append(f"<h4>{_esc(title)}</h4>{table_html(df)}")
    for group, df in tables.get("suite", {}).items():
        parts.append(f"<h4>{_esc(group)}</h4>{table_html(df)}")
    if not tables.get("scaled", pd.DataFrame()).empty:
        parts.append(f'<h4 id="scaled-{slug}">{_esc(rpt.SCALED_TITLE)}</h4>{table_html(tables["scaled"])}')
    return "".join(parts)


def _dataset_html(run: _Run, dataset: str, summary: pd.DataFrame) -> str:
    slug = _slug(dataset)
    parts = [f'<section id="ds-{slug}"><h2>{_esc(dataset)}: figures</h2>']

    seed, keys = run.figure_tasks(dataset, "embedding", "real_umap")
    cap = _captions(dataset, seed)
    arts = {m: run.artifacts(k, "embedding") for m, k in keys.items()}
    for sec in ("umap", "markers"):
        parts.append(f'<h3 id="{sec}-{slug}">{SECTIONS[sec]}</h3>')
        if not arts:
            parts.append(_note("no embedding artifacts: the run did not include the 'embedding' metric"))
            continue
        if sec == "markers" and not len(next(iter(arts.values()))["marker_genes"]):
            parts.append(_note("no marker genes were found for this dataset"))
            continue
        fig = fig_umap(arts, dataset) if sec == "umap" else fig_markers(arts, dataset)
        parts.append(_img(fig, f"{dataset} {SECTIONS[sec]}", _esc(cap[sec])))

    parts.append(f'<h3 id="roc-{slug}">{SECTIONS["roc"]}</h3>')
    fig = fig_roc(run, dataset, summary)
    parts.append(
        _img(fig, f"{dataset} ROC", _esc(cap["roc"])) if fig else _note("no ROC curves stored (auc)")
    )

    parts.append(f'<h3 id="correlation-{slug}">{SECTIONS["correlation"]}</h3>')
    cseed, ckeys = run.figure_tasks(dataset, "correlation_discrepancy", "real_corr")
    if ckeys:
        parts.append(_img(fig_corr(run, ckeys, dataset), f"{dataset} correlation",
                          _esc(_captions(dataset, cseed)["correlation"])))  # fmt: skip
    else:
        parts.append(_note("no correlation matrices stored (correlation_discrepancy)"))

    for sec, fn in (("augmentation", lambda: fig_augmentation(run, dataset)),
                    ("timing", lambda: fig_timing(summary, dataset)),
                    ("tradeoff", lambda: fig_tradeoff(summary, dataset)),
                    ("convergence", lambda: fig_convergence(run, dataset))):  # fmt: skip
        parts.append(f'<h3 id="{sec}-{slug}">{SECTIONS[sec]}</h3>')
        fig = fn()
        if fig is None:
            what = {"augmentation": "no augmentation experiment in this run (conditional models only)",
                    "timing": "no timing values in this run",
                    "tradeoff": "needs train_seconds and a quality value (auc, mmd or cd)",
                    "convergence": "no training snapshots (only iteratively trained models report them)"}[sec]  # fmt: skip
            parts.append(_note(what))
        else:
            parts.append(_img(fig, f"{dataset} {sec}", _esc(cap[sec])))
    from bench.html_suite import suite_html  # the metric suite's figures (imports this module)

    parts.append(suite_html(run, dataset, summary))
    parts.append("</section>")
    return "".join(parts)


def render(store) -> str:
    """The whole report page as a string."""
    report = rpt.build(store)
    run = _Run(store, report)
    summary = report["summary"]
    runs = store.runs()
    datasets = list(report["datasets"])
    nav = ['<a href="#summary">summary</a>', '<a href="#provenance">provenance</a>']
    nav += [f'<a href="#ds-{_slug(d)}">{_esc(d)} figures</a>' for d in datasets]
    nav.append('<a href="#tasks">tasks</a>')
    title = "scgenbench report" + (f": {', '.join(datasets)}" if datasets else "")
    body = [
        f"<header><h1>{_esc(title)}</h1><p>{_esc(str(store.run_dir))} — generated "
        f"{_esc(time.strftime('%Y-%m-%d %H:%M:%S'))}; figures follow the ACTIVA paper (Heydari et al.)</p></header>",
        f"<nav>{' '.join(nav)}</nav><main>",
    ]
    if not datasets:
        body.append(
            "<section><h2>No results</h2>" + _note("the store has no finished task yet") + "</section>"
        )
    else:
        body.append('<section id="summary"><h2>Summary tables</h2>')
        body.append(_note(f"{rpt.LEGEND[0].upper()}{rpt.LEGEND[1:]} (here: highlighted); the same numbers as "
                          "the console tables of `bench report`."))  # fmt: skip
        body += [_tables_html(d, report["datasets"][d]) for d in datasets]
        body.append("</section>")
    body.append(f'<section id="provenance"><h2>Provenance</h2>{_provenance_html(runs)}</section>')
    for d in datasets:
        body.append(_dataset_html(run, d, summary))
    body.append(f'<section id="tasks"><h2>Tasks</h2>{_tasks_html(run)}</section>')
    body.append("</main>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_html(store, run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default ``RUN_DIR/report.html``) atomically; returns its path."""
    out = Path(out) if out else Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(store)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is a normal file
    os.replace(tmp, out)
    return out
