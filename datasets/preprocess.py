"""The scGAN preprocessing pipeline (Marouf et al. 2020; upstream-models.md section 3.4).

Steps, in order:

1. optional clustering (no label key): Leiden (resolution 0.15) on a ``recipe_zheng17`` copy of the
   raw, unfiltered counts -> PCA 50 -> 15-NN graph; clusters renumbered by decreasing size as
   strings '0', '1', ... into ``obs['cluster']`` (scGAN used Louvain, which is no longer maintained
   in scanpy; Leiden is its successor with the same resolution semantics);
2. ``filter_cells(min_genes=10)`` then ``filter_genes(min_cells=3)``;
3. per-cell normalisation to 20,000 counts, **no log**;
4. balanced split: per label, round-half-up(test_fraction * n) cells (at least 1, at most n - 1) drawn
   into the test set without replacement with a seeded numpy Generator; a published split column
   (``obs['split']``, 'train' / 'test' / 'valid', where 'valid' and 'test' are both held out) is
   respected instead;
5. optional ``n_top_genes``: highly variable genes (scanpy flavor 'seurat' on log1p of the
   normalised *training* cells only), train and test subset to them; with ``normalisation='hvg'``
   (the default) re-normalised to 20,000 over the kept genes, with ``'all-genes'`` (scanpy's
   convention, the paper's library size) kept as normalised over all genes in step 3, so a cell's
   kept genes sum to its share of 20,000; cells with no counts left in those genes are dropped
   (warned, recorded).

Every function is deterministic given its seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.api import LIBRARY_SIZE as TARGET_SUM
from bench.api import UserError

PREPROCESS_VERSION = "2"  # 2: no default rare class from preprocessing (the runner's rule)
MIN_GENES = 10
MIN_CELLS = 3
LEIDEN_RESOLUTION = 0.15
N_PCS = 50
N_NEIGHBORS = 15
HVG_FLAVOR = "seurat"
HELD_OUT = ("test", "valid")
# a label column whose median label has fewer cells than this is refused: it holds cell ids or
# sub-clusters, not cell types (a split keeps about one test cell per label; per-label
# generation and scores have nothing to stand on)
MIN_MEDIAN_LABEL_CELLS = 5
# where the library size of 20,000 is computed when genes are selected (n_top_genes):
# 'hvg': over the selected genes, after selection (every training cell sums to 20,000; the default,
# and what runs before this option did); 'all-genes': over all genes, before selection, without
# re-normalising after it (scanpy's normalize_total -> highly_variable_genes -> subset; the ACTIVA
# paper normalised over all genes), so a cell's selected genes sum to less than 20,000.
NORMALISATIONS = ("hvg", "all-genes")
DEFAULT_NORMALISATION = "hvg"


def check_normalisation(value) -> str:
    """``value`` if it names a normalisation (:data:`NORMALISATIONS`), else UserError."""
    if value not in NORMALISATIONS:
        raise UserError(
            f"unknown normalisation {value!r}",
            f"use one of: {', '.join(NORMALISATIONS)} (docs/datasets.md, preprocessing step 6)",
        )
    return str(value)


def natural_sort(labels) -> list[str]:
    """Sort labels numerically when they are all integers ('2' < '10'), else lexically."""
    labels = [str(x) for x in labels]
    try:
        return sorted(labels, key=lambda s: (int(s), s))
    except ValueError:
        return sorted(labels)


def renumber_by_size(labels) -> np.ndarray:
    """Rename cluster ids to '0', '1', ... by decreasing size (ties: by natural order of the old id)."""
    labels = np.asarray(labels).astype(str)
    uniq, counts = np.unique(labels, return_counts=True)
    order = natural_sort(uniq)
    rank = {lab: i for i, lab in enumerate(order)}
    by_size = sorted(zip(uniq, counts, strict=True), key=lambda t: (-t[1], rank[t[0]]))
    mapping = {old: str(new) for new, (old, _) in enumerate(by_size)}
    return np.array([mapping[x] for x in labels], dtype=object)


def cluster_scgan(counts: ad.AnnData, *, seed: int, resolution: float = LEIDEN_RESOLUTION) -> np.ndarray:
    """Cluster raw counts as scGAN does: recipe_zheng17 -> PCA 50 -> neighbors -> Leiden.

    Returns string labels '0', '1', ... renumbered by decreasing cluster size.
    """
    import scanpy as sc

    from bench.api import import_umap, knn_transformer

    import_umap()  # scanpy's neighbours import umap; keep TensorFlow out of this process
    work = ad.AnnData(sp.csr_matrix(counts.X, dtype=np.float32), obs=pd.DataFrame(index=counts.obs_names))
    work.var_names = counts.var_names
    n_expressed = int((np.asarray(work.X.sum(axis=0)).ravel() >= 1).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.recipe_zheng17(work, n_top_genes=min(1000, n_expressed))
        n_comps = min(N_PCS, work.n_obs - 1, work.n_vars - 1)
        sc.pp.pca(work, n_comps=n_comps, random_state=seed)
        sc.pp.neighbors(
            work,
            n_neighbors=N_NEIGHBORS,
            n_pcs=n_comps,
            random_state=seed,
            transformer=knn_transformer(work.n_obs, n_neighbors=N_NEIGHBORS, seed=seed),
        )
        sc.tl.leiden(
            work,
            resolution=resolution,
            random_state=seed,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            key_added="leiden",
        )
    return renumber_by_size(work.obs["leiden"].to_numpy())


def filter_cells_genes(
    adata: ad.AnnData, min_genes: int = MIN_GENES, min_cells: int = MIN_CELLS
) -> ad.AnnData:
    """scanpy's ``filter_cells(min_genes)`` then ``filter_genes(min_cells)``; adds obs n_genes, var n_cells."""
    X = sp.csr_matrix(adata.X)
    if X.nnz and (X.data == 0).any():  # explicit zeros would count as expressed
        X = X.copy()
        X.eliminate_zeros()
    # counted from the sparse structure: no boolean copy of the matrix (memory: issue 18)
    n_genes = np.diff(X.indptr)
    keep_cells = n_genes >= min_genes
    if not keep_cells.all():
        X = X[keep_cells]
    n_cells = np.bincount(X.indices, minlength=X.shape[1])
    keep_genes = n_cells >= min_cells
    if not keep_genes.all():
        X = X[:, keep_genes]
    obs = adata.obs.iloc[np.flatnonzero(keep_cells)].copy()
    obs["n_genes"] = n_genes[keep_cells].astype(np.int64)
    var = adata.var.iloc[np.flatnonzero(keep_genes)].copy()
    var["n_cells"] = n_cells[keep_genes].astype(np.int64)
    return ad.AnnData(X=X, obs=obs, var=var)


