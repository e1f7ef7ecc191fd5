"""Scale fixtures: deterministic N-cell count files with pbmc3k's genes and cell types, for cost tests.

The cells are drawn from the ``nb`` baseline fitted to pbmc3k (a negative binomial per cell type
and gene, moments fit on the raw counts, genes independent; :func:`bench.generators.baselines.nb_moments`),
with labels in ``obs['cell_type']`` drawn by pbmc3k's type proportions. They are **test data for
cost (time, memory), not for biology**: genes are independent, so no metric on them says anything
about real cells.

Genes: by default the 2,000 genes the quick profile selects on pbmc3k (scanpy 'seurat' HVGs of
the training cells, the 2,000-gene setting every profile uses), or every one of pbmc3k's 16,634
genes (``genes=None``). A drawn cell with fewer than the pipeline's ``MIN_GENES`` expressed genes
is redrawn from its type, so no cell is lost to the cell filter and an N-cell file gives N cells.

The file is written in chunks of :data:`CHUNK` cells (memory: one chunk, whatever N), each chunk
from its own seeded generator (``default_rng([seed, chunk index + 1])``; labels from
``default_rng([seed, 0])``): the same (N, genes, seed) gives the same file on any machine with the
same numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from bench.api import UserError

CHUNK = 10_000
DEFAULT_GENES = 2000
LABEL_KEY = "cell_type"
SOURCE = "pbmc3k"


def scale_model(
    genes: int | None = DEFAULT_GENES,
) -> tuple[pd.DataFrame, list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The ``nb`` fit the fixture draws from: (var, cell types, mean, size, type weights).

    ``genes``: that many HVGs of pbmc3k's quick preprocessing (raw counts of every pbmc3k cell that
    passes the filters, train and test), or None for every gene of the raw file.
    """
    from bench.datasets import prepare
    from bench.datasets.recipes import PBMC3K
    from bench.generators.baselines import nb_moments

    if genes is None:
        raw = PBMC3K.load_raw()
        counts, var = sp.csr_matrix(raw.X), raw.var.copy()
        labels = raw.obs[LABEL_KEY].astype(str).to_numpy()
    else:
        data = prepare(SOURCE, n_top_genes=genes)
        parts = (data.train, data.test)
        counts = sp.vstack([sp.csr_matrix(p.layers["counts"]) for p in parts]).tocsr()
        labels = np.concatenate([p.obs[data.label_key].astype(str).to_numpy() for p in parts])
        var = data.train.var[[]].copy()
    types = sorted(set(labels))
    mu, size, weights = nb_moments(counts, labels, types)
    return var, types, mu, size, weights


def write_scale_data(
    n_cells: int,
    out: str | Path,
    *,
    genes: int | None = DEFAULT_GENES,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write an ``n_cells``-cell scale fixture to ``out`` (.h5ad, counts in X as float32 CSR)."""
    from bench.datasets.preprocess import MIN_GENES
    from bench.generators.baselines import draw_nb

    if not isinstance(n_cells, int) or n_cells < 1:
        raise UserError(f"the number of cells must be a positive integer, got {n_cells!r}", "use e.g. 100000")
    out = Path(out)
    if out.suffix != ".h5ad":
        raise UserError(
            f"{out}: the scale fixture is written as .h5ad", f"use e.g. {out.with_suffix('.h5ad')}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    var, types, mu, size, weights = scale_model(genes)
    label_idx = np.random.default_rng([seed, 0]).choice(len(types), size=n_cells, p=weights)
    obs = pd.DataFrame(
        {LABEL_KEY: pd.Categorical.from_codes(label_idx, categories=types)},
        index=pd.Index([f"cell{i:07d}" for i in range(n_cells)]),
    )
    tmp = out.with_name(f".{out.name}.part")
    for k, start in enumerate(range(0, n_cells, CHUNK)):
        rng = np.random.default_rng([seed, k + 1])
        codes = label_idx[start : start + CHUNK]
        X = np.zeros((codes.size, len(var)), dtype=np.float32)
        for t in np.unique(codes):
            rows = np.flatnonzero(codes == t)
            X[rows] = draw_nb(mu[t], size[t], rows.size, rng)
            for _ in range(100):  # a cell the cell filter would drop is redrawn from its type
                low = rows[(X[rows] > 0).sum(axis=1) < MIN_GENES]
                if not low.size:
                    break
                X[low] = draw_nb(mu[t], size[t], low.size, rng)
        block = sp.csr_matrix(X)
        if k == 0:
            ad.AnnData(X=block, obs=obs.iloc[: codes.size], var=var).write_h5ad(tmp)
        else:
            with h5py.File(tmp, "a") as f:
                ad.io.sparse_dataset(f["X"]).append(block)
        if progress is not None:
            progress(min(start + CHUNK, n_cells), n_cells)
    with h5py.File(tmp, "a") as f:  # the whole obs, now that X has every row
        del f["obs"]
        ad.io.write_elem(f, "obs", obs)
    tmp.replace(out)
    return out
