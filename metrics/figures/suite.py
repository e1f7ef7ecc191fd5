"""The report figures of the metric suite beyond the paper (``FigureSpec.draw``, read from the store
through the report's view: values and the arrays the scoring stage kept): PRDC bars, the
memorisation histogram, the per-type heatmap and the DE-recovery scatter. A figure whose values or
arrays are missing is None (the report prints the figure's ``missing`` note). docs/report.md
describes each figure.
"""

from __future__ import annotations

import numpy as np

from bench.api import REAL_COLOUR, Drawing, colour_map, figure_class, figure_grid

PRDC_VALUES = ("precision", "recall", "density", "coverage")
PER_TYPE_VALUES = (("mmd", "MMD"), ("energy", "energy distance"), ("auc", "RF AUC (0.5 ideal)"))


def fig_prdc(run, dataset: str, k: int | str = 5):
    """Grouped bars: the four scores per model, mean over seeds with the sd as error bar; ``k``: the
    neighbours of the k-NN balls the run used (for the title)."""
    summary = run.summary
    sub = summary[
        (summary.dataset == dataset) & (summary.experiment == "main") & summary.metric.isin(PRDC_VALUES)
    ]
    if sub.empty:
        return None
    models = run.order(sorted(set(sub.model)))
    colours = colour_map(list(PRDC_VALUES), "tab10")
    fig = figure_class()(figsize=(max(6.0, 1.3 * len(models) + 2.5), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(PRDC_VALUES)
    x = np.arange(len(models))
    for i, value in enumerate(PRDC_VALUES):
        cells = [run.summary_cell(dataset, m, value) for m in models]
        means = np.array([c[0] for c in cells])
        sds = np.nan_to_num(np.array([c[1] for c in cells]))
        ax.bar(
            x + (i - 1.5) * width,
            np.nan_to_num(means),
            width,
            yerr=sds,
            color=colours[value],
            label=value,
            capsize=2,
        )
    ax.axhline(1.0, color="#9e9e9e", lw=0.8, ls=":")
    ax.set_xticks(x, [run.label(m) for m in models], fontsize=9)
    ax.set_ylabel("score (higher is better)", fontsize=9)
    ax.legend(fontsize=8, ncol=4, loc="upper left", bbox_to_anchor=(0, 1.13))
    ax.tick_params(labelsize=8)
    ax.set_title(
        f"{dataset}: precision, recall, density, coverage (k = {k}, 50 PCs; mean ± sd over seeds)",
        fontsize=11,
        pad=28,
    )
    fig.tight_layout()
    return fig


def fig_memorisation(run, keys: dict[str, str], dataset: str):
    """Per model: histogram of each generated cell's distance to its closest training cell, over the
    same for the real test cells (grey), with the copy threshold (the test cells' ``quantile``, 1 % by
    default)."""
    fig, axes = figure_grid(len(keys), 4, 3.8, 3.0)
    for ax, (m, key) in zip(axes, keys.items(), strict=False):
        a = run.artifacts(key, "memorisation")
        gen, test = np.asarray(a["generated_distances"], float), np.asarray(a["test_distances"], float)
        hi = float(np.quantile(np.r_[gen, test], 0.99)) or 1.0
        bins = np.linspace(0.0, hi, 40)
        ax.hist(
            np.clip(test, 0, hi),
            bins=bins,
            color=REAL_COLOUR,
            alpha=0.7,
            density=True,
            label="real test",
        )
        ax.hist(np.clip(gen, 0, hi), bins=bins, color="#e53935", alpha=0.55, density=True, label="generated")
        ax.axvline(float(a["threshold"][0]), color="#000", ls="--", lw=1, label="copy threshold")
        ratio, share = run.task_value(key, "memorisation_ratio"), run.task_value(key, "memorisation_share")
        txt = f"ratio {ratio:.2f}, share {share:.2f}" if ratio is not None and share is not None else ""
        ax.set_title(f"{run.label(m)} (seed {run.seed_of(key)})\n{txt}", fontsize=9)
        ax.set_xlabel("distance to closest training cell (50 PCs)", fontsize=8)
        ax.set_yticks([])
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(f"{dataset}: distance of each cell to its closest training cell", fontsize=11)
    fig.tight_layout()
    return fig


def per_type_matrix(run, keys: dict[str, str], value: str) -> tuple[list[str], list[str], np.ndarray]:
    """(models, types, models x types matrix of one per-type value; NaN where a type was not scored)."""
    arts = {m: run.artifacts(k, "per_type") for m, k in keys.items()}
    types = sorted({str(t) for a in arts.values() for t in a["types"]})
    mat = np.full((len(arts), len(types)), np.nan)
    for i, a in enumerate(arts.values()):
        for t, v in zip(a["types"], a.get(value, []), strict=False):
            mat[i, types.index(str(t))] = float(v)
    return list(arts), types, mat


def fig_per_type(run, keys: dict[str, str], dataset: str):
    """Heatmaps (models x cell types) of the per-type MMD, energy distance and AUC of one seed."""
    panels = [
        (v, lab)
        for v, lab in PER_TYPE_VALUES
        if any(v in run.artifacts(k, "per_type") for k in keys.values())
    ]
    if not panels:
        return None
    models, types, _ = per_type_matrix(run, keys, panels[0][0])
    if not types:  # every type had too few cells
        return None
    fig, axes = figure_grid(
        len(panels), 3, 0.55 * len(types) + 2.6, 0.42 * len(models) + 2.4, layout="constrained"
    )
    for ax, (value, label) in zip(axes, panels, strict=False):
        models, types, mat = per_type_matrix(run, keys, value)
        # AUC is coloured by its distance to 0.5 (0.3 as bad as 0.7); the cells show the AUC itself
        shade = np.abs(mat - 0.5) if value == "auc" else mat
        masked = np.ma.masked_invalid(shade)
        im = ax.imshow(
            masked,
            cmap="viridis_r" if value != "auc" else "magma_r",
            aspect="auto",
            vmin=0.0 if value == "auc" else None,
            vmax=0.5 if value == "auc" else None,
        )
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                if np.isfinite(mat[i, j]):
                    dark = float(im.norm(shade[i, j])) > 0.5  # the reversed maps are dark at the top
                    ax.text(
                        j,
                        i,
                        f"{mat[i, j]:.2g}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="w" if dark else "k",
                    )
        ax.set_xticks(range(len(types)), types, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(models)), [run.label(m) for m in models], fontsize=8)
        ax.set_title(
            f"{label} (colour: |AUC − 0.5|)" if value == "auc" else f"{label} (lower is better)", fontsize=9
        )
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    seeds = sorted({run.seed_of(k) for k in keys.values()})
    fig.suptitle(
        f"{dataset}: generated cells of each type against real test cells of that type "
        f"(seed {', '.join(map(str, seeds))}; blank: too few cells)",
        fontsize=10,
    )
    return fig


def fig_de_recovery(run, keys: dict[str, str], dataset: str):
    """Per model: log2 fold change (type vs rest) of each type's top real DE genes, real test cells (x)
    against generated cells (y), coloured by type, with the identity line."""
    all_types = sorted({str(t) for k in keys.values() for t in run.artifacts(k, "de_recovery")["types"]})
    if not all_types:  # every type had too few cells
        return None
    fig, axes = figure_grid(len(keys), 4, 3.6, 3.6)
    colours = colour_map(all_types)
    for ax, (m, key) in zip(axes, keys.items(), strict=False):
        a = run.artifacts(key, "de_recovery")
        types = [str(t) for t in a["types"]]
        x, y, idx = (
            np.asarray(a["real_lfc"], float),
            np.asarray(a["generated_lfc"], float),
            np.asarray(a["type_index"]),
        )
        for i, t in enumerate(types):
            sel = idx == i
            ax.scatter(
                x[sel], y[sel], s=8, color=colours[t], alpha=0.7, linewidths=0, label=t, rasterized=True
            )
        if len(x):
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            ax.plot([lo, hi], [lo, hi], color="#d32f2f", ls="--", lw=1)
        r, j = run.task_value(key, "de_lfc_r"), run.task_value(key, "de_jaccard")
        txt = f"r {r:.2f}, Jaccard {j:.2f}" if r is not None and j is not None else ""
        ax.set_title(f"{run.label(m)} (seed {run.seed_of(key)})\n{txt}", fontsize=9)
        ax.set_xlabel("log2 FC, real test cells", fontsize=8)
        ax.set_ylabel("log2 FC, generated cells", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles = [axes[0].scatter([], [], s=12, color=colours[t]) for t in all_types]
    fig.legend(
        handles,
        all_types,
        fontsize=7,
        loc="lower center",
        ncol=min(6, len(all_types)),
        bbox_to_anchor=(0.5, -0.04),
    )
    fig.suptitle(f"{dataset}: DE recovery per cell type (top real DE genes, type vs rest)", fontsize=11)
    fig.tight_layout()
    return fig


# -- the draw callables (FigureSpec.draw) ---------------------------------------------------------
def draw_prdc(view, dataset: str):
    k = [o.get("k") for o in view.options("prdc", view.tasks[view.tasks.dataset == dataset].key)]
    return fig_prdc(view, dataset, k=k[0] if len(k) == 1 else "varied")


def _draw_per_task(figure, metric: str, required: str):
    def draw(view, dataset: str):
        seed, keys = view.figure_tasks(dataset, metric, required)
        if not keys:
            return None
        fig = figure(view, keys, dataset)
        return None if fig is None else Drawing(fig, tuple(keys.values()), seed)

    return draw


draw_memorisation = _draw_per_task(fig_memorisation, "memorisation", "generated_distances")
draw_per_type = _draw_per_task(fig_per_type, "per_type", "types")
draw_de_recovery = _draw_per_task(fig_de_recovery, "de_recovery", "real_lfc")
