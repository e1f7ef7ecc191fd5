"""The ``copula`` generator (scDesign2-style): known answers for the marginals, the randomised PIT,
the quantiles and the copula correlation, then the generator contract."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import optimize, stats

from bench.api.errors import UserError
from bench.api.generator import validate_output
from bench.generators.copula import GaussianCopula
from bench.generators.copula.marginals import (
    EPSILON,
    Marginals,
    cdf_table,
    cdf_tables,
    fit_marginals,
    quantile,
    randomised_pit,
    zinb_logpmf,
)
from bench.generators.copula.plugin import correlation_factor
from tests.conftest import fit_generator


def _nb(rng, mu, size, n):
    return rng.negative_binomial(size, size / (size + mu), n)


# -- marginals ---------------------------------------------------------------------------------------


def test_nb_fit_is_the_maximum_likelihood_estimate():
    """The size MLE equals an independent numerical maximisation of scipy's NB log-likelihood (mean
    at the sample mean, its MLE), and recovers the true parameters of large samples."""
    rng = np.random.default_rng(0)
    mus, sizes = [0.5, 5.0, 20.0, 1.0], [0.3, 2.0, 10.0, 1.0]
    X = np.column_stack([_nb(rng, m, r, 4000) for m, r in zip(mus, sizes, strict=True)])
    fit = fit_marginals(sp.csr_matrix(X))
    np.testing.assert_allclose(fit.mu, X.mean(axis=0))
    assert (fit.pi == 0).all()
    for j in range(X.shape[1]):
        x, m = X[:, j], X[:, j].mean()

        def nll(log_r, x=x, m=m):
            r = np.exp(log_r)
            return -stats.nbinom.logpmf(x, r, r / (r + m)).sum()

        best = optimize.minimize_scalar(nll, bounds=(-8, 10), method="bounded", options={"xatol": 1e-10})
        np.testing.assert_allclose(fit.size[j], np.exp(best.x), rtol=1e-5)
    np.testing.assert_allclose(fit.size, sizes, rtol=0.15)
    np.testing.assert_allclose(fit.mu, mus, rtol=0.05)


def test_poisson_where_variance_does_not_exceed_the_mean_and_rare_genes_unmodelled():
    rng = np.random.default_rng(1)
    n = 500
    under = rng.binomial(4, 0.5, n)  # variance 1 < mean 2
    one = np.zeros(n, int)
    one[7] = 5  # a single non-zero count: fewer than min_nonzero = 2
    X = np.column_stack([under, one, np.zeros(n, int), _nb(rng, 3.0, 1.0, n)])
    fit = fit_marginals(sp.csr_matrix(X))
    assert np.isinf(fit.size[0]) and fit.mu[0] == pytest.approx(under.mean())
    assert fit.mu[1] == 0 and fit.mu[2] == 0  # always 0, as scDesign2's unmodelled genes
    assert np.isfinite(fit.size[3])
    assert fit_marginals(sp.csr_matrix(X), min_nonzero=1).mu[1] == pytest.approx(5 / n)


def test_zinb_em_reaches_the_likelihood_maximum():
    """Zero-inflated NB data: EM recovers (pi, mu, size) and its log-likelihood matches a generic
    optimiser's; a gene without excess zeros keeps pi = 0 (its NB fit)."""
    rng = np.random.default_rng(2)
    n = 20_000
    zinb = _nb(rng, 5.0, 2.0, n) * (rng.random(n) >= 0.3)
    plain = _nb(rng, 3.0, 1.0, n)
    fit = fit_marginals(sp.csr_matrix(np.column_stack([zinb, plain])), zero_inflation=True)
    assert fit.pi[0] == pytest.approx(0.3, abs=0.02)
    assert fit.mu[0] == pytest.approx(5.0, rel=0.05) and fit.size[0] == pytest.approx(2.0, rel=0.1)

    def nll(p):
        return -zinb_logpmf(zinb, np.exp(p[1]), np.exp(p[2]), 1 / (1 + np.exp(-p[0]))).sum()

    best = optimize.minimize(
        nll, [0.0, 1.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-9}
    )
    ours = zinb_logpmf(zinb, fit.mu[0], fit.size[0], fit.pi[0]).sum()
    assert ours >= -best.fun - 1e-3
    plain_fit = fit_marginals(sp.csr_matrix(plain[:, None]))
    if fit.pi[1] == 0:  # the NB fit already predicts the zeros: pi stays 0 and the NB fit stands
        assert fit.size[1] == pytest.approx(plain_fit.size[0])
    else:  # a little excess of zeros by chance: the ZINB fit must beat the NB one
        assert (
            zinb_logpmf(plain, fit.mu[1], fit.size[1], fit.pi[1]).sum()
            >= zinb_logpmf(plain, plain_fit.mu[0], plain_fit.size[0], 0.0).sum()
        )


