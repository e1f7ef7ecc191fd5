"""A generator's output and the harness's check of it: the request split by label, the check every
output passes before anything scores it (:func:`validate_output`, which records the output scale on
the cells), and the helpers a generator builds its output with (:func:`make_output`,
:func:`to_library_size`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from bench.api.contract import LIBRARY_SIZE, OUTPUT_SCALES, at_library_size
from bench.api.errors import TaskFailed

if TYPE_CHECKING:
    import anndata as ad


def split_request(n_cells: int | dict[str, int]) -> tuple[int, dict[str, int] | None]:
    """Total number of cells and the per-label request (None when unconditional)."""
    if isinstance(n_cells, dict):
        return int(sum(n_cells.values())), {str(k): int(v) for k, v in n_cells.items()}
    return int(n_cells), None


def validate_output(
    gen_cls: Any,
    generated: ad.AnnData,
    *,
    var_names: list[str],
    label_key: str,
    known_labels: list[str],
    requested: int | dict[str, int],
) -> ad.AnnData:
    """Check a generator's output before anything scores it; raise TaskFailed naming the problem.
    ``gen_cls``: the Generator class or instance (its ``name`` and ``output_scale``).

    Checks: cell count (and per-label counts for conditional requests), gene order, finite,
    non-negative, the declared output scale, labels in the training label set.
    """
    import anndata as ad

    name = gen_cls.name
    scale = gen_cls.output_scale
    total, per_label = split_request(requested)
    if not isinstance(generated, ad.AnnData):
        raise TaskFailed(f"{name}: generate() returned {type(generated).__name__}, expected AnnData")
    if generated.n_obs != total:
        raise TaskFailed(f"{name}: generated {generated.n_obs} cells, {total} were requested")
    mismatch = gene_mismatch(list(map(str, generated.var_names)), list(map(str, var_names)))
    if mismatch:
        raise TaskFailed(f"{name}: {mismatch}")
    X = generated.X
    data = X.data if sp.issparse(X) else np.asarray(X)
    if not np.all(np.isfinite(data)):
        raise TaskFailed(f"{name}: generated values contain NaN or inf")
    if data.size and data.min() < 0:
        raise TaskFailed(f"{name}: generated values are negative (min {data.min():.3g})")
    if scale not in OUTPUT_SCALES:
        raise TaskFailed(f"{name}: unknown output_scale {scale!r}; use one of {OUTPUT_SCALES}")
    totals = np.asarray(X.sum(axis=1)).ravel()
    if scale == "library-size-20000":
        ok = at_library_size(totals) | (totals == 0)
        if not ok.all():
            raise TaskFailed(
                f"{name}: declares output_scale 'library-size-20000' but {int((~ok).sum())} cells do not sum to 20,000"
            )
    elif scale == "log1p" and data.size and data.max() > 30:
        raise TaskFailed(f"{name}: declares output_scale 'log1p' but values reach {data.max():.3g}")
    if per_label is not None:
        if label_key not in generated.obs:
            raise TaskFailed(f"{name}: conditional output lacks obs['{label_key}']")
        got = generated.obs[label_key].astype(str).value_counts().to_dict()
        unknown = sorted(set(got) - set(map(str, known_labels)))
        if unknown:
            raise TaskFailed(f"{name}: generated labels not in the training set: {unknown}")
        want = {k: v for k, v in per_label.items() if v > 0}
        if {k: int(v) for k, v in got.items() if v > 0} != want:
            raise TaskFailed(f"{name}: per-label counts {got} differ from the request {want}")
    generated.uns["scgenbench"] = {
        **generated.uns.get("scgenbench", {}),
        "model": name,
        "output_scale": scale,
    }
    return generated


def gene_mismatch(generated: list[str], training: list[str]) -> str | None:
    """None when the generated genes are the training genes in the same order, else a message that
    names the first mismatching position and both names (and both counts if they differ)."""
    if generated == training:
        return None
    pos = next((i for i, (g, t) in enumerate(zip(generated, training, strict=False)) if g != t), None)
    if len(generated) != len(training):
        where = (
            f"; first difference at position {pos}, '{generated[pos]}' where the training data has "
            f"'{training[pos]}'"
            if pos is not None
            else ""
        )
        return f"generated cells have {len(generated)} genes, the training data has {len(training)}{where}"
    return (
        f"generated var_names differ from the training genes: first at position {pos}, "
        f"'{generated[pos]}' where the training data has '{training[pos]}'"
    )


def to_library_size(X: np.ndarray | sp.spmatrix, target: float = LIBRARY_SIZE) -> np.ndarray:
    """Scale each row to sum to ``target`` (rows summing to zero stay zero). Returns dense float32."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float32, copy=False)
    totals = X.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(totals > 0, X * (target / np.where(totals > 0, totals, 1)), 0.0)
    return out.astype(np.float32)


def make_output(
    X: np.ndarray | sp.spmatrix, var_names: list[str], label_key: str | None = None, labels=None
) -> ad.AnnData:
    """Wrap generated values in an AnnData with the training genes (and labels when given)."""
    import anndata as ad

    X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    out = ad.AnnData(X=X.astype(np.float32))
    out.var_names = list(var_names)
    out.obs_names = [f"gen-{i}" for i in range(out.n_obs)]
    if label_key is not None and labels is not None:
        out.obs[label_key] = np.asarray(labels, dtype=str)
        out.obs[label_key] = out.obs[label_key].astype("category")
    return out
