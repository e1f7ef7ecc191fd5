"""What every evaluation protocol shares: the result type and the scales cells come in on.

A protocol is a pure transform of (real training cells, real test cells, generated cells per model,
seed) into the space the metrics compare real and generated cells in (docs/metrics.md, "Evaluation
protocols"). It returns an :class:`Embedded`: for every model, the real test cells and that model's
cells in one space (per model, because the integration protocols grouped ``pairwise`` embed the
real cells once per model), plus what the protocol records with every value it produces.

Inputs, as in :class:`bench.evaluation.EvalContext`: ``real_train`` and ``real_test`` are AnnData
with X library-size normalised to 20,000 (not logged), or matrices on that scale; ``real_train``
holds the training cells the protocol may fit on (the caller leaves the control reserve out).
``generated`` maps a model name to an AnnData carrying its output scale (``uns['scgenbench']
['output_scale']``, :func:`bench.evaluation.generated_scale`) or to a matrix whose scale can be
inferred (counts or library size 20,000, :func:`bench.evaluation.infer_scale`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api.contract import LIBRARY_SIZE
from bench.api.errors import TaskFailed
from bench.evaluation import generated_scale, infer_scale, lognorm, to_lognorm

Cells = ad.AnnData | np.ndarray | sp.spmatrix


@dataclass
class Embedded:
    """The output of one protocol on one set of inputs.

    ``protocol``: the protocol's key (``genes``, ``pca-real``, ``paper:joint``, ...), the value a
    metric records as its protocol parameter. ``pairs``: model -> (real test cells, the model's
    cells), both cells x features in the same space, rows in input order. ``record``: what the
    protocol records with every value (parameters, tool versions, features used). ``fitted``: the
    protocol's fitted state where it has one (``pca-real``: the :class:`~bench.protocols.pca_real.
    PcaRealFit`), for tests and caching; never recorded.
    """

    protocol: str
    pairs: dict[str, tuple[Any, Any]]
    record: dict[str, Any] = field(default_factory=dict)
    fitted: Any = None

    def real(self, model: str):
        return self.pairs[model][0]

    def generated(self, model: str):
        return self.pairs[model][1]


def matrix(cells: Cells):
    return cells.X if isinstance(cells, ad.AnnData) else cells


def cells_scale(cells: Cells) -> str:
    """The output scale of generated ``cells`` (recorded in an AnnData's uns, else inferred)."""
    if isinstance(cells, ad.AnnData):
        try:
            return generated_scale(cells)
        except TaskFailed:
            pass
    scale = infer_scale(matrix(cells))
    if scale is None:
        raise TaskFailed(
            "cannot tell the scale of generated cells: pass an AnnData with "
            "uns['scgenbench']['output_scale'] (counts, library-size-20000 or log1p)"
        )
    return scale


def generated_lognorm(cells: Cells) -> sp.csr_matrix:
    """Generated cells on the evaluation scale (library size 20,000 then log1p), whatever their scale."""
    return to_lognorm(matrix(cells), cells_scale(cells))


def real_lognorm(cells: Cells) -> sp.csr_matrix:
    """Real cells (library size 20,000) on the evaluation scale (log1p; re-normalising is a no-op)."""
    return lognorm(matrix(cells))


def library_size(X_log: sp.spmatrix) -> sp.csr_matrix:
    """Log-normalised cells back on the linear scale: library size 20,000, not logged (expm1)."""
    X = sp.csr_matrix(X_log, dtype=np.float64, copy=True)
    np.expm1(X.data, out=X.data)
    totals = np.asarray(X.sum(axis=1)).ravel()
    scale = np.divide(LIBRARY_SIZE, totals, out=np.zeros_like(totals), where=totals > 0)
    return sp.csr_matrix(sp.diags(scale) @ X)


def check_inputs(real_test: Cells, generated: Mapping[str, Cells]) -> None:
    if not generated:
        raise TaskFailed("a protocol needs generated cells of at least one model")
    n_genes = matrix(real_test).shape[1]
    for model, cells in generated.items():
        if matrix(cells).shape[1] != n_genes:
            raise TaskFailed(f"{model}: {matrix(cells).shape[1]} genes, the real cells have {n_genes}")
        if (
            isinstance(cells, ad.AnnData)
            and isinstance(real_test, ad.AnnData)
            and list(map(str, cells.var_names)) != list(map(str, real_test.var_names))
        ):
            raise TaskFailed(f"{model}: genes differ from the real cells' (names or order)")


GROUPINGS = ("joint", "pairwise")


def groups(models: list[str], grouping: str) -> list[list[str]]:
    """Which models are integrated together with the real test cells: ``joint``, every model at once
    (the authors' notebook); ``pairwise``, one model at a time (adding a model cannot move another
    model's score)."""
    if grouping == "joint":
        return [list(models)]
    if grouping == "pairwise":
        return [[m] for m in models]
    raise ValueError(f"unknown grouping {grouping!r}; use one of {GROUPINGS}")
