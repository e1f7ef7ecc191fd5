"""The evaluation contract (DESIGN.md): both sides go through one transform before any metric.

Real test cells and generated cells are library-size normalised to 20,000 and log1p-transformed;
PCA (50 components) is fit on the real *training* cells and both sides are projected. Every
cached quantity is computed once per task and shared by all metrics of that task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

LIBRARY_SIZE = 20_000
N_PCS = 50


def lognorm(X: np.ndarray | sp.spmatrix, target: float = LIBRARY_SIZE) -> sp.csr_matrix:
    """Per-cell library-size normalisation to ``target`` then log1p; sparse CSR float32 out."""
    X = sp.csr_matrix(X, dtype=np.float32, copy=True)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    X = sp.diags(scale.astype(np.float32)) @ X
    X = sp.csr_matrix(X, dtype=np.float32)
    np.log1p(X.data, out=X.data)
    return X


@dataclass
class EvalContext:
    """Prepared real data of one dataset, plus the shared transforms metrics use.

    ``train`` and ``test``: AnnData with X library-size normalised to 20,000 (not logged) and
    ``obs[label_key]``. ``rare_class``: the class the augmentation experiment downsamples.
    """

    dataset: str
    train: ad.AnnData
    test: ad.AnnData
    label_key: str
    profile: str = "quick"
    device: str = "cpu"
    rare_class: str | None = None
    seed: int = 0
    cache: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def train_log(self) -> sp.csr_matrix:
        return lognorm(self.train.X)

    @cached_property
    def test_log(self) -> sp.csr_matrix:
        return lognorm(self.test.X)

    @cached_property
    def pca(self):
        """PCA with 50 components fit on the log-normalised real training cells (seeded)."""
        from sklearn.decomposition import PCA

        n = min(N_PCS, self.train.n_obs - 1, self.train.n_vars)
        X = self.train_log
        pca = PCA(n_components=n, svd_solver="arpack", random_state=self.seed)
        pca.fit(X)
        return pca

    def project(self, X_log: np.ndarray | sp.spmatrix) -> np.ndarray:
        return np.asarray(self.pca.transform(X_log), dtype=np.float32)

    @cached_property
    def test_pcs(self) -> np.ndarray:
        return self.project(self.test_log)

    @cached_property
    def train_pcs(self) -> np.ndarray:
        return self.project(self.train_log)

    def labels(self, which: str = "test") -> np.ndarray:
        adata = self.test if which == "test" else self.train
        return adata.obs[self.label_key].astype(str).to_numpy()
