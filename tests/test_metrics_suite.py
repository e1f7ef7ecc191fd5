"""Known-answer tests of the metric suite beyond the paper (issue 17): distances, PRDC, per type,
memorisation, DE recovery, gene statistics; each against an independent implementation where one
exists (scipy, POT, sklearn, scanpy, plain loops). Tiny synthetic data, seconds."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from bench.api.metric import arrow, badness
from bench.metrics import (
    DE_RECOVERY,
    ENERGY,
    GENE_STATS,
    MEMORISATION,
    PER_TYPE,
    PRDC,
    SINKHORN,
    auc,
    concordance,
    de_recovery,
    de_scores,
    energy_distance,
    gene_stats,
    gene_variances,
    memorisation,
    mmd,
    per_type,
    prdc,
    sinkhorn_w2,
    zero_fractions,
)


def gauss(n, d=10, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# -- energy distance --------------------------------------------------------------------------------
def test_energy_identical_is_zero_and_separated_is_large():
    X = gauss(100)
    assert energy_distance(X, X.copy(), seed=0).energy == pytest.approx(0.0, abs=1e-9)
    same = energy_distance(gauss(200, seed=1), gauss(200, seed=2), seed=0).energy
    far = energy_distance(gauss(200, seed=1), gauss(200, shift=3.0, seed=2), seed=0).energy
    assert same < 0.1 and far > 10.0


def test_energy_hand_computed():
    # X = {0, 1}, Y = {2, 4}: E|X-Y| = (2+4+1+3)/4 = 2.5, E|X-X'| = 2/4, E|Y-Y'| = 4/4 -> 5 - 0.5 - 1
    res = energy_distance(np.array([[0.0], [1.0]]), np.array([[2.0], [4.0]]), seed=0)
    assert res.energy == pytest.approx(3.5) and res.n_real == res.n_fake == 2


def test_energy_agrees_with_scipy_in_1d_and_a_double_loop_in_50d():
    from scipy.stats import energy_distance as scipy_energy

    rng = np.random.default_rng(3)
    u, v = rng.normal(size=80), rng.gamma(2.0, size=80)
    ours = energy_distance(u[:, None], v[:, None], seed=0, block_size=7).energy
    assert np.sqrt(ours) == pytest.approx(scipy_energy(u, v), rel=1e-9)
    X, Y = gauss(60, d=50, seed=4), gauss(60, d=50, shift=0.3, seed=5)
    ref = 2 * cdist(X, Y).mean() - cdist(X, X).mean() - cdist(Y, Y).mean()
    assert energy_distance(X, Y, seed=0, block_size=16).energy == pytest.approx(ref, rel=1e-9)


def test_energy_caps_cells_seeded():
    X, Y = gauss(300, seed=1), gauss(500, seed=2)
    a = energy_distance(X, Y, seed=5, max_cells=100)
    assert (a.n_real, a.n_fake) == (100, 100)
    assert a.energy == energy_distance(X, Y, seed=5, max_cells=100).energy
    assert energy_distance(X, Y, seed=0, max_cells=None).n_fake == 300  # equal sizes


# -- Sinkhorn / entropic W2 ---------------------------------------------------------------------
def test_sinkhorn_identical_zero_translation_is_its_length():
    X = gauss(120, d=5, seed=1)
    assert sinkhorn_w2(X, X.copy(), seed=0).w2 == pytest.approx(0.0, abs=1e-6)
    t = np.array([3.0, 4.0, 0.0, 0.0, 0.0])  # |t| = 5: the optimal plan is the translation
    assert sinkhorn_w2(X, X + t, seed=0).w2 == pytest.approx(5.0, rel=0.01)


def test_sinkhorn_hand_computed_unit_square():
    # two cells against the same two cells moved up by 1: every transport plan costs 1, W2 = 1
    X = np.array([[0.0, 0.0], [1.0, 0.0]])
    assert sinkhorn_w2(X, X + [0.0, 1.0], seed=0).w2 == pytest.approx(1.0, rel=0.01)


def test_sinkhorn_agrees_with_exact_pot_emd2():
    import os

    for var in ("TENSORFLOW", "JAX", "CUPY"):  # POT would import TensorFlow otherwise
        os.environ.setdefault(f"POT_BACKEND_DISABLE_{var}", "1")
    import ot

    for seed, shift in ((1, 0.0), (2, 0.5), (3, 2.0)):
        X, Y = gauss(150, d=50, seed=seed), gauss(150, d=50, shift=shift, seed=seed + 10)
        w = np.full(150, 1 / 150)
        exact = np.sqrt(ot.emd2(w, w, ot.dist(X, Y)))  # squared Euclidean cost
        assert sinkhorn_w2(X, Y, seed=0).w2 == pytest.approx(exact, rel=0.01), shift


def test_sinkhorn_grows_with_separation_and_is_seeded():
    X = gauss(200, seed=1)
    vals = [sinkhorn_w2(X, gauss(200, shift=s, seed=2), seed=0).w2 for s in (0.0, 1.0, 3.0)]
    assert vals[0] < vals[1] < vals[2]
    a = sinkhorn_w2(gauss(300, seed=1), gauss(400, seed=2), seed=4, max_cells=100)
    assert (a.n_real, a.n_fake) == (100, 100)
    assert a.w2 == sinkhorn_w2(gauss(300, seed=1), gauss(400, seed=2), seed=4, max_cells=100).w2


# -- PRDC -------------------------------------------------------------------------------------------
def prdc_reference(real, fake, k):
    """Naeem et al.'s reference code (clovaai/generative-evaluation-prdc), with sklearn's k-NN radii."""
    r_real = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)[0][:, k]
    r_fake = NearestNeighbors(n_neighbors=k + 1).fit(fake).kneighbors(fake)[0][:, k]
    d = cdist(real, fake)
    precision = (d < r_real[:, None]).any(axis=0).mean()
    recall = (d < r_fake[None, :]).any(axis=1).mean()
    density = (1.0 / k) * (d < r_real[:, None]).sum(axis=0).mean()
    coverage = (d.min(axis=1) < r_real).mean()
    return precision, recall, density, coverage


def prdc_loops(real, fake, k):
    """The definitions as plain loops over cells."""

    def radius(S, i):
        return sorted(float(np.linalg.norm(S[i] - S[j])) for j in range(len(S)) if j != i)[k - 1]

    rr = [radius(real, i) for i in range(len(real))]
    rf = [radius(fake, j) for j in range(len(fake))]
    dist = [[float(np.linalg.norm(x - y)) for y in fake] for x in real]
    m, n = len(real), len(fake)
    precision = sum(any(dist[i][j] < rr[i] for i in range(m)) for j in range(n)) / n
    recall = sum(any(dist[i][j] < rf[j] for j in range(n)) for i in range(m)) / m
    density = sum(sum(dist[i][j] < rr[i] for i in range(m)) for j in range(n)) / (k * n)
    coverage = sum(min(dist[i]) < rr[i] for i in range(m)) / m
    return precision, recall, density, coverage


def test_prdc_hand_computed():
    # radii (k=1): real 0->1, 1->1, 3->2, 20->1, 21->1; generated 0.5->2.75, 3.25/3.5/3.75->0.25, 10->6.25.
    # real balls holding each generated cell: 0.5: 2, 3.25: 1, 3.5: 1, 3.75: 1, 10: 0 -> P 4/5, D 5/5;
    # real cells in a generated ball: 0, 1, 3 (2.5 < 2.75) -> R 3/5; real balls with a generated cell:
    # 0, 1, 3 -> C 3/5 (3 is at exactly 0.25 from 3.25: the ball is open, as in the reference code)
    real = np.array([0.0, 1.0, 3.0, 20.0, 21.0])[:, None]
    fake = np.array([0.5, 3.25, 3.5, 3.75, 10.0])[:, None]
    res = prdc(real, fake, seed=0, k=1)
    assert (res.precision, res.recall, res.density, res.coverage) == pytest.approx((0.8, 0.6, 1.0, 0.6))


def test_prdc_agrees_with_reference_code_and_loops():
    real, fake = gauss(70, d=6, seed=1), gauss(70, d=6, shift=0.4, seed=2)
    res = prdc(real, fake, seed=0, k=5, block_size=16)
    ours = (res.precision, res.recall, res.density, res.coverage)
    assert ours == pytest.approx(prdc_reference(real, fake, 5), abs=1e-12)
    assert ours == pytest.approx(prdc_loops(real, fake, 5), abs=1e-12)


def test_prdc_identical_and_separated():
    X = gauss(200, seed=1)
    same = prdc(X, X.copy(), seed=0)
    assert (same.precision, same.recall, same.coverage) == (1.0, 1.0, 1.0)
    far = prdc(X, gauss(200, shift=20.0, seed=2), seed=0)
    assert (far.precision, far.recall, far.density, far.coverage) == (0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="more than 5 cells"):
        prdc(X[:5], X[:5], seed=0)


# -- memorisation ---------------------------------------------------------------------------------
def test_memorisation_hand_computed():
    train = np.array([[0.0], [10.0]])
    test = np.array([[1.0], [8.0]])  # distances to train 1, 2: median 1.5, 1st percentile 1.01
    fake = np.array([[0.5], [6.0]])  # distances 0.5, 4: median 2.25
    res = memorisation(train, test, fake, seed=0)
    assert res.ratio == pytest.approx(2.25 / 1.5) and res.threshold == pytest.approx(1.01)
    assert res.share == pytest.approx(0.5)
    np.testing.assert_allclose(res.generated_distances, [0.5, 4.0])


def test_memorisation_agrees_with_sklearn():
    train, test, fake = gauss(300, seed=1), gauss(80, seed=2), gauss(80, shift=0.2, seed=3)
    res = memorisation(train, test, fake, seed=0)
    nn = NearestNeighbors(n_neighbors=1).fit(train)
    np.testing.assert_allclose(res.test_distances, nn.kneighbors(test)[0][:, 0], rtol=1e-9)
    np.testing.assert_allclose(res.generated_distances, nn.kneighbors(fake)[0][:, 0], rtol=1e-9)


def test_memorisation_new_real_cells_pass_and_copies_are_flagged():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(3000, 20))
    train, test, new = pool[:2000], pool[2000:2400], pool[2400:2800]
    fresh = memorisation(train, test, new, seed=0)  # real cells never trained on: "no copying"
    assert 0.9 < fresh.ratio < 1.1 and fresh.share < 0.03
    copies = train[rng.choice(2000, 400, replace=False)]
    exact = memorisation(train, test, copies, seed=0)
    assert exact.ratio == pytest.approx(0.0, abs=1e-6) and exact.share == 1.0
    # training cells with noise at 10 % of the nearest-neighbour distance are still flagged
    jitter = copies + rng.normal(scale=0.1 * np.median(fresh.test_distances) / np.sqrt(20), size=copies.shape)
    flagged = memorisation(train, test, jitter, seed=0)
    assert flagged.ratio < 0.2 and flagged.share > 0.9


# -- per cell type --------------------------------------------------------------------------------
def typed(n_per_type, shifts, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(size=(n, d)) + s for n, s in zip(n_per_type, shifts, strict=True)])
    labels = np.repeat([f"t{i}" for i in range(len(n_per_type))], n_per_type)
    return X, labels


def test_per_type_equals_the_metrics_on_each_subset():
    real, rl = typed([60, 40, 4], [0.0, 5.0, 10.0], seed=1)
    fake, fl = typed([60, 40, 4], [0.0, 5.5, 10.0], seed=2)
    res = per_type(real, rl, fake, fl, seed=3, n_trees=20, n_jobs=1)
    assert res.types == ["t0", "t1"] and "t2" in res.skipped  # 4 cells < min_cells
    for i, t in enumerate(res.types):
        x, y = real[rl == t], fake[fl == t]
        assert res.values["mmd"][i] == pytest.approx(mmd(x, y, seed=3).mmd)
        assert res.values["energy"][i] == pytest.approx(energy_distance(x, y, seed=3).energy)
        assert res.values["auc"][i] == pytest.approx(auc(x, y, seed=3, n_trees=20, n_jobs=1).auc)
    # t1 is shifted by 0.5: the worst type on every metric
    for m in ("mmd", "energy", "auc"):
        assert res.worst(m) == res.values[m][1] > res.values[m][0]
        assert res.mean(m) == pytest.approx(res.values[m].mean())


def test_per_type_auc_is_judged_by_its_distance_to_one_half():
    from bench.metrics._per_type import PER_TYPE, PerTypeResult

    # type b's AUC of 0.2 is further from the ideal 0.5 than a's 0.62: b is the worst type (the
    # largest AUC, 0.62, would be lower-is-better's choice)
    res = PerTypeResult(types=["a", "b", "c"], values={"auc": np.array([0.62, 0.2, 0.5]),
                                                       "mmd": np.array([0.1, 0.3, 0.2])},
                        n_cells=np.array([20, 20, 20]))  # fmt: skip
    assert res.worst("auc") == 0.2 and res.worst("mmd") == 0.3
    for value in ("auc_type_mean", "auc_type_worst"):
        assert PER_TYPE.direction_of(value) == "target" and PER_TYPE.target_of(value) == 0.5
    assert PER_TYPE.direction_of("mmd_type_worst") == "lower"


def test_per_type_sees_right_cells_under_wrong_labels():
    real, rl = typed([80, 80], [0.0, 4.0], seed=1)
    fake, fl = typed([80, 80], [0.0, 4.0], seed=2)
    good = per_type(real, rl, fake, fl, seed=0, metrics=("mmd", "energy"))
    swapped = per_type(real, rl, fake, np.where(fl == "t0", "t1", "t0"), seed=0, metrics=("mmd", "energy"))
    # pooled, the swapped cells are the same cells: the pooled MMD cannot tell
    assert mmd(real, fake, seed=0).mmd < 0.05
    assert good.worst("mmd") < 0.05 and swapped.mean("mmd") > 10 * good.worst("mmd") + 0.1
    assert swapped.mean("energy") > 5.0 > good.worst("energy")


# -- DE recovery ---------------------------------------------------------------------------------
def test_de_scores_agree_with_scipy_and_scanpy():
    import scanpy as sc
    from scipy.stats import ttest_ind

    rng = np.random.default_rng(0)
    X = np.log1p(rng.poisson(2.0, size=(90, 30)).astype(float))
    X[:30, :5] += 1.5
    labels = np.repeat(["a", "b", "c"], 30)
    t, lfc = de_scores(X, labels, "a")
    np.testing.assert_allclose(t, ttest_ind(X[:30], X[30:], equal_var=False).statistic, rtol=1e-9)
    a = ad.AnnData(X=X.astype(np.float32))
    a.obs["g"] = labels
    a.obs["g"] = a.obs["g"].astype("category")
    sc.tl.rank_genes_groups(a, "g", method="t-test", n_genes=30, use_raw=False)
    rg = a.uns["rank_genes_groups"]
    order = [int(g) for g in rg["names"]["a"]]
    np.testing.assert_allclose(np.asarray(rg["scores"]["a"], float), t[order], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(rg["logfoldchanges"]["a"], float), lfc[order], rtol=1e-3, atol=1e-4)
    # sparse input gives the same numbers
    ts, lfcs = de_scores(sp.csr_matrix(X), labels, "a")
    np.testing.assert_allclose(ts, t, rtol=1e-9)
    np.testing.assert_allclose(lfcs, lfc, rtol=1e-9)


def marker_cells(n_per_type, n_genes=60, seed=0, markers=True):
    rng = np.random.default_rng(seed)
    mu = np.full((len(n_per_type), n_genes), 1.0)
    if markers:
        for t in range(len(n_per_type)):
            mu[t, t * 10 : t * 10 + 10] = np.linspace(3.0, 12.0, 10)  # graded marker strengths
    rows = [rng.poisson(mu[t], size=(n, n_genes)) for t, n in enumerate(n_per_type)]
    labels = np.repeat([f"t{t}" for t in range(len(n_per_type))], n_per_type)
    return np.log1p(np.vstack(rows).astype(float)), labels


def test_de_recovery_identical_perfect_hand_case_and_blurred_types():
    real, rl = marker_cells([50, 50, 50], seed=1)
    same = de_recovery(real, rl, real.copy(), rl, top_k=10)
    assert same.types == ["t0", "t1", "t2"]
    np.testing.assert_allclose(same.lfc_r, 1.0)
    np.testing.assert_allclose(same.jaccard, 1.0)
    gen, gl = marker_cells([50, 50, 50], seed=2)
    good = de_recovery(real, rl, gen, gl, top_k=10)
    assert good.lfc_r_mean > 0.8 and good.jaccard_mean > 0.6
    # generated types blurred: labels shuffled, so a type's cells carry no markers
    blurred = de_recovery(real, rl, gen, np.random.default_rng(0).permutation(gl), top_k=10)
    assert blurred.lfc_r_mean < 0.5 and blurred.jaccard_mean < 0.3
    # hand case: in type a, genes 0 and 1 are up in the real cells, genes 0 and 2 in the generated
    # ones: top-2 sets {0, 1} and {0, 2} -> Jaccard 1/3
    rng = np.random.default_rng(3)
    lab = np.repeat(["a", "b"], 6)
    real2, gen2 = rng.uniform(0, 0.1, size=(12, 5)), rng.uniform(0, 0.1, size=(12, 5))
    real2[:6, 0] += 5
    real2[:6, 1] += 4
    gen2[:6, 0] += 5
    gen2[:6, 2] += 4
    hand = de_recovery(real2, lab, gen2, lab, top_k=2, min_cells=3)
    assert hand.types == ["a", "b"] and hand.jaccard[0] == pytest.approx(1 / 3)
    assert list(hand.genes["a"]) == [0, 1]


# -- gene statistics ------------------------------------------------------------------------------
def test_gene_stats_known_answers():
    X = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 0.0], [1.0, 5.0, 0.0], [0.0, 7.0, 4.0]])
    np.testing.assert_allclose(gene_variances(X), X.var(0, ddof=1))
    np.testing.assert_allclose(gene_variances(sp.csr_matrix(X)), X.var(0, ddof=1))
    np.testing.assert_allclose(zero_fractions(sp.csr_matrix(X)), [0.75, 0.0, 0.5])
    # Lin's CCC by hand: a = (1, 2, 3), b = (2, 3, 4): cov 2/3, var 2/3 each, (mean diff)^2 = 1
    assert concordance([1, 2, 3], [2, 3, 4]) == pytest.approx((4 / 3) / (4 / 3 + 1))
    res = gene_stats(X, X.copy())
    assert (res.mean_ccc, res.var_ccc, res.zero_ccc) == pytest.approx((1.0, 1.0, 1.0))


def test_gene_stats_catch_shrunk_variance_that_pearson_misses():
    rng = np.random.default_rng(0)
    real = np.log1p(rng.poisson(rng.gamma(2.0, 2.0, size=50), size=(300, 50)).astype(float))
    mu = real.mean(0)
    shrunk = mu + 0.3 * (real - mu)  # same means, every variance times 0.09
    res = gene_stats(real, shrunk)
    assert res.mean_ccc == pytest.approx(1.0)
    assert np.corrcoef(res.real["var"], res.fake["var"])[0, 1] == pytest.approx(1.0)  # Pearson blind
    assert res.var_ccc < 0.3


# -- adapters on the evaluation context ------------------------------------------------------------
@pytest.fixture(scope="module")
def ctx():
    from bench.evaluation import EvalContext

    rng = np.random.default_rng(1)
    n_genes, sizes = 40, [200, 140, 100]
    base = rng.gamma(2.0, 1.0, size=n_genes)
    counts, labels = [], []
    for c, n in enumerate(sizes):
        mu = base.copy()
        mu[c * 5 : c * 5 + 5] *= 8
        counts.append(rng.poisson(mu * 3, size=(n, n_genes)))
        labels += [f"type{c}"] * n
    counts, labels = np.vstack(counts).astype(np.float32), np.array(labels)
    is_test = np.zeros(len(labels), bool)
    is_test[rng.permutation(len(labels))[:120]] = True

    def to_adata(rows, prefix):
        c = counts[rows]
        a = ad.AnnData(X=sp.csr_matrix(c * 20_000 / c.sum(1, keepdims=True)))
        a.layers["counts"] = sp.csr_matrix(c)
        a.var_names = [f"g{i}" for i in range(n_genes)]
        a.obs_names = [f"{prefix}{i}" for i in range(len(c))]
        a.obs["cell_type"] = labels[rows]
        return a

    return EvalContext("toy", to_adata(~is_test, "c"), to_adata(is_test, "t"), "cell_type", seed=0)


def as_generated(adata, n=None, seed=0):
    idx = np.sort(np.random.default_rng(seed).choice(adata.n_obs, n or adata.n_obs, replace=False))
    out = ad.AnnData(X=adata.X[idx].copy(), obs=adata.obs.iloc[idx].copy())
    out.var_names = adata.var_names
    out.uns["scgenbench"] = {"output_scale": "library-size-20000"}
    return out


def shuffled_like(adata, seed=0):
    from bench.generators.baselines import permute_columns

    out = ad.AnnData(
        X=permute_columns(adata.layers["counts"], np.random.default_rng(seed)), obs=adata.obs.copy()
    )
    out.var_names = adata.var_names
    out.uns["scgenbench"] = {"output_scale": "counts"}
    return out


SUITE = (ENERGY, SINKHORN, PRDC, PER_TYPE, MEMORISATION, DE_RECOVERY, GENE_STATS)


def test_adapters_order_real_above_shuffled(ctx):
    """Every suite metric on the positive control (training cells) and the negative control (genes
    permuted): the directional values are declared, finite, and the controls are ordered by each
    value's direction (except where the metric says the negative control is not built to fail it)."""
    real = as_generated(ctx.train, 120)
    shuf = shuffled_like(ctx.train)
    for metric in SUITE:
        small = {PER_TYPE.name: {"n_trees": 20, "n_jobs": 1}, DE_RECOVERY.name: {"top_k": 5}}  # 40 genes
        opts = metric.options_for("quick", small.get(metric.name))
        a, b = metric.func(ctx, real, seed=0, **opts), metric.func(ctx, shuf, seed=0, **opts)
        assert set(a.values) == set(metric.directions), metric.name
        for name, direction in metric.directions.items():
            assert np.isfinite(a.values[name]) and np.isfinite(b.values[name]), (metric.name, name)
            if metric.is_scaled(name):
                target = metric.target_of(name)  # AUC: judged by |AUC - 0.5|
                better = badness(a.values[name], direction, target) < badness(
                    b.values[name], direction, target
                )
                assert better, (metric.name, name, a.values[name], b.values[name])
    # memorisation: the `real` control returns training cells, the copying extreme; test cells pass
    mem = MEMORISATION.func(ctx, real, seed=0)
    assert mem.values["memorisation_ratio"] == pytest.approx(0.0, abs=1e-5)
    assert mem.values["memorisation_share"] == 1.0
    test_cells = as_generated(ctx.test)
    mem = MEMORISATION.func(ctx, test_cells, seed=0)
    assert mem.values["memorisation_ratio"] == pytest.approx(1.0)
    assert mem.values["memorisation_share"] <= 0.02
    assert {"generated_distances", "test_distances", "threshold"} <= set(mem.artifacts)