# -- PIT and quantiles ------------------------------------------------------------------------------


def test_randomised_pit_known_values():
    """u = F(x) v + F(x - 1) (1 - v), clamped EPSILON away from 0 and 1 (scDesign2's rule); the
    normal scores are the standard normal quantiles of u."""
    mu = 2.0
    table = cdf_table(mu, np.inf, 0.0, upto=40)
    x = np.array([[0], [1], [3], [0], [40]])
    v = np.array([[0.25], [0.5], [1.0], [0.0], [1.0]])
    u = randomised_pit(x, [table], v)[:, 0]
    F = stats.poisson.cdf
    expected = [0.25 * F(0, mu), 0.5 * F(1, mu) + 0.5 * F(0, mu), F(3, mu), EPSILON, F(40, mu) - EPSILON]
    np.testing.assert_allclose(u, expected, rtol=1e-12)
    np.testing.assert_allclose(stats.norm.ppf(u), [stats.norm.ppf(e) for e in expected], rtol=1e-10)
    # zero inflation: F(0) = pi + (1 - pi) NB(0)
    zt = cdf_table(3.0, 1.5, 0.2)
    assert zt[0] == pytest.approx(0.2 + 0.8 * stats.nbinom.pmf(0, 1.5, 1.5 / 4.5))


def test_pit_of_the_true_marginal_is_uniform_only_with_jitter():
    rng = np.random.default_rng(3)
    mu, size, n = 3.0, 1.5, 20_000
    x = _nb(rng, mu, size, n)[:, None]
    table = [cdf_table(mu, size, 0.0, upto=int(x.max()))]
    u = randomised_pit(x, table, rng.random(x.shape))[:, 0]
    assert stats.kstest(u, "uniform").pvalue > 0.01
    u_mid = randomised_pit(x, table, np.full(x.shape, 0.5))[:, 0]  # jitter = False
    assert stats.kstest(u_mid, "uniform").pvalue < 1e-6


def test_quantile_inverts_the_cdf_as_scdesign2():
    """The smallest k with F(k) >= u: scipy's ppf for NB / Poisson, and scDesign2's
    ``qnbinom(max(0, u - pi) / (1 - pi))`` for a zero-inflated marginal; beyond a table, scipy."""
    u = np.linspace(0.0005, 0.9995, 400)[:, None] + 1e-9  # keep off exact CDF steps
    m = Marginals(
        mu=np.array([4.0, 2.5, 6.0]), size=np.array([1.5, np.inf, 2.0]), pi=np.array([0.0, 0.0, 0.25])
    )
    U = np.repeat(u, 3, axis=1)
    got = quantile(U, cdf_tables(m), m)
    np.testing.assert_array_equal(got[:, 0], stats.nbinom.ppf(u[:, 0], 1.5, 1.5 / 5.5))
    np.testing.assert_array_equal(got[:, 1], stats.poisson.ppf(u[:, 0], 2.5))
    q = np.maximum(0.0, u[:, 0] - 0.25) / 0.75
    np.testing.assert_array_equal(
        got[:, 2], np.maximum(stats.nbinom.ppf(q, 2.0, 2.0 / 8.0), 0)
    )  # R: qnbinom(0) = 0
    far = np.array([[1 - 1e-13]])
    assert quantile(far, [cdf_table(4.0, 1.5, 0.0)], m) == stats.nbinom.ppf(1 - 1e-13, 1.5, 1.5 / 5.5)


# -- the copula -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 300])
def test_correlation_factor_reproduces_the_pearson_correlation(n):
    z = np.random.default_rng(4).standard_normal((n, 20)) @ np.random.default_rng(5).standard_normal((20, 20))
    A = correlation_factor(z)
    np.testing.assert_allclose(A @ A.T, np.corrcoef(z, rowvar=False), atol=1e-10)
    assert A.shape == ((20, n) if n <= 20 else (20, 20))


