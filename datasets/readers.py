"""Reading dataset files (h5ad, 10x HDF5, 10x matrix directory) and validating their contents.

Every problem a user can cause (missing, empty or unreadable file, log-normalised or scaled data,
NaN/inf, negative values, missing label column) is a :class:`bench.api.errors.UserError` that says
what is wrong and how to fix it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from bench.api import UserError

SUPPORTED = ".h5ad (AnnData), .h5 (10x Genomics HDF5 or AnnData), or a 10x matrix directory (matrix.mtx)"


def _values(X) -> np.ndarray:
    """The stored values of a matrix (non-zeros of a sparse one)."""
    if sp.issparse(X):
        return np.asarray(X.data)
    return np.asarray(X).ravel()


def _is_h5ad(path: Path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return "X" in f and "obs" in f and "var" in f


def read_path(path: str | Path) -> ad.AnnData:
    """Read an .h5ad, a 10x .h5 or a 10x matrix directory; UserError for anything else."""

    def sc():  # scanpy is imported only for 10x files (it takes seconds to import)
        import scanpy

        return scanpy

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(
            f"dataset file not found: {path}",
            f"check the path, or use a registered dataset name (see `bench datasets list`); supported: {SUPPORTED}",
        )
    if path.is_dir():
        mtx = [p for p in ("matrix.mtx", "matrix.mtx.gz") if (path / p).exists()]
        if not mtx:
            raise UserError(
                f"{path} is a directory but not a 10x matrix directory (no matrix.mtx or matrix.mtx.gz)",
                f"point to the folder holding matrix.mtx, genes.tsv/features.tsv and barcodes.tsv; supported: {SUPPORTED}",
            )
        reader, kind = (
            (lambda: sc().read_10x_mtx(path, var_names="gene_symbols", cache=False)),
            "10x matrix directory",
        )
    else:
        if path.stat().st_size == 0:
            raise UserError(f"dataset file {path} is empty (0 bytes)", "re-download or re-export the file")
        suffix = path.suffix.lower()
        if suffix == ".h5ad":
            reader, kind = (lambda: ad.read_h5ad(path)), "AnnData .h5ad"
        elif suffix in (".h5", ".hdf5"):
            try:
                is_h5ad = _is_h5ad(path)
            except Exception as exc:
                raise UserError(
                    f"could not read {path}: not a valid HDF5 file ({type(exc).__name__}: {exc})",
                    "check that the file is complete (re-download it) and is a 10x .h5 or an AnnData file",
                ) from exc
            if is_h5ad:
                reader, kind = (lambda: ad.read_h5ad(path)), "AnnData (.h5)"
            else:
                reader, kind = (lambda: sc().read_10x_h5(path)), "10x Genomics HDF5"
        else:
            raise UserError(
                f"unsupported dataset file type '{path.suffix}' ({path})", f"supported: {SUPPORTED}"
            )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Vv]ariable names are not unique.*")
            adata = reader()
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"could not read {path} as {kind} ({type(exc).__name__}: {exc})",
            "check that the file is complete (re-download it) and of a supported type: " + SUPPORTED,
        ) from exc
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise UserError(
            f"dataset {path} is empty ({adata.n_obs} cells x {adata.n_vars} genes)",
            "give a file with at least a few cells and genes",
        )
    return adata


def make_names_unique(adata: ad.AnnData, source: str = "dataset") -> int:
    """Make duplicated gene names unique (scanpy's '-1', '-2' suffixes), warning once. Returns #dupes."""
    n_dup = int(adata.var_names.duplicated().sum())
    if n_dup:
        examples = ", ".join(map(str, adata.var_names[adata.var_names.duplicated()].unique()[:5]))
        warnings.warn(
            f"{source}: {n_dup} duplicated gene names (e.g. {examples}) were made unique by appending '-1', '-2', ...",
            UserWarning,
            stacklevel=3,
        )
        adata.var_names_make_unique()
    if adata.obs_names.has_duplicates:
        adata.obs_names_make_unique()
    return n_dup


def _is_counts(X) -> bool:
    v = _values(X)
    if v.size == 0:
        return True
    if not np.all(np.isfinite(v)) or v.min() < 0:
        return False
    return bool(np.all(v == np.round(v)))


def _counts_candidates(adata: ad.AnnData) -> list[str]:
    """Where else in the file raw counts might be: layers and .raw holding non-negative integers."""
    found = []
    for name, layer in adata.layers.items():
        if layer.shape == adata.shape and _is_counts(layer):
            found.append(f"layers['{name}']")
    if adata.raw is not None and _is_counts(adata.raw.X):
        found.append(".raw")
    return found


def _counts_fix(adata: ad.AnnData) -> str:
    found = _counts_candidates(adata)
    if not found:
        return (
            "give the raw UMI counts (e.g. Cell Ranger's filtered matrix, or the file before normalisation)"
        )
    where = found[0]
    how = "adata = adata.raw.to_adata()" if where == ".raw" else f"adata.X = adata.{where}"
    return f"{' and '.join(found)} of this file hold(s) integer counts: save a copy with `{how}` and use that"


def check_finite_nonnegative(adata: ad.AnnData, source: str) -> None:
    v = _values(adata.X)
    bad = ~np.isfinite(v)
    if bad.any():
        n_nan = int(np.isnan(v).sum())
        raise UserError(
            f"{source}: X holds {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values",
            "remove or repair those cells/genes (expression data must be finite counts)",
        )
    if v.size and v.min() < 0:
        raise UserError(
            f"{source}: X holds {int((v < 0).sum())} negative values (min {float(v.min()):.3g}); "
            "it looks scaled (z-scored), not raw counts",
            _counts_fix(adata),
        )


def check_counts(adata: ad.AnnData, source: str) -> None:
    """Refuse X that is not raw counts (finite, non-negative integers), naming a layer that is."""
    check_finite_nonnegative(adata, source)
    v = _values(adata.X)
    frac = v[v != np.round(v)]
    if frac.size:
        vmax = float(v.max())
        looks = "log-normalised" if vmax < 50 else "normalised"
        raise UserError(
            f"{source}: X does not hold raw counts: {frac.size} non-integer values, max {vmax:.3g} "
            f"(it looks {looks})",
            _counts_fix(adata),
        )


# names that say what the rows and columns are: 10x-style cell barcodes (with an optional sample
# prefix or lane suffix), Ensembl gene ids, and the mitochondrial and ribosomal genes every
# full gene list holds (MT-CO1, RPL3, RPS6; mouse mt-Co1, Rpl3)
BARCODE = re.compile(r"(?:^|[_:.-])[ACGTN]{8,}(?:[-_.]\d+)?$")
ENSEMBL_GENE = re.compile(r"^ENS[A-Z]*G\d{6,}(?:\.\d+)?$")
GENE_SYMBOL_HINT = re.compile(r"^(?:MT-|mt-|RP[LS]\d|Rp[ls]\d)")
MIN_SYMBOL_HINTS = 3  # that many MT-/RPL/RPS names among a side's names: that side holds genes


def _share(names, pattern: re.Pattern, sample: int = 5000) -> float:
    names = [str(n) for n in list(names[:sample])]
    return sum(1 for n in names if pattern.search(n)) / len(names) if names else 0.0


def _looks_like_genes(names) -> bool:
    hints = sum(1 for n in map(str, names) if GENE_SYMBOL_HINT.match(n))
    return _share(names, ENSEMBL_GENE) >= 0.5 or hints >= MIN_SYMBOL_HINTS


def _looks_like_cells(names) -> bool:
    return _share(names, BARCODE) >= 0.5


def check_orientation(adata: ad.AnnData, source: str) -> None:
    """Refuse a matrix stored genes x cells (genes as obs): var names that look like cell barcodes
    while obs names do not, or obs names that look like genes (Ensembl ids, or at least
    MIN_SYMBOL_HINTS mitochondrial / ribosomal gene symbols) while var names do not. Names that say
    nothing (cell0, gene0) pass. ``--no-orientation-check`` skips this check."""
    why = []
    if _looks_like_cells(adata.var_names) and not _looks_like_cells(adata.obs_names):
        why.append("var names look like cell barcodes")
    if _looks_like_genes(adata.obs_names) and not _looks_like_genes(adata.var_names):
        why.append("obs names look like genes")
    if why:
        raise UserError(
            f"{source}: the matrix looks transposed (genes as rows): {' and '.join(why)} "
            f"({adata.n_obs:,} obs such as {', '.join(map(str, adata.obs_names[:3]))}; {adata.n_vars:,} var "
            f"such as {', '.join(map(str, adata.var_names[:2]))})",
            "store cells as rows (adata = adata.T, then write_h5ad), or pass --no-orientation-check "
            "if the rows are cells",
        )


def check_library_size(adata: ad.AnnData, source: str, target: float, rtol: float = 0.01) -> None:
    """Check that X is library-size normalised to ``target`` (published preprocessed files)."""
    check_finite_nonnegative(adata, source)
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    totals = totals[totals > 0]
    if totals.size == 0 or abs(float(np.median(totals)) - target) > rtol * target:
        med = float(np.median(totals)) if totals.size else 0.0
        raise UserError(
            f"{source}: X is expected to be library-size normalised to {target:g} per cell, "
            f"but the median cell total is {med:.6g}",
            "use the ACTIVA preprocessed file (X normalised to 20,000, not logged)",
        )


# obs column names that usually hold cell-type labels (a hint only: the user chooses with --label-key)
LABEL_NAME = re.compile(
    r"cell.?type|celltype|cell.?ontology|annotation|^labels?$|^type$|subtype|lineage|louvain|leiden", re.I
)


def label_candidates(obs, *, exclude: tuple[str, ...] = ("split",), max_values: int = 200) -> dict[str, int]:
    """Columns of ``obs`` that look like cell-type labels: a label-like name and 2 to ``max_values``
    distinct values, no missing ones. Returns {column: number of distinct values}, in obs order."""
    out: dict[str, int] = {}
    for col in obs.columns:
        if col in exclude or not LABEL_NAME.search(str(col)):
            continue
        values = obs[col]
        if values.dtype.kind == "f" or values.isna().any():
            continue
        n = int(values.nunique())
        if 2 <= n <= max_values:
            out[str(col)] = n
    return out


def check_label_key(adata: ad.AnnData, label_key: str, source: str) -> None:
    if label_key not in adata.obs:
        cols = ", ".join(map(str, adata.obs.columns)) or "none"
        raise UserError(
            f"{source}: label column '{label_key}' not found in obs (available obs columns: {cols})",
            "pass --label-key with one of those columns, or omit it to cluster (Leiden) into obs['cluster']",
        )
    missing = int(adata.obs[label_key].isna().sum())
    if missing:
        raise UserError(
            f"{source}: {missing} cells have no label in obs['{label_key}']",
            "drop or label those cells, or omit the label key to cluster the data",
        )
