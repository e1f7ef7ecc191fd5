"""The evaluation scale: real and generated cells library-size normalised to 20,000 and
log1p-transformed (:func:`lognorm`), generated values brought there from their declared output scale
(:func:`to_lognorm`), and that scale read from the cells or inferred where unambiguous."""

from __future__ import annotations

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api.contract import LIBRARY_SIZE, OUTPUT_SCALES, at_library_size
from bench.api.errors import TaskFailed


def lognorm(X: np.ndarray | sp.spmatrix, target: float = LIBRARY_SIZE) -> sp.csr_matrix:
    """Per-cell library-size normalisation to ``target`` then log1p; sparse CSR float32 out."""
    X = sp.csr_matrix(X, dtype=np.float32, copy=True)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(target, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    X = sp.diags(scale.astype(np.float32)) @ X
    X = sp.csr_matrix(X, dtype=np.float32)
    np.log1p(X.data, out=X.data)
    return X


def generated_scale(adata: ad.AnnData, scale: str | None = None) -> str:
    """The output scale of generated cells: ``scale`` if given, else the one the runner recorded in
    ``adata.uns['scgenbench']['output_scale']`` (or ``adata.uns['output_scale']``)."""
    if scale is None:
        meta = adata.uns.get("scgenbench", {})
        scale = meta.get("output_scale") if isinstance(meta, dict) else None
        scale = scale or adata.uns.get("output_scale")
    if scale is None:
        raise TaskFailed(
            "generated cells carry no output scale: pass scale= or set uns['scgenbench']['output_scale']"
        )
    if scale not in OUTPUT_SCALES:
        raise TaskFailed(f"unknown output scale {scale!r}; use one of {OUTPUT_SCALES}")
    return str(scale)


def infer_scale(X: np.ndarray | sp.spmatrix) -> str | None:
    """The scale of ``X`` when it is unambiguous for the evaluation transform, else None.

    Only ``log1p`` needs a different transform (counts and library-size-20000 both go straight
    through :func:`lognorm`), so only "certainly not log1p" is inferred: every row summing to
    20,000 (+-1 %, the rule ``validate_output`` applies) -> "library-size-20000"; all values
    integers -> "counts". Anything else is ambiguous."""
    data = X.data if sp.issparse(X) else np.asarray(X)
    totals = np.asarray(X.sum(axis=1)).ravel()
    if totals.size and np.all(at_library_size(totals)):
        return "library-size-20000"
    if data.size and np.all(data == np.round(data)) and data.max() > 0:
        return "counts"
    return None


def scale_in_uns(adata: ad.AnnData) -> bool:
    meta = adata.uns.get("scgenbench", {})
    return bool((isinstance(meta, dict) and meta.get("output_scale")) or adata.uns.get("output_scale"))


def to_lognorm(X: np.ndarray | sp.spmatrix, scale: str) -> sp.csr_matrix:
    """Bring generated values in ``scale`` onto the evaluation scale (library size 20,000, log1p).

    ``counts`` and ``library-size-20000`` go through :func:`lognorm` directly (re-normalising a
    library-size-20000 matrix is a no-op up to rounding); ``log1p`` values are inverted with expm1
    first, so every generator ends on exactly the transform the real cells get.
    """
    if scale not in OUTPUT_SCALES:
        raise TaskFailed(f"unknown output scale {scale!r}; use one of {OUTPUT_SCALES}")
    if scale == "log1p":
        X = sp.csr_matrix(X, dtype=np.float32, copy=True)
        np.expm1(X.data, out=X.data)
    return lognorm(X)
