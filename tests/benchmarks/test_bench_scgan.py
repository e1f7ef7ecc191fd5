"""Speed of the scGAN port: training steps per second on the CPU (2,000 and all ~16,600 pbmc3k
genes), container start-to-fit overhead, generation of 100,000 cells.

Run: pytest tests/benchmarks/test_bench_scgan.py --benchmark-enable -s
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from tests.conftest import fit_generator, import_tensorflow_lazily

tf = E = None  # set when a test runs, not at collection (tests/conftest.py)


@pytest.fixture(autouse=True)
def _tensorflow():
    import_tensorflow_lazily(globals())


PBMC = Path(__file__).resolve().parents[2] / "datasets" / "data" / "pbmc3k.h5ad"


def pbmc(n_genes: int | None, n_cells: int = 2430) -> ad.AnnData:
    a = ad.read_h5ad(PBMC)[:n_cells]
    X = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    X = (X / X.sum(1, keepdims=True) * 20_000).astype(np.float32)
    keep = np.arange(X.shape[1])
    if n_genes is not None:  # most variable genes of log1p data (an HVG-like subset)
        keep = np.sort(np.argsort(-np.log1p(X).var(0), kind="stable")[:n_genes])
    out = ad.AnnData(X=X[:, keep])
    out.var_names = a.var_names[keep].astype(str)
    out.obs["cell_type"] = a.obs["cell_type"].astype(str).to_numpy()
    return out


@pytest.mark.parametrize("n_genes,steps", [(2000, 20), (None, 4)], ids=["2000genes", "allgenes"])
def test_bench_train_steps_per_second(benchmark, n_genes, steps):
    data = pbmc(n_genes)

    # warm-up fit of 1 step traces the tf.functions of a model of this size; the measured run is a
    # fresh model, so it includes its own tracing (as every real fit does)
    def run():
        return E.fit(data.X, None, {"max_steps": steps, "progress_every": 10**9}, 0, progress=False)[1]

    rec = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(
        n_genes=data.n_vars, steps=steps, steps_per_s=steps / rec["train_seconds"], threads=os.cpu_count()
    )
    print(f"\n{data.n_vars} genes: {steps / rec['train_seconds']:.3f} steps/s ({rec['train_seconds']:.1f}s)")


def test_bench_generate_100k(benchmark, tmp_path):
    data = pbmc(2000, 300)
    model, _ = E.fit(data.X, None, {"max_steps": 1}, 0, progress=False)
    rng = tf.random.Generator.from_seed(0)
    model.generate(10, None, rng)  # trace

    def run():
        return model.generate(100_000, None, rng, chunk=10_000)

    out = benchmark.pedantic(run, rounds=2, iterations=1)
    assert out.shape == (100_000, 2000)
    benchmark.extra_info.update(cells_per_s=100_000 / benchmark.stats.stats.mean)


@pytest.mark.docker
def test_bench_container_overhead(benchmark, tmp_path):
    from bench.generators.container import docker_client, ensure_image
    from bench.generators.scgan import ScGAN

    client = docker_client()
    if client is None:
        pytest.skip("no Docker engine answers")
    ensure_image(ScGAN, client, progress=False)
    data = pbmc(500, 300)
    tiny = {"latent_dim": 8, "gen_layers": [16], "critic_layers": [16], "batch_size": 32}
    overheads = []

    def run():
        gen = ScGAN(backend="docker", max_steps=1, **tiny)
        t = time.perf_counter()
        fit = fit_generator(gen, data, work_dir=tmp_path / f"w{len(overheads)}")
        overheads.append(time.perf_counter() - t - fit.train_seconds)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(overhead_s=float(np.median(overheads)))
    print(f"\ncontainer start-to-fit overhead (wall - train_seconds): {np.median(overheads):.2f}s")
