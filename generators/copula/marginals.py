"""Per-gene count marginals of one cell type (scDesign2's): Poisson, NB and ZINB maximum-likelihood
fits, CDF tables, the randomised probability integral transform (PIT) and quantiles.

A gene's marginal is a zero-inflated negative binomial: a structural zero with probability ``pi``,
else NB(mean ``mu``, size ``size``); ``size = inf`` is Poisson, ``pi = 0`` no zero inflation and
``mu = 0`` a gene that is always 0 (scDesign2 models no gene with fewer than ``min_nonzero``
non-zero counts). Fits are vectorised over genes and only touch the non-zero counts, grouped by
distinct (gene, value) pairs, so a type's whole transcriptome fits in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import special, stats

EPSILON = 1e-5  # scDesign2's clamp of the PIT away from 0 and 1 (fit_marginals(epsilon = 1e-5))
LOG_SIZE_RANGE = (np.log(1e-6), np.log(1e6))  # bracket of the NB size MLE
BISECTION_STEPS = 50  # halves a bracket of width 27.6 (log space) to below 1e-13
TAIL = 1e-10  # CDF tables reach F(k) >= 1 - TAIL; quantiles beyond fall back to scipy
MAX_TABLE = 1 << 20
EM_STEPS = 500
EM_TOL = 1e-6
EM_BISECTION_STEPS = 28  # 7e-9 within the +-1 (log) bracket around the last size, 1e-7 in the full one


@dataclass
class Marginals:
    """Marginal parameters of G genes (arrays of length G)."""

    mu: np.ndarray  # mean of the count component (NB or Poisson)
    size: np.ndarray  # NB size (inverse dispersion); inf = Poisson
    pi: np.ndarray  # structural-zero probability

    def subset(self, genes: np.ndarray) -> Marginals:
        return Marginals(self.mu[genes], self.size[genes], self.pi[genes])

    @property
    def n_genes(self) -> int:
        return int(self.mu.size)


def _pairs(counts: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero counts as distinct (gene, value) pairs with their multiplicities."""
    n_genes = counts.shape[1]
    vals = counts.data.astype(np.int64)
    key = vals * n_genes + counts.indices.astype(np.int64)
    uniq, mult = np.unique(key, return_counts=True)
    return (uniq % n_genes).astype(np.int64), (uniq // n_genes).astype(np.float64), mult.astype(np.float64)


def nb_score(log_size, gene, x, mult, n_eff, mu, n_genes) -> np.ndarray:
    """d/dr of the NB log-likelihood at r = exp(log_size), with the mean at its MLE (weighted mean).

    ``sum_nonzero mult * (digamma(x + r) - digamma(r)) + n_eff * log(r / (r + mu))``; zeros
    contribute only through ``n_eff`` (the number, or EM weight, of observations).
    """
    r = np.exp(log_size)
    rp = r[gene]
    terms = mult * (special.digamma(x + rp) - special.digamma(rp))
    return np.bincount(gene, weights=terms, minlength=n_genes) - n_eff * np.log1p(mu / r)


def nb_size_mle(gene, x, mult, n_eff, mu, n_genes, lo=None, hi=None, steps=BISECTION_STEPS) -> np.ndarray:
    """NB size MLE per gene by bisection on the score in log r (the root is unique, Levin & Reeds
    1977); genes whose root lies beyond the bracket get its end (1e6 ~ Poisson, 1e-6)."""
    lo = np.full(n_genes, LOG_SIZE_RANGE[0]) if lo is None else lo.copy()
    hi = np.full(n_genes, LOG_SIZE_RANGE[1]) if hi is None else hi.copy()
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        up = nb_score(mid, gene, x, mult, n_eff, mu, n_genes) > 0
        lo = np.where(up, mid, lo)
        hi = np.where(up, hi, mid)
    return np.exp(0.5 * (lo + hi))


def _select_pairs(gene, x, mult, keep: np.ndarray, n_genes: int):
    """Pairs of the genes in ``keep`` (indices into 0..n_genes-1), renumbered 0..len(keep)-1."""
    new = np.full(n_genes, -1, dtype=np.int64)
    new[keep] = np.arange(keep.size)
    sel = new[gene] >= 0
    return new[gene[sel]], x[sel], mult[sel]


def fit_marginals(counts: sp.spmatrix, *, zero_inflation: bool = False, min_nonzero: int = 2) -> Marginals:
    """Fit every gene (column) of one cell type's integer count matrix, as scDesign2's
    ``fit_marginals(marginal = 'nb')`` (or ``'zinb'`` with ``zero_inflation``):

    * fewer than ``min_nonzero`` non-zero counts: not modelled (always 0);
    * sample variance (1/(n-1), as R's ``var``) <= mean: Poisson, ``mu`` = mean;
    * otherwise NB by maximum likelihood: ``mu`` = mean, ``size`` = root of the profile score;
      with ``zero_inflation`` a gene with more zeros than its NB fit predicts gets a ZINB fit by
      EM instead (scDesign2 fits ZINB to every over-dispersed gene with zeros; where the NB fit
      already predicts as many zeros as observed, it is a stationary point of the ZINB likelihood
      on the boundary pi = 0 and is kept).
    """
    counts = sp.csr_matrix(counts, dtype=np.float64)
    n, g = counts.shape
    nnz = np.bincount(counts.indices, minlength=g)
    total = np.bincount(counts.indices, weights=counts.data, minlength=g)
    sumsq = np.bincount(counts.indices, weights=counts.data**2, minlength=g)
    mean = total / max(n, 1)
    var = (sumsq - n * mean**2) / max(n - 1, 1)
    modelled = nnz >= max(int(min_nonzero), 1)
    is_nb = modelled & (var > mean * (1 + 1e-12))
    mu = np.where(modelled, mean, 0.0)
    size = np.full(g, np.inf)
    pi = np.zeros(g)
    nb_genes = np.flatnonzero(is_nb)
    if nb_genes.size:
        gene, x, mult = _select_pairs(*_pairs(counts), nb_genes, g)
        k = nb_genes.size
        size[nb_genes] = nb_size_mle(gene, x, mult, float(n), mean[nb_genes], k)
        if zero_inflation:
            # zero inflation can raise the likelihood near the NB fit only where it predicts fewer
            # zeros than observed: elsewhere d loglik / d pi = n_zero / f0 - n <= 0 at pi = 0
            r, m = size[nb_genes], mean[nb_genes]
            excess = (n - nnz[nb_genes]) > n * np.exp(-r * np.log1p(m / r))
            zi = nb_genes[excess]
            if zi.size:
                gene, x, mult = _select_pairs(gene, x, mult, np.flatnonzero(excess), k)
                p, m, r = _zinb_em(
                    gene, x, mult, n, total[zi], (n - nnz[zi]).astype(float), mean[zi], size[zi]
                )
                pi[zi], mu[zi], size[zi] = p, m, r
    return Marginals(mu=mu, size=size, pi=pi)


def _zinb_em(gene, x, mult, n, total, n_zero, mu, size):
    """ZINB maximum likelihood by EM, all genes at once (they converge at their own pace).

    E-step: each zero is structural with probability ``tau = pi / (pi + (1 - pi) f0)``, ``f0`` the
    NB probability of 0. M-step: ``pi = n_zero tau / n``; the NB part is fit to the non-zero
    counts plus the zeros weighted ``1 - tau``: mean = total / weight, size by bisection near the
    last value (the full bracket where the root left it).
    """
    k = mu.size
    pi, mu, total, n_zero = np.zeros(k), mu.copy(), np.asarray(total, float), np.asarray(n_zero, float)
    f0 = np.exp(-size * np.log1p(mu / size))
    pi[:] = np.clip((n_zero / n - f0) / np.maximum(1 - f0, 1e-12), 1e-3, 0.99 * n_zero / n)
    log_r = np.log(size)
    active = np.arange(k)
    for _ in range(EM_STEPS):
        a_pi, a_mu, a_lr = pi[active], mu[active], log_r[active]
        nz, tot = n_zero[active], total[active]
        r = np.exp(a_lr)
        f0 = np.exp(-r * np.log1p(a_mu / r))
        tau = a_pi / (a_pi + (1 - a_pi) * f0)
        new_pi = nz * tau / n
        n_eff = n - nz * tau
        new_mu = tot / n_eff
        ka = active.size
        lo = np.maximum(a_lr - 1.0, LOG_SIZE_RANGE[0])
        hi = np.minimum(a_lr + 1.0, LOG_SIZE_RANGE[1])
        outside = (nb_score(lo, gene, x, mult, n_eff, new_mu, ka) <= 0) | (
            nb_score(hi, gene, x, mult, n_eff, new_mu, ka) > 0
        )
        lo = np.where(outside, LOG_SIZE_RANGE[0], lo)
        hi = np.where(outside, LOG_SIZE_RANGE[1], hi)
        new_lr = np.log(nb_size_mle(gene, x, mult, n_eff, new_mu, ka, lo, hi, steps=EM_BISECTION_STEPS))
        change = np.maximum(np.abs(new_pi - a_pi), np.abs(new_lr - a_lr))
        pi[active], mu[active], log_r[active] = new_pi, new_mu, new_lr
        moving = change > EM_TOL
        if not moving.any():
            break
        if not moving.all():
            gene, x, mult = _select_pairs(gene, x, mult, np.flatnonzero(moving), ka)
            active = active[moving]
    return pi, mu, np.exp(log_r)


def zinb_logpmf(x: np.ndarray, mu, size, pi) -> np.ndarray:
    """Log-probability of counts under the marginal (broadcasting); for tests and diagnostics."""
    x = np.asarray(x, dtype=np.float64)
    size = np.asarray(size, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    with np.errstate(divide="ignore"):
        nb = np.where(
            np.isfinite(size),
            stats.nbinom.logpmf(x, np.where(np.isfinite(size), size, 1.0), _p(mu, size)),
            stats.poisson.logpmf(x, mu),
        )
        return np.where(x == 0, np.log(pi + (1 - pi) * np.exp(nb)), np.log1p(-pi) + nb)


def _p(mu, size):
    """scipy's NB success probability for mean ``mu`` and size ``size``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(size), size / (size + mu), 1.0)


# -- CDF tables, PIT, quantiles --------------------------------------------------------------------


def _ppf_scipy(q: np.ndarray, mu: float, size: float, pi: float) -> np.ndarray:
    """Quantile by scipy (scDesign2's ``qnbinom(pmax(0, u - pi) / (1 - pi))``): table fallback."""
    q = np.clip((np.asarray(q) - pi) / (1 - pi), 0.0, 1.0)
    if mu <= 0:
        return np.zeros_like(q)
    k = stats.nbinom.ppf(q, size, size / (size + mu)) if np.isfinite(size) else stats.poisson.ppf(q, mu)
    return np.maximum(k, 0.0)  # scipy's ppf(0) is -1; R's qnbinom(0) is 0


def cdf_table(mu: float, size: float, pi: float, upto: int = 0) -> np.ndarray:
    """``F(0), F(1), ..., F(K)`` of one marginal, K the larger of ``upto`` and the 1 - TAIL quantile."""
    if mu <= 0:
        return np.ones(max(int(upto), 0) + 1)
    top = int(min(max(_ppf_scipy(1 - TAIL, mu, size, 0.0), upto), MAX_TABLE))
    k = np.arange(top + 1)
    pmf = stats.nbinom.pmf(k, size, size / (size + mu)) if np.isfinite(size) else stats.poisson.pmf(k, mu)
    return np.minimum(pi + (1 - pi) * np.cumsum(pmf), 1.0)


def cdf_tables(m: Marginals, upto: np.ndarray | None = None) -> list[np.ndarray]:
    upto = np.zeros(m.n_genes, dtype=np.int64) if upto is None else upto
    return [cdf_table(m.mu[j], m.size[j], m.pi[j], int(upto[j])) for j in range(m.n_genes)]


def randomised_pit(x: np.ndarray, tables: list[np.ndarray], v: np.ndarray) -> np.ndarray:
    """scDesign2's distributional transform: ``u = F(x) v + F(x - 1) (1 - v)`` per gene (column),
    ``v`` uniform jitter (0.5 without jitter), then clamped ``epsilon`` away from 0 and 1 as
    scDesign2 does (subtract ``epsilon`` where ``1 - u < epsilon``, add it where ``u < epsilon``).
    ``x``: integer counts."""
    x = np.asarray(x, dtype=np.int64)
    u = np.empty(x.shape, dtype=np.float64)
    for j, t in enumerate(tables):
        col = np.minimum(x[:, j], t.size - 1)  # beyond a table F is within TAIL of 1
        upper = t[col]
        lower = np.where(x[:, j] > 0, t[np.maximum(col - 1, 0)], 0.0)
        u[:, j] = upper * v[:, j] + lower * (1 - v[:, j])
    u = np.where(1 - u < EPSILON, u - EPSILON, u)
    return np.where(u < EPSILON, u + EPSILON, u)


def quantile(u: np.ndarray, tables: list[np.ndarray], m: Marginals) -> np.ndarray:
    """The smallest count k with ``F(k) >= u``, per gene (column); the inverse of the CDF tables,
    scipy beyond a table's end."""
    out = np.empty(u.shape, dtype=np.float64)
    for j, t in enumerate(tables):
        col = u[:, j]
        k = np.searchsorted(t, col, side="left").astype(np.float64)
        beyond = k >= t.size
        if beyond.any():
            k[beyond] = _ppf_scipy(col[beyond], m.mu[j], m.size[j], m.pi[j])
        out[:, j] = k
    return out
