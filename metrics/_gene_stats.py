"""Per-gene statistics: mean, variance and zero fraction of real and generated cells."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bench.api import Metric, MetricOutput
from bench.metrics._mean_corr import gene_means
from bench.metrics._utils import check_same_genes


def gene_variances(X) -> np.ndarray:
    """Per-gene variance over cells (ddof 1), float64."""
    n = X.shape[0]
    mu = gene_means(X).astype(np.float64)
    if sp.issparse(X):
        ex2 = np.asarray(X.multiply(X).mean(axis=0), dtype=np.float64).ravel()
    else:
        ex2 = (np.asarray(X, dtype=np.float64) ** 2).mean(axis=0)
    return (ex2 - mu * mu) * (n / max(n - 1, 1))


def zero_fractions(X) -> np.ndarray:
    """Per-gene share of cells with zero expression."""
    n = X.shape[0]
    nonzero = np.asarray((X != 0).sum(axis=0)).ravel() if sp.issparse(X) else (np.asarray(X) != 0).sum(0)
    return 1.0 - nonzero.astype(np.float64) / max(n, 1)


def concordance(a, b) -> float:
    """Lin's concordance correlation coefficient of two vectors (Lin 1989, Biometrics 45, Eq. 1)::

        ccc = 2 cov(a, b) / (var(a) + var(b) + (mean(a) - mean(b))^2)       (population moments)

    1 only when a == b; unlike Pearson's r it drops when b is a shifted or rescaled copy of a.
    NaN when the denominator is 0 (both vectors constant and equal)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    ma, mb = a.mean(), b.mean()
    cov = ((a - ma) * (b - mb)).mean()
    den = a.var() + b.var() + (ma - mb) ** 2
    return float(2.0 * cov / den) if den > 0 else float("nan")


@dataclass
class GeneStatsResult:
    """Concordance (Lin's CCC) across genes of the per-gene mean, variance and zero fraction of the
    real and the generated cells; ``real``/``fake``: the per-gene vectors (keys mean, var, zero)."""

    mean_ccc: float
    var_ccc: float
    zero_ccc: float
    real: dict[str, np.ndarray]
    fake: dict[str, np.ndarray]


def gene_stats(real, fake) -> GeneStatsResult:
    """Agreement of per-gene mean, variance and zero fraction between real and generated cells.

    Definition (gene-level checks as in scDesign3, Song et al. 2024, Nat. Biotechnol., and the
    posterior predictive checks of scvi-tools, ``scvi.criticism``): for every gene g, on the
    log-normalised expression (library size 20,000, log1p), mu_g (mean over cells), s2_g (variance,
    ddof 1) and z_g (share of cells with zero expression), on the real and on the generated cells;
    the scores are Lin's concordance correlation (:func:`concordance`) across genes::

        mean_ccc = ccc(mu_real, mu_fake)   var_ccc = ccc(s2_real, s2_fake)   zero_ccc = ccc(z_real, z_fake)

    1 is ideal (the per-gene statistics are equal), higher is better. Concordance rather than
    Pearson's r (which :func:`~bench.metrics.mean_corr` uses for the means) because a generator
    that shrinks every gene's variance by the same factor (mode collapse) or removes zeros
    everywhere keeps r = 1 but loses concordance. The ``shuffled`` negative control keeps every
    gene's marginal and so scores ~1 here by construction: these values are not scaled against
    the controls (docs/metrics.md). NaN when the statistics are constant and equal on both sides.
    """
    check_same_genes(real, fake)
    r = {"mean": gene_means(real), "var": gene_variances(real), "zero": zero_fractions(real)}
    f = {"mean": gene_means(fake), "var": gene_variances(fake), "zero": zero_fractions(fake)}
    return GeneStatsResult(
        mean_ccc=concordance(r["mean"], f["mean"]),
        var_ccc=concordance(r["var"], f["var"]),
        zero_ccc=concordance(r["zero"], f["zero"]),
        real=r,
        fake=f,
    )


def _score_gene_stats(ctx, generated, *, seed: int) -> MetricOutput:
    X_log, _ = ctx.transform_generated(generated)
    res = gene_stats(ctx.test_log, X_log)
    values = {"gene_mean_ccc": res.mean_ccc, "gene_var_ccc": res.var_ccc, "gene_zero_ccc": res.zero_ccc}
    return MetricOutput(values=values, info={"space": "genes", "n_genes": int(X_log.shape[1])})


GENE_STATS = Metric(
    name="gene_stats",
    measures="biology",
    func=_score_gene_stats,
    directions={"gene_mean_ccc": "higher", "gene_var_ccc": "higher", "gene_zero_ccc": "higher"},
    description="concordance (Lin's CCC) across genes of per-gene mean, variance and zero fraction of "
    "log expression, real test vs generated",
    reference="gene-level checks of scDesign3 (Song et al. 2024) and scvi-tools' posterior predictive checks; "
    "Lin 1989",
    table="biology",
    # the shuffled negative control keeps every gene's marginal: it is not built to fail these
    not_scaled=("gene_mean_ccc", "gene_var_ccc", "gene_zero_ccc"),
)


__all__ = ["GeneStatsResult", "concordance", "gene_stats", "gene_variances", "zero_fractions"]
