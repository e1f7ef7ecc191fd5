"""Speed of the count models on pbmc3k: fitting ``copula`` on all genes (issue 16: under a minute
on 2 cores) and on 2,000 HVGs, generating 10,000 cells with it, and one ``scvi`` quick fit on
2,000 HVGs (the quick profile's data; issue 16: about a minute on 2 cores).

Run: ``pytest tests/benchmarks/test_bench_count_models.py --benchmark-only -s`` (skipped by default).
Data: pbmc3k through the scGAN pipeline (2,429 training cells; all 13,714 genes, or 2,000 HVGs).
"""

from __future__ import annotations

import pytest

from bench.datasets import prepare
from bench.generators.copula import GaussianCopula
from tests.conftest import fit_generator


@pytest.fixture(scope="module", params=["all-genes", "hvg2000"])
def train(request, tmp_path_factory):
    n_top = None if request.param == "all-genes" else 2000
    return prepare("pbmc3k", split_seed=0, n_top_genes=n_top, cache_dir=tmp_path_factory.mktemp("data")).train


def test_bench_copula_fit(benchmark, train):
    benchmark.extra_info["genes"] = train.n_vars
    benchmark.pedantic(lambda: fit_generator(GaussianCopula(), train), rounds=3, iterations=1)


def test_bench_copula_generate_10k(benchmark, train):
    gen = GaussianCopula()
    fit_generator(gen, train)
    benchmark.pedantic(lambda: gen.generate(10_000, seed=0), rounds=3, iterations=1)


def test_bench_scvi_quick_fit(benchmark, train):
    pytest.importorskip("scvi")
    from bench.generators.scvi import ScviGenerator

    if train.n_vars != 2000:
        pytest.skip("the quick profile's data: 2,000 HVGs")
    gen = ScviGenerator(**ScviGenerator.params_for_profile("quick"))
    benchmark.extra_info["epochs"] = gen.params["max_epochs"]
    benchmark.pedantic(lambda: fit_generator(gen, train), rounds=1, iterations=1)
