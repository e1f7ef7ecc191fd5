"""UMAP embedding and marker-gene expression of real and generated cells (ACTIVA paper Fig. 4).

The report draws its UMAP and marker-gene figures from what this metric stores, so a report never
retrains or regenerates. The embedding follows the paper's qualitative assessment (section 5.2):
real test cells and generated cells go through the evaluation contract (library size 20,000,
log1p, PCA(50) fit on the real training cells); UMAP (McInnes et al. 2018) is fit on the real
test cells' 50 PCs and the generated cells are placed on that embedding with ``UMAP.transform``,
so every model is drawn on the same map of the real data.

Marker genes: the paper's (and the usual) markers that are among the dataset's genes (e.g. CD79A,
MS4A1, NKG7, LYZ for PBMC; Hmgb2 for the mouse brain); when fewer than ``min_markers`` of them are
present, the top differentially expressed gene of each real training cluster (scanpy
``rank_genes_groups``, Wilcoxon, one cluster vs the rest) fills the list.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bench.api import INTEGER_1, INTEGER_2, FigureSpec, Metric, MetricOutput, import_umap
from bench.metrics.figures.cells import NO_EMBEDDING, draw_markers, draw_umap

# The paper's markers (Fig. 4 and section 5.3: CD79A, CD19, MS4A1 for B cells; LTB, LDHB, CCL5,
# NKG7, GZMA for PBMC clusters 1-2; Hmgb2 for Brain Small) and the usual PBMC / E18 mouse brain
# markers. Matched case-sensitively against var_names, in this order.
PAPER_MARKERS: tuple[str, ...] = (
    # human PBMC
    "CD79A",
    "MS4A1",
    "CD19",
    "CD3E",
    "IL7R",
    "CCL5",
    "NKG7",
    "GNLY",
    "LYZ",
    "CD14",
    "FCGR3A",
    "CST3",
    "FCER1A",
    "PPBP",
    "LTB",
    "LDHB",
    "GZMA",
    # mouse brain (E18)
    "Hmgb2",
    "Top2a",
    "Neurod6",
    "Neurod2",
    "Gad2",
    "Dlx6os1",
    "Reln",
    "Olig1",
    "Aldoc",
    "Mki67",
)


@dataclass
class EmbeddingResult:
    """UMAP coordinates of real and generated cells on the embedding fit on the real cells."""

    real_umap: np.ndarray  # (n_real, 2)
    generated_umap: np.ndarray  # (n_generated, 2)
    real_index: np.ndarray  # rows of the real input that were embedded (sorted)
    generated_index: np.ndarray  # rows of the generated input that were embedded (sorted)


def _draw(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(rng.choice(n, size=int(cap), replace=False))


def umap_embed(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    seed: int,
    max_cells: int | None = None,
    n_neighbors: int = 15,
    min_dist: float = 0.5,
) -> EmbeddingResult:
    """Fit UMAP on ``real`` (cells x features, e.g. 50 PCs) and place ``generated`` on it.

    At most ``max_cells`` cells per side are embedded, drawn without replacement with
    ``numpy.random.default_rng(seed)`` (real side first). UMAP is seeded with ``seed``
    (``random_state``: single-threaded and reproducible); ``n_neighbors`` is capped at the number
    of real cells minus one. Defaults are umap-learn's and scanpy's (``min_dist`` 0.5).
    """
    real = np.asarray(real, dtype=np.float32)
    generated = np.asarray(generated, dtype=np.float32)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"real {real.shape} and generated {generated.shape} must be 2-D with equal columns")
    if real.shape[0] < 3:
        raise ValueError(f"UMAP needs at least 3 real cells, got {real.shape[0]}")
    rng = np.random.default_rng(seed)
    ri = _draw(real.shape[0], max_cells, rng)
    gi = _draw(generated.shape[0], max_cells, rng)
    UMAP = import_umap().UMAP
    reducer = UMAP(
        n_components=2,
        n_neighbors=int(min(n_neighbors, len(ri) - 1)),
        min_dist=min_dist,
        random_state=int(seed),
        transform_seed=int(seed),
        n_jobs=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real_umap = reducer.fit_transform(real[ri])
        gen_umap = reducer.transform(generated[gi]) if len(gi) else np.zeros((0, 2))
    return EmbeddingResult(
        real_umap=np.asarray(real_umap, dtype=np.float32),
        generated_umap=np.asarray(gen_umap, dtype=np.float32),
        real_index=ri,
        generated_index=gi,
    )


def top_marker_per_group(
    X_log, labels: np.ndarray, var_names: list[str], *, method: str = "wilcoxon", exclude: tuple = ()
) -> list[str]:
    """The highest-ranked gene of each group (scanpy ``rank_genes_groups``, one group vs the rest,
    on log-normalised ``X_log``), in scanpy's sorted group order, skipping genes already chosen or
    in ``exclude``. Groups of fewer than two cells are left out (scanpy cannot test them)."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    labels = np.asarray(labels).astype(str)
    counts = pd.Series(labels).value_counts()
    keep = np.isin(labels, counts[counts >= 2].index)
    if len(set(labels[keep])) < 2:
        return []
    adata = ad.AnnData(X=sp.csr_matrix(X_log)[np.flatnonzero(keep)])
    adata.var_names = list(map(str, var_names))
    adata.obs["group"] = pd.Categorical(labels[keep])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(adata, "group", method=method, n_genes=min(50, adata.n_vars), use_raw=False)
    names = adata.uns["rank_genes_groups"]["names"]
    out: list[str] = []
    for group in names.dtype.names:
        for g in names[group]:
            g = str(g)
            if g not in out and g not in exclude:
                out.append(g)
                break
    return out


