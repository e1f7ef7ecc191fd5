"""``harmony``: a Python stand-in for the ``paper`` protocol where Docker is absent, never called
``paper``: the same structure with other tools. Per group of (real test cells, model cells), grouped
``joint`` or ``pairwise`` as in ``paper``: log-normalise, pick up to 3,000 highly variable genes
across the sources (scanpy, flavor 'seurat', ``batch_key`` = source), scale the genes over all cells
of the group, 50-PC PCA of the group, then Harmony (harmonypy; Korsunsky et al. 2019) with the
source (real or which model) as the batch. Like the paper's integration it uses "real vs generated"
as the batch, so it can move the real control's AUC away from 0.5 (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.api.errors import UserError
from bench.protocols.base import (
    GROUPINGS,
    Cells,
    Embedded,
    check_inputs,
    generated_lognorm,
    groups,
    real_lognorm,
)

N_PCS = 50
N_TOP_GENES = 3000
REAL = "real-test"


def harmony_version() -> str:
    try:
        return version("harmonypy")
    except PackageNotFoundError:
        raise UserError(
            "protocol 'harmony' needs harmonypy", "pip install 'scgenbench[protocols]' (or harmonypy)"
        ) from None


def embed_group(blocks: dict[str, sp.csr_matrix], seed: int, n_top_genes: int, n_pcs: int) -> dict:
    """Harmony-corrected PCs of one group: source name -> its cells' coordinates (rows in order)."""
    import harmonypy
    import scanpy as sc
    from sklearn.decomposition import PCA

    names = list(blocks)
    X = sp.vstack([blocks[n] for n in names], format="csr", dtype=np.float32)
    source = np.repeat(names, [blocks[n].shape[0] for n in names])
    n_genes = X.shape[1]
    if n_genes > n_top_genes:
        adata = ad.AnnData(
            X=X, obs=pd.DataFrame({"source": source}, index=[str(i) for i in range(X.shape[0])])
        )
        sc.pp.highly_variable_genes(adata, flavor="seurat", n_top_genes=n_top_genes, batch_key="source")
        X = X[:, np.flatnonzero(adata.var["highly_variable"].to_numpy())]
    Z = X.toarray().astype(np.float64)
    std = Z.std(axis=0, ddof=1)
    std[std == 0] = 1.0
    Z = (Z - Z.mean(axis=0)) / std
    n = min(n_pcs, Z.shape[0] - 1, Z.shape[1] - 1)
    pcs = PCA(n_components=n, svd_solver="arpack", random_state=seed).fit_transform(Z)
    meta = pd.DataFrame({"source": source})
    ho = harmonypy.run_harmony(pcs, meta, ["source"], random_state=seed, verbose=False)
    corrected = np.asarray(ho.Z_corr)
    if corrected.shape[0] != pcs.shape[0]:  # harmonypy < 2 returns PCs x cells
        corrected = corrected.T
    corrected = corrected.astype(np.float32)
    out, start = {}, 0
    for name in names:
        stop = start + blocks[name].shape[0]
        out[name] = corrected[start:stop]
        start = stop
    return {"cells": out, "n_features": int(X.shape[1]), "n_pcs": int(n)}


class Harmony:
    name = "harmony"
    groupings = GROUPINGS

    def __init__(self, grouping: str | None = None, n_top_genes: int = N_TOP_GENES, n_pcs: int = N_PCS):
        self.grouping = grouping or "joint"
        if self.grouping not in GROUPINGS:
            raise ValueError(f"unknown grouping {self.grouping!r}; use one of {GROUPINGS}")
        self.n_top_genes, self.n_pcs = int(n_top_genes), int(n_pcs)

    @property
    def key(self) -> str:
        return f"{self.name}:{self.grouping}"

    def check(self) -> None:
        """harmonypy is installed (UserError naming the fix)."""
        harmony_version()

    def apply(
        self, real_train: Cells, real_test: Cells, generated: Mapping[str, Cells], seed: int
    ) -> Embedded:
        """Real test cells and each model's cells after Harmony; ``real_train`` is unused (like the
        paper's post-processing, nothing is fit on training cells)."""
        check_inputs(real_test, generated)
        record = {"protocol": self.key, "grouping": self.grouping, "harmonypy": harmony_version()}
        if REAL in generated:
            raise ValueError(f"a model may not be called {REAL!r}")
        real = real_lognorm(real_test)
        logged = {m: generated_lognorm(c) for m, c in generated.items()}
        pairs = {}
        for group in groups(list(generated), self.grouping):
            result = embed_group(
                {REAL: real, **{m: logged[m] for m in group}}, seed, self.n_top_genes, self.n_pcs
            )
            for m in group:
                pairs[m] = (result["cells"][REAL], result["cells"][m])
            record.update(n_features=result["n_features"], n_pcs=result["n_pcs"])
        return Embedded(self.key, pairs, record)
