"""``pca-real``: the fair protocol. Highly variable genes, gene scaling and a 50-PC PCA, all fit on the
real training cells only, then applied unchanged to the real test cells and to every model's cells.

Nothing is fit on test or generated cells, so adding, removing or changing a model cannot move
another model's cells or the real cells, and the real test cells are as new to the fit as the
generated ones. The steps are scanpy's defaults for log data, done explicitly so the fit can be
applied to other cells: ``sc.pp.highly_variable_genes(flavor='seurat', n_top_genes)`` on the
log-normalised training cells, centring and scaling each kept gene by the training cells' mean and
standard deviation (ddof 1; a constant gene is divided by 1, as ``sc.pp.scale`` does), then
``PCA(50, svd_solver='arpack', random_state=seed)`` (what ``sc.tl.pca`` runs on dense data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.protocols.base import Cells, Embedded, check_inputs, generated_lognorm, real_lognorm

N_PCS = 50
N_TOP_GENES = 3000  # the paper's HVG count (section 4.3); all genes where the data have fewer


@dataclass(frozen=True)
class PcaRealFit:
    """Everything ``pca-real`` fits, all on real training cells: the kept genes (indices into the
    data's genes), their mean and standard deviation, and the PCA."""

    genes: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray  # n_pcs x n_genes kept
    pca_mean: np.ndarray  # the PCA's centre (0 up to rounding: the scaled genes are centred)
    n_train: int

    def transform(self, X_log) -> np.ndarray:
        """Log-normalised cells (all genes of the data) -> their coordinates on the fitted PCs."""
        X = X_log[:, self.genes]
        X = X.toarray() if sp.issparse(X) else np.asarray(X)
        Z = (X.astype(np.float64) - self.mean) / self.std
        return ((Z - self.pca_mean) @ self.components.T).astype(np.float32)


def hvg_indices(X_log, n_top_genes: int) -> np.ndarray:
    """Indices (sorted) of the ``n_top_genes`` most variable genes of log-normalised cells (scanpy,
    flavor 'seurat'); every gene when there are no more than that."""
    n_genes = X_log.shape[1]
    if n_genes <= n_top_genes:
        return np.arange(n_genes)
    import scanpy as sc

    adata = ad.AnnData(X=sp.csr_matrix(X_log, dtype=np.float32))
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    sc.pp.highly_variable_genes(adata, flavor="seurat", n_top_genes=n_top_genes)
    return np.flatnonzero(adata.var["highly_variable"].to_numpy())


def fit_pca_real(train_log, seed: int, n_top_genes: int = N_TOP_GENES, n_pcs: int = N_PCS) -> PcaRealFit:
    """Fit ``pca-real`` on log-normalised real training cells."""
    from sklearn.decomposition import PCA

    genes = hvg_indices(train_log, n_top_genes)
    X = train_log[:, genes]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0, ddof=1)
    std[std == 0] = 1.0
    Z = (X - mean) / std
    n = min(n_pcs, Z.shape[0] - 1, Z.shape[1] - 1)  # arpack needs n < min(shape)
    pca = PCA(n_components=n, svd_solver="arpack", random_state=seed).fit(Z)
    return PcaRealFit(
        genes=genes,
        mean=mean,
        std=std,
        components=np.ascontiguousarray(pca.components_),
        pca_mean=pca.mean_,
        n_train=int(X.shape[0]),
    )


class PcaReal:
    name = "pca-real"
    groupings: tuple[str, ...] = ()

    def __init__(self, grouping: str | None = None, n_top_genes: int = N_TOP_GENES, n_pcs: int = N_PCS):
        if grouping is not None:
            raise ValueError("protocol 'pca-real' has no grouping")
        self.n_top_genes, self.n_pcs = int(n_top_genes), int(n_pcs)

    @property
    def key(self) -> str:
        return self.name

    def check(self) -> None:
        """Nothing to check: the protocol needs nothing outside the harness."""

    def fit(self, real_train: Cells, seed: int) -> PcaRealFit:
        return fit_pca_real(real_lognorm(real_train), seed, self.n_top_genes, self.n_pcs)

    def apply(
        self, real_train: Cells, real_test: Cells, generated: Mapping[str, Cells], seed: int
    ) -> Embedded:
        """Fit on ``real_train`` (log-normalised), project the real test cells and each model's cells."""
        check_inputs(real_test, generated)
        return self.project(
            fit_pca_real(real_lognorm(real_train), seed, self.n_top_genes, self.n_pcs), real_test, generated
        )

    def project(self, fit: PcaRealFit, real_test: Cells, generated: Mapping[str, Cells]) -> Embedded:
        """:meth:`apply` with a fit made earlier (:meth:`fit`, once per dataset and seed: a caller
        may keep it, e.g. in the evaluation's shared work, and project each task's cells on it)."""
        check_inputs(real_test, generated)
        real = fit.transform(real_lognorm(real_test))
        pairs = {m: (real, fit.transform(generated_lognorm(c))) for m, c in generated.items()}
        record = {
            "protocol": self.key,
            "n_hvg": int(fit.genes.size),
            "n_pcs": int(fit.components.shape[0]),
            "n_fit_cells": fit.n_train,
            "fit_on": "real training cells",
        }
        return Embedded(self.key, pairs, record, fitted=fit)