def test_constant_normal_scores_get_a_zero_row():
    """Without jitter a gene with equal counts in every cell has constant scores: no correlation,
    its copula draw is 0 (the marginal's median), nothing is NaN."""
    z = np.random.default_rng(6).standard_normal((40, 5))
    z[:, 2] = 0.3
    for n in (40, 4):
        A = correlation_factor(z[:n])
        assert np.isfinite(A).all() and not A[2].any()
    train = copula_cells(60, seed=3)
    counts = train.layers["counts"].toarray()
    counts[:, 5] = 1.0  # a gene with one count in every cell
    train.layers["counts"] = sp.csr_matrix(counts)
    factors = []
    for seed in (0, 1):  # without jitter the fit does not depend on the seed
        gen = GaussianCopula(jitter=False, copula_genes=10)
        fit_generator(gen, train, seed=seed)
        factors.append(gen._models[gen.labels.index("a")].factor)
    np.testing.assert_array_equal(factors[0], factors[1])
    assert np.isfinite(factors[0]).all()
    assert np.isfinite(gen.generate({"a": 30}, seed=0).X.data).all()


TRUE_R = np.array([[1.0, 0.7, 0.3, 0.0], [0.7, 1.0, 0.0, 0.0], [0.3, 0.0, 1.0, -0.5], [0.0, 0.0, -0.5, 1.0]])
TRUE_MU = np.array([20.0, 10.0, 30.0, 8.0])
TRUE_SIZE = np.array([5.0, 3.0, 8.0, 2.0])


