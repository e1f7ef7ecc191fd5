"""Small shared helpers: seeded equal-size subsampling and feature-space selection."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.api import UserError

SPACES = ("genes", "pca50")
# the evaluation protocols (bench.protocols) of a metric that compares real and generated cells in one
# space, whatever that space is (Metric.protocols)
EVERY_PROTOCOL = ("genes", "pca-real", "paper", "harmony")


def n_rows(X) -> int:
    return int(X.shape[0])


def take_rows(X, idx: np.ndarray):
    return X[idx] if sp.issparse(X) else np.asarray(X)[idx]


def subsample(X, n: int, rng: np.random.Generator):
    """``n`` rows of ``X`` drawn without replacement (sorted, so row order within the draw is
    stable); ``X`` unchanged when it has at most ``n`` rows."""
    if n_rows(X) <= n:
        return X
    idx = np.sort(rng.choice(n_rows(X), size=n, replace=False))
    return take_rows(X, idx)


# the quick profile's per-side cap on the sample metrics that grow faster than linearly in cells
# (auc, mmd, memorisation): binds above ~100k cells (10 % test split); validated at 68k cells
QUICK_MAX_CELLS = 10_000


def equal_size(real, fake, seed: int, max_cells: int | None = None):
    """Subsample the larger side (and both sides to ``max_cells`` when set) so both have the same
    number of cells; draws use ``numpy.random.default_rng(seed)``, real side first."""
    n = min(n_rows(real), n_rows(fake))
    if max_cells is not None:
        n = min(n, int(max_cells))
    rng = np.random.default_rng(seed)
    return subsample(real, n, rng), subsample(fake, n, rng)


def check_space(space: str) -> str:
    if space not in SPACES:
        raise UserError(f"unknown feature space {space!r}", f"use one of {', '.join(SPACES)}")
    return space


def check_same_genes(real, fake) -> None:
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real has {real.shape[1]} features, fake has {fake.shape[1]}")


def pearson(a, b) -> float:
    """Pearson correlation of two vectors (float64); NaN when either is constant."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")
