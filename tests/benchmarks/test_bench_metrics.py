"""Speed of the paper's metrics on pbmc3k-sized data (pytest-benchmark; skipped by default).

Run: ``pytest tests/benchmarks/test_bench_metrics.py --benchmark-enable -p no:cacheprovider``.
Data: the bundled pbmc3k counts, library-size normalised to 20,000 (the scGAN pipeline's scale),
split seeded into 2,430 training / 270 test cells; "generated" cells are 270 held-out-free
training cells (the `real` control), so the forests grow to full depth (the slowest case).
Feature sets: all 16,634 genes, and the 2,000 genes of highest mean (a cheap stand-in for HVGs).
``BENCH_MMD_70K=1`` also times MMD on 70,000 x 70,000 cells x 50 PCs (several minutes on CPU).
"""

from __future__ import annotations

import os
from importlib.resources import files

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from bench.evaluation import EvalContext
from bench.metrics import AUC, CD, MMD, auc, measure, mmd

N_TEST = 270


def _library_size(X):
    X = sp.csr_matrix(X, dtype=np.float32)
    tot = np.asarray(X.sum(1)).ravel()
    return sp.csr_matrix(sp.diags((20_000 / np.maximum(tot, 1)).astype(np.float32)) @ X)


@pytest.fixture(scope="module", params=["all_genes", "2000_genes"])
def ctx(request):
    raw = ad.read_h5ad(files("bench.datasets") / "data" / "pbmc3k.h5ad")
    if request.param == "2000_genes":
        mean = np.asarray(raw.X.mean(0)).ravel()
        raw = raw[:, np.sort(np.argsort(-mean)[:2000])].copy()
    adata = ad.AnnData(X=_library_size(raw.X), obs=raw.obs[["cell_type"]].copy())
    adata.var_names = raw.var_names
    adata.obs["cell_type"] = adata.obs["cell_type"].astype(str)
    perm = np.random.default_rng(0).permutation(adata.n_obs)
    test, train = adata[np.sort(perm[:N_TEST])].copy(), adata[np.sort(perm[N_TEST:])].copy()
    c = EvalContext("pbmc3k", train, test, "cell_type", seed=0)
    c.test_pcs  # noqa: B018 - warm the shared PCA / log caches, not part of any metric's cost
    c.train_log  # noqa: B018
    return c


@pytest.fixture(scope="module")
def generated(ctx):
    gen = ctx.train[:N_TEST].copy()
    gen.uns["scgenbench"] = {"output_scale": "library-size-20000"}
    ctx.transform_generated(gen)
    return gen


@pytest.mark.parametrize("n_trees", [200, 1000])
def test_bench_auc_genes(benchmark, ctx, generated, n_trees):
    out = benchmark.pedantic(
        lambda: AUC.func(ctx, generated, seed=0, n_trees=n_trees), rounds=1, iterations=1
    )
    benchmark.extra_info.update(n_genes=ctx.train.n_vars, n_trees=n_trees, auc=out.values["auc"])
    assert 0.3 < out.values["auc"] < 0.7


def test_bench_auc_pca50(benchmark, ctx, generated):
    out = benchmark.pedantic(lambda: AUC.func(ctx, generated, seed=0, space="pca50"), rounds=1, iterations=1)
    benchmark.extra_info.update(auc=out.values["auc"])


def test_bench_mmd(benchmark, ctx, generated):
    def run():
        for key in [k for k in ctx.cache if isinstance(k, tuple) and k[0] == "mmd_kxx"]:
            del ctx.cache[key]  # time the full computation, not the cached real term
        return MMD.func(ctx, generated, seed=0)

    out = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(mmd=out.values["mmd"])


def test_bench_de_genes(benchmark, ctx):
    def run():
        ctx.cache.pop(("de_genes", 5, "wilcoxon"), None)
        return ctx.de_genes()

    genes = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(n_genes=len(genes))


def test_bench_correlation_discrepancy(benchmark, ctx, generated):
    ctx.de_genes()  # cached once per dataset in a run
    out = benchmark.pedantic(lambda: CD.func(ctx, generated, seed=0), rounds=3, iterations=1)
    benchmark.extra_info.update(cd=out.values["cd"])


def test_bench_auc_pure_dense(benchmark, ctx, generated):
    if ctx.train.n_vars > 2000:
        pytest.skip("dense all-gene input is slower than sparse (measured once: 80 s vs 40 s)")
    X_log, _ = ctx.transform_generated(generated)
    real, fake = ctx.test_log.toarray(), X_log.toarray()
    out = benchmark.pedantic(lambda: auc(real, fake, seed=0, n_trees=200), rounds=1, iterations=1)
    benchmark.extra_info.update(auc=out.auc, dense=True)


@pytest.mark.skipif(os.environ.get("BENCH_MMD_70K") != "1", reason="set BENCH_MMD_70K=1 (minutes on CPU)")
def test_bench_mmd_70k(benchmark):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(70_000, 50)) * 3).astype(np.float32)
    Y = (rng.normal(size=(70_000, 50)) * 3 + 0.05).astype(np.float32)
    res = benchmark.pedantic(lambda: measure(lambda: mmd(X, Y, seed=0)), rounds=1, iterations=1)
    _, seconds, peak_rss, _ = res
    benchmark.extra_info.update(mmd=res[0].mmd, seconds=seconds, peak_rss_mb=peak_rss)