def copula_cells(n: int, seed: int) -> ad.AnnData:
    """Cells of two types: 'a' with 4 genes joined by a Gaussian copula with correlation TRUE_R
    and NB marginals (TRUE_MU, TRUE_SIZE), then 6 independent Poisson(1) genes; 'b' all Poisson."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4)) @ np.linalg.cholesky(TRUE_R).T
    u = stats.norm.cdf(z)
    a = np.column_stack([stats.nbinom.ppf(u[:, j], TRUE_SIZE[j], TRUE_SIZE[j] / (TRUE_SIZE[j] + TRUE_MU[j]))
                         for j in range(4)])  # fmt: skip
    a = np.hstack([a, rng.poisson(1.0, (n, 6))])
    b = rng.poisson(3.0, (n // 4, 10))
    X = np.vstack([a, b]).astype(np.float32)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(["a"] * n + ["b"] * (n // 4))}, index=[f"c{i}" for i in range(len(X))]
    )
    adata = ad.AnnData(X=sp.csr_matrix(X), obs=obs)
    adata.var_names = [f"g{j}" for j in range(10)]
    adata.layers["counts"] = adata.X.copy()
    return adata


def _spearman(X):
    return stats.spearmanr(X).statistic


def test_copula_recovers_a_known_correlation_and_known_marginals():
    train = copula_cells(4000, seed=6)
    gen = GaussianCopula(copula_genes=4)
    fit_generator(gen, train)
    a = gen._models[gen.labels.index("a")]
    np.testing.assert_array_equal(a.genes, [0, 1, 2, 3])  # the four most expressed genes of type a
    np.testing.assert_allclose(a.correlation, TRUE_R, atol=0.05)
    np.testing.assert_allclose(a.marginals.mu[:4], TRUE_MU, rtol=0.05)
    np.testing.assert_allclose(a.marginals.size[:4], TRUE_SIZE, rtol=0.15)
    out = gen.generate({"a": 4000}, seed=1)
    real = _spearman(train.X[:4000, :4].toarray())
    np.testing.assert_allclose(_spearman(out.X[:, :4].toarray()), real, atol=0.05)
    # without the copula (scDesign2's 'ind' model) the genes come out independent
    ind = GaussianCopula(copula_genes=0)
    fit_generator(ind, train)
    r_ind = _spearman(ind.generate({"a": 4000}, seed=1).X[:, :4].toarray())
    assert np.abs(r_ind[np.triu_indices(4, 1)]).max() < 0.05


def test_copula_genes_are_the_most_expressed_below_the_zero_cutoff():
    train = copula_cells(600, seed=7)
    gen = GaussianCopula(copula_genes=2)
    fit_generator(gen, train)
    a = gen._models[gen.labels.index("a")]
    np.testing.assert_array_equal(a.genes, [0, 2])  # means 20 and 30
    # zp_cutoff: genes with at least that share of zeros stay out (Poisson(1): ~37 % zeros)
    gen = GaussianCopula(copula_genes=100, zp_cutoff=0.3)
    fit_generator(gen, train)
    np.testing.assert_array_equal(gen._models[gen.labels.index("a")].genes, [0, 1, 2, 3])


# -- the generator contract -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    from tests.conftest import make_counts

    train = make_counts(n_cells=150, n_genes=40, seed=8)
    train.layers["counts"] = train.X.copy()
    gen = GaussianCopula(copula_genes=15)
    result = fit_generator(gen, train, seed=3)
    return gen, train, result


def test_conditional_and_unconditional_output_validates(fitted):
    gen, train, result = fitted
    assert result.extra["copula_genes"] == {"t0": 15, "t1": 15, "t2": 15}
    assert result.extra["counts_rounded"] is False
    kw = dict(var_names=list(train.var_names), label_key="cell_type", known_labels=gen.labels)
    req = {"t0": 7, "t1": 0, "t2": 4}
    out = validate_output(gen, gen.generate(req, seed=0), requested=req, **kw)
    assert out.obs["cell_type"].value_counts().to_dict() == {"t0": 7, "t2": 4}
    assert np.all(out.X.data == np.round(out.X.data))  # counts
    un = validate_output(gen, gen.generate(500, seed=0), requested=500, **kw)
    shares = un.obs["cell_type"].value_counts(normalize=True)
    np.testing.assert_allclose(shares.sort_index().to_numpy(), [1 / 3] * 3, atol=0.07)
    # the type-specific block is expressed higher in its own type
    t0 = out[out.obs.cell_type == "t0"].X.toarray()
    assert t0[:, :13].mean() > 3 * t0[:, 13:26].mean()


def test_generation_is_seeded_and_save_load_round_trips(fitted, tmp_path):
    gen, _, _ = fitted
    a, b, c = gen.generate(60, seed=5), gen.generate(60, seed=5), gen.generate(60, seed=6)
    assert (a.X != b.X).nnz == 0 and (a.X != c.X).nnz > 0
    gen.save(tmp_path / "m")
    again = GaussianCopula.load(tmp_path / "m")
    assert again.labels == gen.labels and again.var_names == gen.var_names and again.params == gen.params
    assert (again.generate(60, seed=5).X != a.X).nnz == 0


def test_fit_is_seeded():
    from tests.conftest import make_counts

    train = make_counts(n_cells=90, n_genes=30, seed=9)
    corr = []
    for seed in (1, 1, 2):
        gen = GaussianCopula(copula_genes=10)
        fit_generator(gen, train, seed=seed)
        corr.append(gen._models[0].correlation)
    np.testing.assert_array_equal(corr[0], corr[1])
    assert not np.array_equal(corr[0], corr[2])  # the PIT jitter comes from the fit's seed


def test_non_integer_counts_are_rounded_and_recorded():
    from tests.conftest import make_counts

    train = make_counts(n_cells=60, n_genes=20, seed=10)
    train.layers["counts"] = train.X * 1.37  # e.g. a published file's normalised values
    gen = GaussianCopula()
    assert fit_generator(gen, train).extra["counts_rounded"] is True
    assert np.all(gen.generate(10, seed=0).X.data % 1 == 0)


@pytest.mark.parametrize(
    "params, needle",
    [({"copula_genes": -1}, "copula_genes"), ({"zp_cutoff": 0}, "zp_cutoff"), ({"min_nonzero": 0}, "min_nonzero"),
     ({"genes": 3}, "unknown parameter")],
)  # fmt: skip
def test_bad_parameters_are_user_errors(params, needle):
    with pytest.raises(UserError, match=needle):
        GaussianCopula(**params)


def test_negative_counts_are_a_user_error():
    from tests.conftest import make_counts

    train = make_counts(n_cells=30, n_genes=10, seed=11)
    train.layers["counts"] = train.X.copy()
    train.layers["counts"].data[0] = -1
    with pytest.raises(UserError, match="negative"):
        fit_generator(GaussianCopula(), train)


def test_both_count_models_are_registered_and_listed():
    """``copula`` and ``scvi`` come through the entry points like every built-in, and `bench list`
    shows them with their metadata."""
    import os
    import subprocess
    import sys

    from bench.generators.scvi import ScviGenerator
    from bench.registry import get_generator

    assert get_generator("copula") is GaussianCopula and get_generator("scvi") is ScviGenerator
    out = subprocess.run([sys.executable, "-m", "bench.cli", "list", "generators"], capture_output=True,
                         text=True, check=True, env={**os.environ, "COLUMNS": "200"}).stdout  # fmt: skip
    for needle in ("copula", "scDesign2", "scvi", "scVI (scvi-tools)", "max_epochs=120"):
        assert needle in out  # names, descriptions and scvi's quick profile
    standard = subprocess.run([sys.executable, "-m", "bench.cli", "list", "generators", "--profile", "standard"],
                              capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "250"}).stdout  # fmt: skip
    assert "budget=7200 steps" in standard
