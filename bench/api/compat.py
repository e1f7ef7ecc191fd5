"""Workarounds for third-party version interplay, in one place.

* :func:`import_umap`: umap-learn's ``__init__`` imports TensorFlow (for ``ParametricUMAP``, which
  we never use) whenever TensorFlow is installed; that costs seconds, memory and TensorFlow's log
  lines in every run that clusters cells or draws a UMAP. Importing umap through this function
  keeps TensorFlow and Keras out.
* :func:`knn_transformer`: scanpy 1.11 hands pynndescent's neighbour matrix to
  ``getnnz(axis=1)``, a method scipy's sparse *arrays* do not have; pynndescent 0.7 returns a
  ``csr_array``. scanpy uses pynndescent (instead of exact brute-force neighbours) from 8,192
  cells on, so ``sc.pp.neighbors`` crashed on every dataset that large. The transformer returned
  here is scanpy's own pynndescent choice (same trees, iterations, seed) returning a
  ``csr_matrix``, which every scanpy version accepts.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import scipy.sparse as sp

# scanpy (1.9-1.11) computes exact neighbours below this many cells for the euclidean metric
SCANPY_EXACT_KNN_MAX_CELLS = 8192


def import_umap() -> ModuleType:
    """The ``umap`` module, imported without importing TensorFlow or Keras.

    While umap is imported, ``tensorflow`` and ``keras`` are blocked in ``sys.modules`` (umap then
    falls back to its stub ``ParametricUMAP``); the block is lifted right after, so code that needs
    TensorFlow later imports it normally."""
    if "umap" in sys.modules:
        return sys.modules["umap"]
    blocked = [m for m in ("tensorflow", "keras") if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import umap
    finally:
        for m in blocked:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]
    return umap


def knn_transformer(n_obs: int, *, n_neighbors: int = 15, seed: int = 0) -> Any | None:
    """The ``transformer`` to pass to ``sc.pp.neighbors`` for ``n_obs`` cells (euclidean metric).

    None below :data:`SCANPY_EXACT_KNN_MAX_CELLS` (scanpy's exact neighbours, which work);
    otherwise pynndescent with scanpy's defaults for that size, returning a ``csr_matrix``."""
    if n_obs < SCANPY_EXACT_KNN_MAX_CELLS:
        return None
    from pynndescent import PyNNDescentTransformer

    class SpmatrixNNDescent(PyNNDescentTransformer):
        def transform(self, X, y=None):
            return sp.csr_matrix(super().transform(X, y))

    import scanpy as sc

    return SpmatrixNNDescent(
        n_neighbors=n_neighbors,
        metric="euclidean",
        random_state=seed,
        n_jobs=sc.settings.n_jobs,
        n_trees=min(64, 5 + round(n_obs**0.5 / 20.0)),
        n_iters=max(5, round(np.log2(n_obs))),
    )