def choose_markers(
    var_names: list[str],
    *,
    markers: list[str] | None = None,
    de: Callable[[tuple], list[str]] | None = None,
    max_markers: int = 8,
    min_markers: int = 4,
) -> tuple[list[str], str]:
    """Marker genes to draw and where they came from (``"given"``, ``"paper"``, ``"paper+de"``,
    ``"de"``). ``markers`` (user-given) must all be genes of the data. Otherwise the
    :data:`PAPER_MARKERS` present in ``var_names``; if fewer than ``min_markers``, ``de()`` (the
    top DE gene per cluster) fills up to ``max_markers``."""
    present = set(map(str, var_names))
    if markers:
        missing = [g for g in markers if g not in present]
        if missing:
            from bench.api import UserError

            raise UserError(
                f"marker gene(s) not in the dataset's genes: {missing}",
                "choose genes among the prepared data's var_names (the quick profile keeps 2,000 HVGs)",
            )
        return list(dict.fromkeys(markers))[:max_markers], "given"
    chosen = [g for g in PAPER_MARKERS if g in present][:max_markers]
    if len(chosen) >= min_markers or de is None:
        return chosen, "paper"
    extra = [g for g in de(tuple(chosen)) if g not in chosen]
    source = "paper+de" if chosen else "de"
    return (chosen + extra)[:max_markers], source


def _dense_columns(X, idx: np.ndarray, rows: np.ndarray) -> np.ndarray:
    X = X[rows] if len(rows) else X[:0]
    X = X[:, idx]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return X.astype(np.float32)


# an unconditional model's generated cells take the majority type of this many nearest real cells
KNN_LABEL_K = 15


def _knn_labels(real: np.ndarray, labels: np.ndarray, query: np.ndarray, k: int = KNN_LABEL_K) -> np.ndarray:
    """Majority label of the ``k`` nearest real cells (Euclidean) of every query cell."""
    from sklearn.neighbors import KNeighborsClassifier

    if len(query) == 0:
        return np.asarray([], dtype=str)
    clf = KNeighborsClassifier(n_neighbors=int(min(k, len(real))))
    clf.fit(real, labels)
    return np.asarray(clf.predict(query), dtype=str)


