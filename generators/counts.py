"""The training counts that count models (copula, scvi) fit: ``layers['counts']``, as integers."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api import UserError


def training_counts(train: ad.AnnData, model: str) -> tuple[sp.csr_matrix, bool]:
    """The raw counts of the training cells (``layers['counts']``, else X) as float64 CSR, and
    whether they had to be rounded: published preprocessed files (brain_small, pbmc68k) carry no
    raw counts, so their ``layers['counts']`` is X normalised to 20,000 per cell, which is rounded
    to integers here as scDesign2 rounds non-integer input."""
    counts = train.layers.get("counts", train.X)
    counts = sp.csr_matrix(counts, dtype=np.float64, copy=True)
    if counts.nnz and (not np.all(np.isfinite(counts.data)) or counts.data.min() < 0):
        raise UserError(
            f"{model}: training counts contain NaN, inf or negative values",
            "pass raw counts (layers['counts'] or X)",
        )
    rounded = bool(counts.nnz and np.any(counts.data != np.round(counts.data)))
    if rounded:
        np.round(counts.data, out=counts.data)
        counts.eliminate_zeros()
    return counts, rounded
