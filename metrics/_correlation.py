"""Correlation discrepancy of the top differentially expressed genes (ACTIVA paper, Eq. 6, Fig. 5)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import anndata as ad

# the DE tests that may pick CD's genes (scanpy rank_genes_groups methods); wilcoxon is the default
DE_METHODS = ("wilcoxon", "t-test")


@dataclass
class CdResult:
    """``cd``: Eq. (6); ``generated_corr`` (G) and ``real_corr`` (R): the Pearson correlation
    matrices over the genes (in that order); ``column_sums``: sum_i |G_ij - R_ij| per gene j."""

    cd: float
    generated_corr: np.ndarray
    real_corr: np.ndarray
    column_sums: np.ndarray


def pearson_matrix(X) -> np.ndarray:
    """Gene-by-gene Pearson correlation of ``X`` (cells x genes), float64.

    A gene with zero variance (constant, e.g. never expressed in the generated cells) has no
    correlation: its whole row and column are 0, its diagonal entry included. This is the usual
    ``np.nan_to_num(np.corrcoef(X.T))`` convention (the NaNs that a constant gene gives become 0),
    so values agree with implementations that use it. Against a real gene that is correlated (and
    has R_jj = 1), a constant generated gene costs sum_i |R_ij| in its column: the penalty a model
    that fails to express a marker should get.
    """
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    Xc = X - X.mean(0, keepdims=True)
    norm = np.sqrt((Xc * Xc).sum(0))
    ok = norm > 0
    C = np.zeros((X.shape[1], X.shape[1]))
    Z = Xc[:, ok] / norm[ok]
    C[np.ix_(ok, ok)] = np.clip(Z.T @ Z, -1.0, 1.0)
    C[ok, ok] = 1.0
    return C


def cd_from_corr(G: np.ndarray, R: np.ndarray) -> tuple[float, np.ndarray]:
    """Eq. (6): CD(G, R) = max_j sum_i |G_ij - R_ij| (the matrix 1-norm of G - R)."""
    G, R = np.asarray(G, dtype=np.float64), np.asarray(R, dtype=np.float64)
    if G.shape != R.shape or G.ndim != 2:
        raise ValueError(f"correlation matrices differ in shape: {G.shape} vs {R.shape}")
    col = np.abs(G - R).sum(axis=0)
    return float(col.max()), col


def correlation_discrepancy(real, fake) -> CdResult:
    """Correlation discrepancy between generated and real cells (ACTIVA paper, section 5.3, Eq. 6).

    Definition: with G the Pearson correlation matrix of the genes over the generated cells and R
    that over the real (test) cells, ``CD(G, R) = max_j sum_i |G_ij - R_ij|``, the maximum
    absolute column sum (matrix 1-norm) of G - R. 0 when the gene-gene correlations agree; lower
    is better. The paper computes it over the union of the top 5 differentially expressed genes
    of every cluster (55 genes for 68K PBMC, 40 for Brain Small), see :func:`top_de_genes`;
    ``real`` and ``fake`` are the log-normalised cells restricted to those genes, columns in the
    same order. Zero-variance genes: see :func:`pearson_matrix` (row and column 0). No
    random step: the value does not depend on the cell order.
    """
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real has {real.shape[1]} genes, fake has {fake.shape[1]}")
    R = pearson_matrix(real)
    G = pearson_matrix(fake)
    cd, col = cd_from_corr(G, R)
    return CdResult(cd=cd, generated_corr=G, real_corr=R, column_sums=col)


def top_de_genes(adata: ad.AnnData, groupby: str, *, n_genes: int = 5, method: str = "wilcoxon") -> list[str]:
    """Union of the top ``n_genes`` differentially expressed genes of every group.

    Runs ``scanpy.tl.rank_genes_groups(adata, groupby, method=method)`` (one group vs the rest,
    scanpy's defaults otherwise) on ``adata`` (X: log-normalised, as the paper's scanpy 1.6
    workflow) and concatenates ``uns['rank_genes_groups']['names'][group][:n_genes]`` over the
    groups in scanpy's (sorted) group order, keeping the first occurrence of a gene. ``method``:
    ``"wilcoxon"`` (default, the ACTIVA paper's scanpy workflow) or ``"t-test"`` (Welch's t-test).
    """
    import anndata as ad
    import scanpy as sc

    if method not in DE_METHODS:
        raise ValueError(f"unknown DE test {method!r}; use one of {DE_METHODS}")

    adata = ad.AnnData(X=adata.X, obs=adata.obs[[groupby]].copy(), var=adata.var[[]].copy())
    adata.obs[groupby] = adata.obs[groupby].astype(str).astype("category")
    counts = adata.obs[groupby].value_counts()
    small = counts[counts < 2]
    if len(small):
        # scanpy cannot test a group of one cell; those groups contribute no genes
        adata = adata[~adata.obs[groupby].isin(small.index)].copy()
        adata.obs[groupby] = adata.obs[groupby].cat.remove_unused_categories()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(adata, groupby, method=method, n_genes=n_genes, use_raw=False)
    names = adata.uns["rank_genes_groups"]["names"]
    out: list[str] = []
    for group in names.dtype.names:
        for g in names[group][:n_genes]:
            if str(g) not in out:
                out.append(str(g))
    return out
