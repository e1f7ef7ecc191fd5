"""Known-answer and invariance tests of the paper's metrics (tiny synthetic data, seconds)."""

from __future__ import annotations

import itertools
import math

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from bench.evaluation import EvalContext, infer_scale, lognorm, to_lognorm
from bench.metrics import (
    AUC,
    CD,
    MEAN_CORR,
    MMD,
    auc,
    cd_from_corr,
    correlation_discrepancy,
    mean_corr,
    median_nn_distance,
    mmd,
    pearson_matrix,
)


def gauss(n, d=10, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# -- AUC --------------------------------------------------------------------------------------------
def test_auc_same_distribution_is_chance():
    res = auc(gauss(200, seed=1), gauss(200, seed=2), seed=0, n_trees=100)
    assert abs(res.auc - 0.5) < 0.1
    assert len(res.fold_aucs) == 5 and len(res.roc) == 5


def test_auc_separable_is_near_one():
    res = auc(gauss(150, seed=1), gauss(150, shift=3.0, seed=2), seed=0, n_trees=100)
    assert res.auc > 0.95


def test_auc_fold_sd_is_the_sample_sd():
    # ddof=1 like every other sd in the tables (main used the population sd, ddof=0)
    res = auc(gauss(60, seed=1), gauss(60, shift=0.4, seed=2), seed=0, n_trees=30)
    assert len(set(res.fold_aucs)) > 1
    assert res.auc_sd == pytest.approx(np.std(res.fold_aucs, ddof=1))
    assert res.auc_sd != pytest.approx(np.std(res.fold_aucs))


def test_auc_direction_is_the_distance_to_one_half():
    from bench.api.metric import arrow, badness

    assert AUC.direction_of("auc") == "target" and AUC.target_of("auc") == 0.5
    assert AUC.direction_of("auc_sd") is None  # the fold spread is information, not a score
    assert badness(0.3, "target", 0.5) == pytest.approx(badness(0.7, "target", 0.5))
    assert badness(0.55, "target", 0.5) < badness(0.3, "target", 0.5)
    assert arrow("target", 0.5) == "(→0.5)"


def test_auc_folds_agree_with_sklearn():
    real, fake = gauss(60, seed=1), gauss(60, shift=0.5, seed=2)
    res = auc(real, fake, seed=7, n_trees=50, n_jobs=1)
    for fold_auc, (y, score) in zip(res.fold_aucs, res.predictions, strict=True):
        assert fold_auc == pytest.approx(roc_auc_score(y, score))
    # independent reconstruction of the protocol with plain sklearn
    X, y = np.vstack([real, fake]).astype(np.float32), np.r_[np.zeros(60), np.ones(60)]
    cv = StratifiedKFold(5, shuffle=True, random_state=7)
    expected = []
    for k, (tr, te) in enumerate(cv.split(X, y)):
        rf = RandomForestClassifier(n_estimators=50, max_features="sqrt", random_state=7 + k)
        rf.fit(X[tr], y[tr])
        expected.append(roc_auc_score(y[te], rf.predict_proba(X[te])[:, 1]))
    np.testing.assert_allclose(res.fold_aucs, expected)


def test_auc_subsamples_the_larger_side_and_is_seeded():
    real, fake = gauss(50, seed=1), gauss(200, shift=0.3, seed=2)
    a = auc(real, fake, seed=3, n_trees=30)
    b = auc(real, fake, seed=3, n_trees=30)
    assert a.n_cells == 50 and a.fold_aucs == b.fold_aucs
    assert auc(real, fake, seed=3, n_trees=30, max_cells=20).n_cells == 20


def test_auc_cell_order_does_not_matter_beyond_noise():
    real, fake = gauss(200, seed=1), gauss(200, shift=0.4, seed=2)
    base = auc(real, fake, seed=0, n_trees=100).auc
    rng = np.random.default_rng(5)
    shuffled = auc(real[rng.permutation(200)], fake[rng.permutation(200)], seed=0, n_trees=100).auc
    assert abs(base - shuffled) < 0.05


def test_auc_sparse_equals_dense():
    real, fake = np.abs(gauss(60, seed=1)), np.abs(gauss(60, shift=0.5, seed=2))
    d = auc(real, fake, seed=0, n_trees=30)
    s = auc(sp.csr_matrix(real), sp.csr_matrix(fake), seed=0, n_trees=30)
    np.testing.assert_allclose(d.fold_aucs, s.fold_aucs)


# -- MMD --------------------------------------------------------------------------------------------
def direct_mmd(X, Y, scales, biased=False):
    """MMD^2 by a plain O(n^2) double loop (independent of the blocked implementation), with the
    kernel summed over the scales; unbiased (diagonal terms left out) or biased (included)."""

    def k(a, b):
        d2 = float(((a - b) ** 2).sum())
        return sum(math.exp(-d2 / (2 * s * s)) for s in scales)

    m, n = len(X), len(Y)
    if biased:
        xx = sum(k(X[i], X[j]) for i in range(m) for j in range(m)) / (m * m)
        yy = sum(k(Y[i], Y[j]) for i in range(n) for j in range(n)) / (n * n)
    else:
        xx = sum(k(X[i], X[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        yy = sum(k(Y[i], Y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(X[i], Y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def direct_median_nn(X, k=25):
    dists = []
    for i in range(len(X)):
        d = sorted(float(np.linalg.norm(X[i] - X[j])) for j in range(len(X)) if j != i)
        dists.extend(d[: k - 1])
    return float(np.median(dists))


def test_mmd_matches_double_loop():
    X, Y = gauss(9, d=3, seed=1), gauss(9, d=3, shift=0.7, seed=2)
    med = direct_median_nn(X)
    scales = (med / 2, med, 2 * med)
    expected = direct_mmd(X, Y, scales)
    res = mmd(X, Y, seed=0, dtype="float64")
    assert res.median_nn == pytest.approx(med)
    np.testing.assert_allclose(res.scales, scales)
    assert res.mmd == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert mmd(X, Y, seed=0, dtype="float32").mmd == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # the biased estimator (diagonal terms included) against the same double loop
    biased = direct_mmd(X, Y, scales, biased=True)
    assert biased > expected
    assert mmd(X, Y, seed=0, dtype="float64", estimator="biased").mmd == pytest.approx(biased, rel=1e-10)


def test_mmd_kernel_sums_its_scales():
    # one pair of cells per side at known distances: with the kernel summed over S scales,
    # biased MMD^2 of identical single points is 0 and of far-apart points is 2 S (k(a,a) = S)
    X, Y = np.zeros((2, 2)), np.full((2, 2), 1e3)
    for scales in ((1.0,), (1.0, 2.0, 4.0)):
        res = mmd(X, Y, seed=0, scales=scales, dtype="float64", estimator="biased")
        assert res.mmd == pytest.approx(2 * len(scales))
    with pytest.raises(ValueError, match="estimator"):
        mmd(X, Y, seed=0, scales=(1.0,), estimator="plain")


def test_mmd_explicit_scales_any_ratio_match_double_loop():
    X, Y = gauss(8, d=3, seed=5), gauss(7, d=3, shift=0.4, seed=6)
    for scales in ((0.7, 1.9, 3.3), (1.0, 2.0), (2.5,)):  # general path, squaring chain, one scale
        res = mmd(X, Y, seed=0, scales=scales, dtype="float64")
        assert res.n_real == 7  # equal sizes: the larger side is subsampled
        for estimator in ("unbiased", "biased"):
            expected = direct_mmd(X[:7], Y, scales, biased=estimator == "biased")
            sub = mmd(X[:7], Y, seed=0, scales=scales, dtype="float64", estimator=estimator).mmd
            assert sub == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_mmd_cache_of_the_real_term():
    X, Y1, Y2 = gauss(40, seed=1), gauss(40, shift=0.2, seed=2), gauss(40, shift=0.5, seed=3)
    cache: dict = {}
    a = mmd(X, Y1, seed=0, cache=cache)
    assert len(cache) == 1
    b = mmd(X, Y2, seed=0, cache=cache)
    assert len(cache) == 1
    assert a.mmd == mmd(X, Y1, seed=0).mmd and b.mmd == mmd(X, Y2, seed=0).mmd


def test_median_nn_uses_k_minus_one_neighbours():
    X = gauss(60, d=4, seed=4)
    assert median_nn_distance(X, seed=0) == pytest.approx(direct_median_nn(X, k=25))


def test_mmd_blocked_equals_unblocked():
    X, Y = gauss(53, d=5, seed=1), gauss(53, d=5, shift=0.3, seed=2)
    whole = mmd(X, Y, seed=0, block_size=10_000, dtype="float64").mmd
    for block in (1, 4, 7, 16):
        assert mmd(X, Y, seed=0, block_size=block, dtype="float64").mmd == pytest.approx(whole, rel=1e-10)


def test_mmd_same_distribution_near_zero_and_separated_larger():
    # thresholds in units of S = 3 scales (the kernel sums them, k(a, a) = 3)
    same = mmd(gauss(300, seed=1), gauss(300, seed=2), seed=0).mmd
    apart = mmd(gauss(300, seed=1), gauss(300, shift=1.0, seed=2), seed=0).mmd
    assert abs(same) < 0.03
    assert apart > 0.3 > 10 * abs(same)


def test_mmd_identical_inputs_near_zero():
    X = gauss(200, seed=1)
    assert abs(mmd(X, X.copy(), seed=0).mmd) < 0.03  # 3 scales summed


def test_mmd_seeded_and_order_invariant():
    X, Y = gauss(80, d=6, seed=1), gauss(80, d=6, shift=0.5, seed=2)
    base = mmd(X, Y, seed=0, dtype="float64").mmd
    assert mmd(X, Y, seed=0, dtype="float64").mmd == base
    rng = np.random.default_rng(9)
    shuffled = mmd(X[rng.permutation(80)], Y[rng.permutation(80)], seed=0, dtype="float64").mmd
    assert shuffled == pytest.approx(base, rel=1e-9)


def test_mmd_max_cells_subsamples_equal_sizes():
    X, Y = gauss(120, seed=1), gauss(90, seed=2)
    assert mmd(X, Y, seed=0).n_real == 90
    res = mmd(X, Y, seed=0, max_cells=40)
    assert res.n_real == res.n_fake == 40
    assert mmd(X, Y, seed=0, max_cells=40).mmd == res.mmd


# -- correlation discrepancy ------------------------------------------------------------------------
def test_cd_hand_computed_3x3():
    # real: g2 = 2 g1 (r = 1), g3 = -g1 (r = -1)
    real = np.array([[1, 2, 4], [2, 4, 3], [3, 6, 2], [4, 8, 1]], dtype=float)
    # generated: g2 = g1 (r = 1), g3 = (1, -1, 1, -1): r(g1, g3) = -2 / (sqrt(5) * 2) = -1/sqrt(5)
    fake = np.array([[1, 1, 1], [2, 2, -1], [3, 3, 1], [4, 4, -1]], dtype=float)
    a = -1 / math.sqrt(5)
    G = np.array([[1, 1, a], [1, 1, a], [a, a, 1]])
    R = np.array([[1, 1, -1], [1, 1, -1], [-1, -1, 1]])
    res = correlation_discrepancy(real, fake)
    np.testing.assert_allclose(res.generated_corr, G, atol=1e-12)
    np.testing.assert_allclose(res.real_corr, R, atol=1e-12)
    # column sums of |G - R|: (1 + a, 1 + a, 2 (1 + a)) -> CD = 2 (1 - 1/sqrt 5)
    assert res.cd == pytest.approx(2 * (1 + a))
    np.testing.assert_allclose(res.column_sums, [1 + a, 1 + a, 2 * (1 + a)])
    assert cd_from_corr(G, R)[0] == pytest.approx(2 * (1 + a))


def test_cd_identical_is_zero_and_order_invariant():
    X = np.abs(gauss(100, d=8, seed=1))
    assert correlation_discrepancy(X, X.copy()).cd == 0.0
    Y = np.abs(gauss(100, d=8, seed=2))
    base = correlation_discrepancy(X, Y).cd
    rng = np.random.default_rng(0)
    assert correlation_discrepancy(X[rng.permutation(100)], Y[rng.permutation(100)]).cd == pytest.approx(base)


def test_pearson_matrix_matches_numpy_and_a_constant_gene_is_nan_to_num():
    X = gauss(50, d=5, seed=1)
    np.testing.assert_allclose(pearson_matrix(X), np.corrcoef(X, rowvar=False), atol=1e-12)
    X[:, 2] = 3.0
    C = pearson_matrix(sp.csr_matrix(X))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.nan_to_num(np.corrcoef(X, rowvar=False))
    np.testing.assert_allclose(C, expected, atol=1e-12)
    assert np.all(C[2] == 0) and np.all(C[:, 2] == 0)  # the whole row and column, diagonal included


def test_cd_hand_computed_with_a_constant_gene():
    # real: g1 = (1, 2, 3, 4), g2 = 2 g1 (r = 1), g3 = (1, -1, 1, -1): r(g1, g3) = -2 / (sqrt(5) 2)
    real = np.array([[1, 2, 1], [2, 4, -1], [3, 6, 1], [4, 8, -1]], dtype=float)
    # generated: g1 as real, g2 constant (never varies), g3 = -g1 (r = -1)
    fake = np.array([[1, 5, -1], [2, 5, -2], [3, 5, -3], [4, 5, -4]], dtype=float)
    a = -1 / math.sqrt(5)
    R = np.array([[1, 1, a], [1, 1, a], [a, a, 1]])
    G = np.array([[1, 0, -1], [0, 0, 0], [-1, 0, 1]])  # the constant gene's row and column are 0
    res = correlation_discrepancy(real, fake)
    np.testing.assert_allclose(res.real_corr, R, atol=1e-12)
    np.testing.assert_allclose(res.generated_corr, G, atol=1e-12)
    # |G - R| column sums: g1: 0 + 1 + (1 + a); g2: 1 + 1 + |a|; g3: (1 + a) + |a| + 0
    cols = [1 + 1 + a, 2 - a, 1 + a - a]
    np.testing.assert_allclose(res.column_sums, cols, atol=1e-12)
    assert res.cd == pytest.approx(2 + 1 / math.sqrt(5))  # the constant gene's column


# -- mean correlation -------------------------------------------------------------------------------
def test_mean_corr_known_answers():
    X = np.abs(gauss(40, d=6, seed=1))
    assert mean_corr(X, X) == pytest.approx(1.0)
    assert mean_corr(X, 2 * X + 1) == pytest.approx(1.0)
    mu = X.mean(0)
    Y = np.tile(mu.max() - mu, (5, 1))
    assert mean_corr(X, Y) == pytest.approx(-1.0)
    assert mean_corr(sp.csr_matrix(X), X) == pytest.approx(1.0)


# -- the evaluation contract and the metric adapters ------------------------------------------------
def make_counts(n_per_class, n_genes=40, seed=0):
    rng = np.random.default_rng(seed)
    labels, rows = [], []
    base = rng.gamma(2.0, 1.0, size=n_genes)
    for c, n in enumerate(n_per_class):
        mu = base.copy()
        mu[c * 5 : c * 5 + 5] *= 8  # marker genes per class
        rows.append(rng.poisson(mu * 3, size=(n, n_genes)))
        labels += [f"type{c}"] * n
    return np.vstack(rows).astype(np.float32), np.array(labels)


def to_adata(counts, labels, prefix="c"):
    X = counts.copy()
    tot = X.sum(1, keepdims=True)
    X = np.where(tot > 0, X * 20_000 / np.where(tot > 0, tot, 1), 0).astype(np.float32)
    a = ad.AnnData(X=sp.csr_matrix(X))
    a.layers["counts"] = sp.csr_matrix(counts)
    a.var_names = [f"g{i}" for i in range(counts.shape[1])]
    a.obs_names = [f"{prefix}{i}" for i in range(counts.shape[0])]
    a.obs["cell_type"] = labels
    a.obs["cell_type"] = a.obs["cell_type"].astype("category")
    return a


@pytest.fixture(scope="module")
def ctx():
    counts, labels = make_counts([180, 120, 90], seed=1)
    test = np.random.default_rng(0).permutation(len(labels))[:130]
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test] = True
    train_ad = to_adata(counts[~is_test], labels[~is_test])
    test_ad = to_adata(counts[is_test], labels[is_test], "t")
    return EvalContext("toy", train_ad, test_ad, "cell_type", seed=0)


def generated_like(adata, scale):
    counts = adata.layers["counts"].toarray()
    if scale == "counts":
        X = counts
    elif scale == "library-size-20000":
        X = adata.X.toarray()
    else:
        X = np.log1p(adata.X.toarray())
    out = ad.AnnData(X=sp.csr_matrix(X.astype(np.float32)), obs=adata.obs.copy())
    out.var_names = adata.var_names
    out.uns["scgenbench"] = {"output_scale": scale}
    return out


@pytest.mark.parametrize("scale", ["counts", "library-size-20000", "log1p"])
def test_transform_generated_all_scales_agree(ctx, scale):
    X_log, pcs = ctx.transform_generated(generated_like(ctx.test, scale))
    np.testing.assert_allclose(X_log.toarray(), ctx.test_log.toarray(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pcs, ctx.test_pcs, rtol=1e-3, atol=1e-3)


def test_transform_generated_needs_a_scale(ctx):
    from bench.api.errors import TaskFailed

    g = generated_like(ctx.test, "log1p")
    del g.uns["scgenbench"]
    fresh = EvalContext("toy", ctx.train, ctx.test, "cell_type")
    with pytest.raises(TaskFailed, match="output scale"):
        fresh.transform_generated(g)
    assert fresh.transform_generated(g, "log1p")[0].shape == ctx.test_log.shape
    # the harness's output check records the generator's declared scale on the cells, nowhere else
    g.uns["scgenbench"] = {"output_scale": "log1p"}
    np.testing.assert_allclose(
        fresh.transform_generated(g)[0].toarray(), ctx.test_log.toarray(), rtol=1e-4, atol=1e-4
    )
    del g.uns["scgenbench"]
    # counts and library-size-20000 need the same transform and are recognisable without a label
    for scale in ("counts", "library-size-20000"):
        h = generated_like(ctx.test, scale)
        del h.uns["scgenbench"]
        assert infer_scale(h.X) == scale
        np.testing.assert_allclose(
            fresh.transform_generated(h)[0].toarray(), ctx.test_log.toarray(), rtol=1e-4, atol=1e-4
        )
    assert infer_scale(g.X) is None


def test_to_lognorm_inverts_log1p():
    X = np.array([[1.0, 3.0, 0.0], [5.0, 5.0, 10.0]])
    np.testing.assert_allclose(
        to_lognorm(np.log1p(X), "log1p").toarray(), lognorm(X).toarray(), rtol=1e-5, atol=1e-6
    )


def test_de_genes_equal_scanpy(ctx):
    import scanpy as sc

    genes = ctx.de_genes(n_genes=5)
    rows = ctx.fit_cells  # the training cells outside the control reserve
    a = ad.AnnData(X=ctx.train_log[rows].copy(), obs=ctx.train.obs[["cell_type"]].iloc[rows].copy())
    a.var_names = ctx.train.var_names
    sc.tl.rank_genes_groups(a, "cell_type", method="wilcoxon")
    names = a.uns["rank_genes_groups"]["names"]
    expected = []
    for g in itertools.chain.from_iterable(names[grp][:5] for grp in names.dtype.names):
        if g not in expected:
            expected.append(g)
    assert genes == expected
    # the planted markers are found: type c has g(5c)..g(5c+4)
    assert set(genes[:5]) == {f"g{i}" for i in range(5)}
    assert ("de_genes", 5, "wilcoxon", 0) in ctx.shared
    # a second context over the same data and seed (the runner builds one per task) reuses it
    other = EvalContext("toy", ctx.train, ctx.test, "cell_type", seed=0)
    assert ("de_genes", 5, "wilcoxon", 0) in other.shared
    assert other.de_genes(n_genes=5) == genes
    assert len(EvalContext("toy", ctx.train.copy(), ctx.test, "cell_type").shared) == 0


def test_de_test_is_an_option_t_test_equals_scanpy(ctx):
    import scanpy as sc

    from bench.api.errors import UserError

    genes = ctx.de_genes(n_genes=5, method="t-test")
    rows = ctx.fit_cells
    a = ad.AnnData(X=ctx.train_log[rows].copy(), obs=ctx.train.obs[["cell_type"]].iloc[rows].copy())
    a.var_names = ctx.train.var_names
    sc.tl.rank_genes_groups(a, "cell_type", method="t-test")
    names = a.uns["rank_genes_groups"]["names"]
    expected = list(dict.fromkeys(itertools.chain.from_iterable(names[g][:5] for g in names.dtype.names)))
    assert genes == expected
    out = CD.func(
        ctx, generated_like(ctx.test, "counts"), seed=0, **CD.options_for("quick", {"method": "t-test"})
    )
    assert out.info["de_method"] == "t-test" and list(out.artifacts["genes"]) == expected
    assert CD.options_for("quick")["method"] == "wilcoxon"
    with pytest.raises(UserError, match="wilcoxon, t-test"):
        CD.options_for("quick", {"method": "logreg"})


def test_adapters_real_vs_itself(ctx):
    # CD and mean_corr are deterministic: the test cells themselves give the exact answers
    gen = generated_like(ctx.test, "counts")
    out = CD.func(ctx, gen, seed=0, **CD.options_for("quick"))
    assert out.values["cd"] == pytest.approx(0.0, abs=1e-4)
    assert out.artifacts["generated_corr"].shape == (len(out.artifacts["genes"]),) * 2
    assert MEAN_CORR.func(ctx, gen, seed=0).values["mean_corr"] == pytest.approx(1.0, abs=1e-6)
    # AUC and MMD: the real control (training cells, disjoint from the test cells). Feeding the
    # test cells themselves would put each cell's twin, labelled "generated", in the training
    # folds, and the forest would learn to predict the opposite label (AUC ~0).
    gen = generated_like(ctx.train, "library-size-20000")
    m = MMD.func(ctx, gen, seed=0, **MMD.options_for("quick"))
    assert abs(m.values["mmd"]) < 0.06 and len(m.info["scales"]) == 3
    a = AUC.func(ctx, gen, seed=0, **{**AUC.options_for("quick"), "n_trees": 50})
    assert abs(a.values["auc"] - 0.5) < 0.15 and a.info["space"] == "genes"
    assert {"roc_fpr_0", "roc_tpr_4", "fold_aucs"} <= set(a.artifacts)
    p = AUC.func(ctx, gen, seed=0, space="pca50", n_trees=50)
    assert p.info["space"] == "pca50"
    for metric, output in ((CD, out), (MMD, m), (AUC, a)):
        assert set(metric.directions) <= set(output.values)
    assert m.info["estimator"] == "unbiased" and out.info["de_method"] == "wilcoxon"


def test_adapters_detect_a_bad_generator(ctx):
    # genes in reversed order: a wrong expression profile, easy to tell apart
    rev = generated_like(ctx.train, "counts")
    rev.X = sp.csr_matrix(rev.X.toarray()[:, ::-1])
    assert AUC.func(ctx, rev, seed=0, n_trees=50).values["auc"] > 0.95
    assert MEAN_CORR.func(ctx, rev, seed=0).values["mean_corr"] < 0.9
    # all cells of one type (mode collapse): MMD and CD clearly above the real-control floor
    only = ctx.train[ctx.train.obs["cell_type"] == "type0"]
    gen = generated_like(only, "counts")
    real_floor = MMD.func(ctx, generated_like(ctx.train, "counts"), seed=0).values["mmd"]
    assert MMD.func(ctx, gen, seed=0).values["mmd"] > 5 * abs(real_floor) + 0.15
    assert CD.func(ctx, gen, seed=0).values["cd"] > 1.0


def test_unknown_space_is_a_user_error(ctx):
    from bench.api.errors import UserError

    with pytest.raises(UserError, match="space"):
        AUC.func(ctx, generated_like(ctx.test, "counts"), seed=0, space="umap")


def test_control_reserve_is_stratified_seeded_and_capped():
    from bench.evaluation import control_reserve

    train = np.array(["a"] * 50 + ["b"] * 30 + ["rare"] * 4)
    test = np.array(["a"] * 6 + ["b"] * 3 + ["rare"] * 5)  # more rare test cells than half its training cells
    m = control_reserve(train, test, seed=0)
    assert (m[:50].sum(), m[50:80].sum(), m[80:].sum()) == (6, 3, 2)  # test's counts, capped at half
    assert (control_reserve(train, test, seed=0) == m).all()
    assert not (control_reserve(train, test, seed=1) == m).all()


def test_evaluation_fits_leave_the_control_reserve_out(ctx):
    """PCA and DE genes are fit on the training cells outside the control reserve (known answer:
    sklearn's PCA on those cells), so reserve cells are as new to the evaluation as generated ones."""
    from sklearn.decomposition import PCA

    from bench.metrics._correlation import top_de_genes

    keep = ~ctx.control_reserve
    assert 0 < ctx.control_reserve.sum() < len(keep)
    X = ctx.train_log[np.flatnonzero(keep)]
    ref = PCA(n_components=ctx.pca.n_components_, svd_solver="arpack", random_state=ctx.seed).fit(X)
    np.testing.assert_allclose(np.abs(ctx.pca.components_), np.abs(ref.components_), atol=1e-4)
    sub = ad.AnnData(X=X, obs=ctx.train.obs[[ctx.label_key]].iloc[np.flatnonzero(keep)].copy())
    sub.var_names = list(map(str, ctx.train.var_names))
    assert ctx.de_genes(n_genes=3) == top_de_genes(sub, ctx.label_key, n_genes=3)


def test_cells_a_pca_was_fit_on_score_worse_than_new_cells():
    """Why the reserve exists: with many genes per cell, the cells a PCA was fit on project with
    more variance than new cells, and their MMD to held-out cells is far above a held-out set's."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, 400)).astype(np.float32)  # one population, no structure
    fit_on, held, test = X[:300], X[300:600], X[600:]
    pca = PCA(n_components=50, svd_solver="arpack", random_state=0).fit(fit_on)
    zi, zh, zt = pca.transform(fit_on), pca.transform(held), pca.transform(test)
    assert zi.var(0).sum() > 1.3 * zt.var(0).sum() and zh.var(0).sum() == pytest.approx(
        zt.var(0).sum(), rel=0.1
    )
    assert mmd(zi, zt, seed=0).mmd > 10 * abs(mmd(zh, zt, seed=0).mmd)


def test_quick_profile_caps_the_superlinear_metrics_and_paper_does_not(ctx):
    from bench.metrics import MEMORISATION, QUICK_MAX_CELLS

    for metric in (AUC, MMD, MEMORISATION):
        assert metric.options_for("quick")["max_cells"] == QUICK_MAX_CELLS == 10_000, metric.name
        assert metric.options_for("paper")["max_cells"] is None, metric.name
    # the cap is per side and recorded with the values (the test split here is far below 10,000)
    gen = generated_like(ctx.train, "library-size-20000")
    n_test = ctx.test.n_obs
    a = AUC.func(ctx, gen, seed=0, **{**AUC.options_for("quick"), "n_trees": 20})
    assert a.info["n_cells_per_side"] == n_test
    capped = AUC.func(ctx, gen, seed=0, **{**AUC.options_for("quick"), "n_trees": 20, "max_cells": 40})
    m = MMD.func(ctx, gen, seed=0, **{**MMD.options_for("quick"), "max_cells": 40})
    assert capped.info["n_cells_per_side"] == m.info["n_cells_per_side"] == 40
