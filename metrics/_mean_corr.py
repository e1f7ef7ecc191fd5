"""Pearson correlation of per-gene mean expression (a standard sanity score for generated cells)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.metrics._utils import pearson


def gene_means(X) -> np.ndarray:
    return np.asarray(X.mean(axis=0) if sp.issparse(X) else np.asarray(X).mean(axis=0)).ravel()


def mean_corr(real, fake) -> float:
    """Pearson correlation between the per-gene mean log-expression of real and generated cells.

    Definition: r(mu_real, mu_fake) over genes, with mu the mean over cells of the log-normalised
    expression (library size 20,000, log1p). 1 when the mean profiles are proportional up to an
    offset; higher is better. Used by scGAN-lineage evaluations as "mean expression" agreement
    (GRouNdGAN compares mean profiles by Euclidean/cosine distance; correlation is scale-free).
    Returns NaN when either mean profile is constant.
    """
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real has {real.shape[1]} genes, fake has {fake.shape[1]}")
    return pearson(gene_means(real), gene_means(fake))
