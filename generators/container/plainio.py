"""The plain file format of the container I/O contract (docs/plugins.md, "A model in any language"):
MatrixMarket + CSV, so an entry point in R (or any language) needs no anndata or HDF5 library.

A folder in this format holds::

    counts.mtx   MatrixMarket coordinate matrix, rows = cells, columns = genes (the orientation of
                 train.h5ad, NOT 10x's genes x cells); integer for counts, real otherwise
    obs.csv      one row per cell, in the matrix's row order: columns `cell` and `label`
    var.csv      one row per gene, in the matrix's column order: column `gene`

The harness writes ``train/`` in it next to ``train.h5ad``; a container may write its cells as
``generated/`` in it instead of ``generated.h5ad`` (``var.csv`` optional there: the columns are the
training genes in order). :func:`read_plain` checks what it reads and names the file and the field
of anything that breaks the contract.
"""

from __future__ import annotations

import csv
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from bench.api import TaskFailed

MATRIX = "counts.mtx"
OBS = "obs.csv"
VAR = "var.csv"
LABEL_COLUMN = "label"


def write_plain(folder: Path, X, cells: list[str], genes: list[str], labels=None) -> None:
    """Write ``X`` (cells x genes) with its cell ids, genes and labels in the plain format."""
    folder.mkdir(parents=True, exist_ok=True)
    X = sp.coo_matrix(X)
    integral = X.data.size == 0 or bool(np.all(X.data == np.round(X.data)))
    data = X.data.astype(np.int64) if integral else X.data.astype(np.float64)
    matrix = sp.coo_matrix((data, (X.row, X.col)), shape=X.shape)
    scipy.io.mmwrite(folder / MATRIX, matrix, field="integer" if integral else "real")
    with open(folder / OBS, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["cell", LABEL_COLUMN])
        labs = [""] * len(cells) if labels is None else [str(x) for x in labels]
        w.writerows(zip(cells, labs, strict=True))
    with open(folder / VAR, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["gene"])
        w.writerows([g] for g in genes)


def _plain_file(folder: Path, name: str, who: str, rel: str) -> Path:
    path = folder / name
    if path.is_symlink():
        raise TaskFailed(f"{who}: {rel}/{name} is a symbolic link: not read")
    if not path.is_file():
        raise TaskFailed(f"{who}: {rel}/{name} is missing (the plain output needs {MATRIX} and {OBS})")
    return path


def read_plain(
    folder: Path, genes: list[str], label_key: str, *, who: str, need_labels: bool, rel: str = "generated"
) -> ad.AnnData:
    """The cells of a plain-format folder as an AnnData with the training ``genes`` as var_names and
    ``obs[label_key]`` from obs.csv's ``label``; a TaskFailed names ``rel/file`` and the field that
    breaks the contract (shape, column, count, value)."""
    matrix = _plain_file(folder, MATRIX, who, rel)
    try:
        X = scipy.io.mmread(matrix)
    except Exception as exc:  # scipy raises ValueError, IndexError, ... on a malformed file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TaskFailed(f"{who}: {rel}/{MATRIX} is not a readable MatrixMarket file ({reason})") from None
    X = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else sp.csr_matrix(np.asarray(X, np.float32))
    if X.shape[1] != len(genes):
        raise TaskFailed(
            f"{who}: {rel}/{MATRIX} has {X.shape[1]} columns (genes), the training data has {len(genes)} "
            "(rows are cells, columns genes in the order of train/var.csv)"
        )
    obs_path = _plain_file(folder, OBS, who, rel)
    try:
        obs = pd.read_csv(obs_path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise TaskFailed(f"{who}: {rel}/{OBS} is not a readable CSV file ({exc})") from None
    if len(obs) != X.shape[0]:
        raise TaskFailed(f"{who}: {rel}/{OBS} has {len(obs)} rows, {rel}/{MATRIX} has {X.shape[0]} cells")
    if need_labels and LABEL_COLUMN not in obs.columns:
        raise TaskFailed(
            f"{who}: {rel}/{OBS} has no column '{LABEL_COLUMN}' (columns: {', '.join(obs.columns) or 'none'})"
        )
    var_path = folder / VAR
    if var_path.exists() or var_path.is_symlink():
        var_path = _plain_file(folder, VAR, who, rel)
        try:
            var = pd.read_csv(var_path, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise TaskFailed(f"{who}: {rel}/{VAR} is not a readable CSV file ({exc})") from None
        column = "gene" if "gene" in var.columns else var.columns[0] if len(var.columns) else None
        got = [] if column is None else var[column].tolist()
        if got != list(genes):
            pos = next(
                (i for i, (a, b) in enumerate(zip(got, genes, strict=False)) if a != b),
                min(len(got), len(genes)),
            )
            raise TaskFailed(
                f"{who}: {rel}/{VAR}: gene {pos} is {got[pos] if pos < len(got) else 'missing'!r}, the training "
                f"data has {genes[pos] if pos < len(genes) else 'none'!r} (write the genes of train/var.csv, in order)"
            )
    out = ad.AnnData(X=X)
    out.var_names = list(genes)
    cells = obs["cell"].tolist() if "cell" in obs.columns else []
    out.obs_names = (
        cells if len(set(cells)) == len(cells) == X.shape[0] else [f"gen-{i}" for i in range(X.shape[0])]
    )
    if LABEL_COLUMN in obs.columns:
        out.obs[label_key] = pd.Categorical(obs[LABEL_COLUMN].to_numpy())
    return out