def normalize(X, target: float = TARGET_SUM) -> sp.csr_matrix:
    """Scale each cell (row) to sum to ``target``; all-zero rows stay zero. float32 CSR out."""
    X = sp.csr_matrix(X)
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    per_row = np.diff(X.indptr)
    totals = np.add.reduceat(X.data.astype(np.float64), X.indptr[:-1]) if X.nnz else np.zeros(X.shape[0])
    totals = np.where(per_row > 0, totals, 0.0)  # reduceat gives the next row's first value for empty rows
    scale = np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0)
    # each stored value times its row's factor in float64, then float32: one pass, no float64 matrix
    data = (X.data * np.repeat(scale, per_row)).astype(np.float32)
    return sp.csr_matrix((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def balanced_split(labels, *, test_fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Stratified split: per label draw round(test_fraction * n) cells (>= 1, <= n - 1) into 'test'.

    Labels are visited in natural order and drawn without replacement from one seeded numpy
    Generator, so the same (labels, fraction, seed) always gives the same split. A label with
    fewer than 2 cells cannot be split: UserError naming it.
    """
    if not 0 < test_fraction < 1:
        raise UserError(f"test fraction must be between 0 and 1, got {test_fraction}", "use e.g. 0.1")
    labels = np.asarray(labels).astype(str)
    rng = np.random.default_rng(seed)
    split = np.full(labels.shape[0], "train", dtype=object)
    for lab in natural_sort(np.unique(labels)):
        idx = np.flatnonzero(labels == lab)
        if idx.size < 2:
            raise UserError(
                f"label '{lab}' has {idx.size} cell after filtering: too few to split into train and test",
                "remove that label's cells, merge it into another label, or use another label column",
            )
        n_test = min(idx.size - 1, max(1, _round_half_up(test_fraction * idx.size)))
        split[rng.choice(idx, size=n_test, replace=False)] = "test"
    return split


def check_label_sizes(labels, label_key: str, source: str = "dataset") -> None:
    """Refuse labels whose median label has fewer than MIN_MEDIAN_LABEL_CELLS cells."""
    _, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    if counts.size > 1 and float(np.median(counts)) < MIN_MEDIAN_LABEL_CELLS:
        raise UserError(
            f"{source}: obs['{label_key}'] has {counts.size} labels with a median of {np.median(counts):g} cells "
            f"each after filtering (at least {MIN_MEDIAN_LABEL_CELLS} needed): they look like cell ids or "
            "sub-clusters, not cell types",
            "give a cell-type column with --label-key, merge small labels, or leave --label-key out to cluster the cells",
        )


def published_split(values, source: str = "dataset") -> np.ndarray:
    """Map a published split column to 'train'/'test' ('valid' and 'test' are both held out)."""
    vals = pd.Series(np.asarray(values).astype(str))
    unknown = sorted(set(vals.unique()) - {"train", *HELD_OUT})
    if unknown:
        raise UserError(
            f"{source}: obs['split'] holds values {unknown}; expected 'train', 'test' or 'valid'",
            "fix the split column or delete it to get a balanced split",
        )
    out = np.where(vals.isin(HELD_OUT), "test", "train").astype(object)
    if not (out == "train").any() or not (out == "test").any():
        raise UserError(f"{source}: the published split has no train or no test cells", "delete obs['split']")
    return out


def select_hvg(train_norm: sp.csr_matrix, var_names, n_top_genes: int) -> np.ndarray:
    """Boolean mask of the ``n_top_genes`` most variable genes of the training cells.

    scanpy ``highly_variable_genes(flavor='seurat')`` on log1p of the normalised training matrix.
    """
    import scanpy as sc

    X = sp.csr_matrix(train_norm, dtype=np.float32, copy=True)
    np.log1p(X.data, out=X.data)
    tmp = ad.AnnData(X)
    tmp.var_names = pd.Index(var_names).astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(tmp, flavor=HVG_FLAVOR, n_top_genes=n_top_genes)
    return tmp.var["highly_variable"].to_numpy(dtype=bool)


def _categorical(labels, categories) -> pd.Categorical:
    return pd.Categorical(np.asarray(labels).astype(str), categories=categories)


def run_pipeline(
    adata: ad.AnnData,
    *,
    label_key: str | None,
    split_key: str | None = "split",
    test_fraction: float = 0.1,
    split_seed: int = 0,
    n_top_genes: int | None = None,
    normalised_input: bool = False,
    normalisation: str = DEFAULT_NORMALISATION,
    step: Callable[[str], None] | None = None,
    source: str = "dataset",
) -> tuple[ad.AnnData, ad.AnnData, dict[str, Any]]:
    """Run the scGAN pipeline on validated raw data; returns (train, test, info).

    ``adata.X``: raw counts, or for published preprocessed files (``normalised_input``) X already
    normalised to 20,000 (then ``layers['counts']`` is X itself). ``normalisation``: where the
    library size is computed when ``n_top_genes`` selects genes (:data:`NORMALISATIONS`).
    """
    normalisation = check_normalisation(normalisation)
    step = step or (lambda _msg: None)
    info: dict[str, Any] = {"n_cells_raw": int(adata.n_obs), "n_genes_raw": int(adata.n_vars)}
    obs = adata.obs.copy()
    clustering = None
    if label_key is None:
        step("clustering (Leiden)")
        if "cluster" in obs:
            warnings.warn(
                f"{source}: obs['cluster'] is replaced by Leiden clusters", UserWarning, stacklevel=2
            )
        label_key = "cluster"
        obs[label_key] = cluster_scgan(adata, seed=split_seed)
        clustering = {
            "method": "leiden",
            "resolution": LEIDEN_RESOLUTION,
            "recipe": "zheng17",
            "n_pcs": N_PCS,
            "n_neighbors": N_NEIGHBORS,
            "seed": split_seed,
        }
    obs[label_key] = np.asarray(obs[label_key]).astype(str)
    base = ad.AnnData(sp.csr_matrix(adata.X), obs=obs, var=adata.var.copy())

    step("filtering cells and genes")
    filt = filter_cells_genes(base)
    if filt.n_obs == 0 or filt.n_vars == 0:
        raise UserError(
            f"{source}: no cells left after filtering (cells need >= {MIN_GENES} genes, genes >= {MIN_CELLS} cells)",
            "check that X holds per-cell counts over genes (cells as rows)",
        )
    info.update(n_cells_filtered=int(filt.n_obs), n_genes_filtered=int(filt.n_vars))

    step("normalising to 20,000 per cell")
    counts = sp.csr_matrix(filt.X, dtype=np.float32)
    counts.sort_indices()
    X = normalize(counts)
    if not (normalised_input and "n_counts" in filt.obs):  # keep a published file's pre-normalisation totals
        filt.obs["n_counts"] = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)

    step("splitting")
    labels = filt.obs[label_key].to_numpy().astype(str)
    check_label_sizes(labels, label_key, source)
    if split_key and split_key in filt.obs:
        split = published_split(filt.obs[split_key], source)
        info["split"] = f"published (obs['{split_key}'])"
    else:
        split = balanced_split(labels, test_fraction=test_fraction, seed=split_seed)
        info["split"] = "balanced"
    categories = natural_sort(np.unique(labels))
    missing_train = [c for c in categories if not ((labels == c) & (split == "train")).any()]
    if missing_train:
        raise UserError(
            f"{source}: labels {missing_train} have no training cells in the split",
            "fix the published split or use a balanced split",
        )
    is_train = split == "train"

    keep_genes = np.ones(filt.n_vars, dtype=bool)
    if n_top_genes is not None and n_top_genes < filt.n_vars:
        step(f"selecting {n_top_genes} highly variable genes (training cells)")
        keep_genes = select_hvg(X[is_train], filt.var_names, n_top_genes)
        counts = counts[:, keep_genes]
        # 'hvg': 20,000 over the kept genes; 'all-genes': the step-3 values (20,000 over all genes)
        X = normalize(counts) if normalisation == "hvg" else sp.csr_matrix(X[:, keep_genes])
    info["n_top_genes_selected"] = int(keep_genes.sum()) if n_top_genes is not None else None
    info["normalisation"] = normalisation

    totals = np.asarray(X.sum(axis=1)).ravel()
    keep_cells = totals > 0
    info["n_cells_dropped_zero_after_hvg"] = int((~keep_cells).sum())
    kept_totals = totals[keep_cells]
    if kept_totals.size:  # 20,000 each, except under 'all-genes' with a gene selection
        info["row_sums"] = {
            q: round(float(np.quantile(kept_totals, v)), 1)
            for q, v in (("min", 0), ("median", 0.5), ("max", 1))
        }
    if not keep_cells.all():
        warnings.warn(
            f"{source}: {int((~keep_cells).sum())} cells have no counts in the {int(keep_genes.sum())} selected "
            "genes and were dropped",
            UserWarning,
            stacklevel=2,
        )
        still = [c for c in categories if ((labels == c) & is_train & keep_cells).any()]
        if len(still) < len(categories):
            lost = sorted(set(categories) - set(still))
            raise UserError(
                f"{source}: labels {lost} lost all training cells after gene selection", "raise n_top_genes"
            )

    obs_out = filt.obs.copy()
    obs_out[label_key] = _categorical(labels, categories)
    obs_out["split"] = pd.Categorical(split.astype(str), categories=["train", "test"])
    var_out = filt.var.iloc[np.flatnonzero(keep_genes)].copy()

    del base, filt  # the filtered raw matrix (a copy when filtering dropped anything) is done with
    # the split copies the normalised values, then the counts, each source freed once copied: at
    # most three sparse matrices of this size are alive at once (memory: issue 18)
    rows = {"train": np.flatnonzero(is_train & keep_cells), "test": np.flatnonzero(~is_train & keep_cells)}
    values = {k: X[r] for k, r in rows.items()}
    del X
    if normalised_input:
        layers = {k: v.copy() for k, v in values.items()}
    else:
        layers = {k: sp.csr_matrix(counts[r]) for k, r in rows.items()}
    del counts
    train, test = (
        ad.AnnData(
            X=values[k],
            obs=obs_out.iloc[rows[k]].copy(),
            var=var_out.copy(),
            layers={"counts": layers[k]},
        )
        for k in ("train", "test")
    )
    info.update(
        label_key=label_key,
        clustering=clustering,
        n_train=int(train.n_obs),
        n_test=int(test.n_obs),
        n_genes=int(train.n_vars),
        labels_train={c: int((train.obs[label_key] == c).sum()) for c in categories},
        labels_test={c: int((test.obs[label_key] == c).sum()) for c in categories},
    )
    return train, test, info
