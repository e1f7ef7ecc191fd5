"""The embedding metric's report figures (Fig. 4, matplotlib): a UMAP of real and generated cells by
source and by cell type, and the marker genes' expression per source. ``draw_umap`` and
``draw_markers`` are the figures' ``draw`` callables (:class:`bench.api.FigureSpec`)."""

from __future__ import annotations

import numpy as np

from bench.api import REAL_COLOUR, Drawing, colour_map, figure_class


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


def fig_umap(arts: dict[str, dict[str, np.ndarray]], dataset: str, model_label=str):
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


def fig_markers(arts: dict[str, dict[str, np.ndarray]], dataset: str, model_label=str):
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


NO_EMBEDDING = "no embedding artifacts: the run did not include the 'embedding' metric"


def _embedding(view, dataset: str):
    seed, keys = view.figure_tasks(dataset, "embedding", "real_umap")
    return seed, keys, {m: view.artifacts(k, "embedding") for m, k in keys.items()}


def draw_umap(view, dataset: str):
    seed, keys, arts = _embedding(view, dataset)
    if not arts:
        return None
    return Drawing(fig_umap(arts, dataset, view.label), tuple(keys.values()), seed)


def draw_markers(view, dataset: str):
    seed, keys, arts = _embedding(view, dataset)
    if not arts:
        return None
    if not len(next(iter(arts.values()))["marker_genes"]):
        return "no marker genes were found for this dataset"
    return Drawing(fig_markers(arts, dataset, view.label), tuple(keys.values()), seed)