def test_memorisation_flags_a_generator_returning_jittered_training_cells(ctx):
    """Training cells with every expression value jittered by a few percent (through the whole
    evaluation transform: library size, log1p, PCA) are flagged; the shuffled control is not."""
    copies = as_generated(ctx.train, 120, seed=3)
    X = copies.X.toarray()
    copies.X = sp.csr_matrix(X * np.random.default_rng(0).uniform(0.97, 1.03, size=X.shape))
    mem = MEMORISATION.func(ctx, copies, seed=0)
    assert mem.values["memorisation_ratio"] < 0.2 and mem.values["memorisation_share"] > 0.9
    fresh = MEMORISATION.func(ctx, shuffled_like(ctx.train), seed=0)
    assert fresh.values["memorisation_ratio"] > 0.9 and fresh.values["memorisation_share"] < 0.05


def test_per_type_adapters_keep_per_type_values(ctx):
    gen = as_generated(ctx.train, 120)
    out = PER_TYPE.func(ctx, gen, seed=0, n_trees=20, n_jobs=1)
    assert list(out.artifacts["types"]) == ["type0", "type1", "type2"]
    assert out.values["mmd_type_worst"] == pytest.approx(out.artifacts["mmd"].max())
    assert out.values["auc_type_mean"] == pytest.approx(out.artifacts["auc"].mean())
    de = DE_RECOVERY.func(ctx, gen, seed=0, top_k=5)
    assert len(de.artifacts["real_lfc"]) == len(de.artifacts["genes"]) == 15
    assert de.values["de_jaccard"] > 0.5
    from bench.api.errors import TaskFailed

    unlabelled = gen.copy()
    del unlabelled.obs["cell_type"]
    with pytest.raises(TaskFailed, match="labelled"):
        PER_TYPE.func(ctx, unlabelled, seed=0)


def test_bench_list_metrics_shows_the_suite_with_directions(capsys):
    from bench.cli import main

    assert main(["list", "metrics"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for metric in SUITE:
        assert metric.name in out
        for value, direction in metric.directions.items():
            assert f"{value} {arrow(direction, metric.target_of(value))}" in out, value
    # a target direction is shown as such, not as higher- or lower-is-better
    assert "auc (→0.5)" in out and "auc_type_mean (→0.5)" in out and "auc_type_worst (→0.5)" in out