def _score_embedding(
    ctx,
    generated,
    *,
    seed: int,
    max_cells: int | None = 5000,
    n_neighbors: int = 15,
    min_dist: float = 0.5,
    markers: list[str] | None = None,
    max_markers: int = 8,
) -> MetricOutput:
    X_log, gen_pcs = ctx.transform_generated(generated)
    res = umap_embed(
        ctx.test_pcs, gen_pcs, seed=seed, max_cells=max_cells, n_neighbors=n_neighbors, min_dist=min_dist
    )
    real_labels = ctx.labels("test")[res.real_index]
    label_key = ctx.label_key
    if label_key in generated.obs:
        gen_labels = generated.obs[label_key].astype(str).to_numpy()[res.generated_index]
    else:
        gen_labels = np.asarray([], dtype=str)
    # cell types of generated cells by their nearest real cells (on the 50 PCs): lets the report
    # colour unconditional models' cells by type too
    knn = _knn_labels(ctx.test_pcs[res.real_index], real_labels, gen_pcs[res.generated_index])

    var_names = list(map(str, ctx.train.var_names))

    def de(exclude):
        return top_marker_per_group(ctx.train_log, ctx.labels("train"), var_names, exclude=exclude)

    genes, source = choose_markers(var_names, markers=markers, de=de, max_markers=max_markers)
    index = {g: i for i, g in enumerate(var_names)}
    idx = np.array([index[g] for g in genes], dtype=int)
    artifacts = {
        "real_umap": res.real_umap,
        "real_labels": np.asarray(real_labels, dtype=str),
        "generated_umap": res.generated_umap,
        "generated_labels": np.asarray(gen_labels, dtype=str),
        "generated_knn_labels": knn,
        "marker_genes": np.asarray(genes, dtype=str),
        "real_markers": _dense_columns(ctx.test_log, idx, res.real_index),
        "generated_markers": _dense_columns(X_log, idx, res.generated_index),
    }
    info = {
        "space": "pca50",
        "n_real": len(res.real_index),
        "n_generated": len(res.generated_index),
        "n_neighbors": int(min(n_neighbors, len(res.real_index) - 1)),
        "min_dist": min_dist,
        "marker_source": source,
        "conditional_labels": bool(len(gen_labels)),
    }
    return MetricOutput(
        values={"embedding_cells": float(len(res.generated_index))}, artifacts=artifacts, info=info
    )


EMBEDDING = Metric(
    name="embedding",
    func=_score_embedding,
    directions={},  # informational: stores the arrays the report's UMAP and marker figures draw
    description="UMAP of real test cells (fit) and generated cells (transform) on 50 PCs, and marker-gene "
    "log-expression, for the report's figures (no score)",
    reference="ACTIVA paper section 5.2, Fig. 4; McInnes et al. 2018",
    options={"max_cells": 5000, "n_neighbors": 15, "min_dist": 0.5, "markers": None, "max_markers": 8},
    bounds={
        "max_cells": "[3, inf) integer",
        "n_neighbors": INTEGER_2,
        "min_dist": "[0, 1]",
        "max_markers": INTEGER_1,
    },
    profiles={"quick": {"max_cells": 2000}},
    figures=(
        FigureSpec(
            "umap",
            "UMAP of real and generated cells (Fig. 4A-B)",
            "Top: generated cells (colour) over the real test cells (grey). Bottom: cell types; conditional "
            "models' cells carry the type they were generated for, unconditional models' cells (*) the "
            f"majority type of their {KNN_LABEL_K} nearest real test cells on the 50 PCs. UMAP "
            "(n_neighbors {n_neighbors}, min_dist {min_dist}) is fit on up to {max_cells} real test cells "
            "and generated cells are placed with UMAP.transform.",
            draw=draw_umap,
            part="paper",
            order=10,
            missing=NO_EMBEDDING,
        ),
        FigureSpec(
            "markers",
            "Marker genes on the UMAP (Fig. 4C-D)",
            "Log expression (library size 20,000, log1p) of up to {max_markers} marker genes; one colour "
            "scale per gene (0 to the real cells' 99th percentile), generated cells over the real ones "
            "(light grey).",
            draw=draw_markers,
            part="paper",
            order=20,
            missing=NO_EMBEDDING,
        ),
    ),
)
