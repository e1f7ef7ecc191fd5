"""The scale fixture (bench.datasets.scale, scripts/make-scale-data.py) and the scaling curve
(bench.scalecurve): deterministic files with pbmc3k's genes and types, drawn from the nb fit, written in
chunks; the fitted exponent; the 100k-cell quick main run of `nb` (CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from bench import datasets as ds
from bench.datasets import scale
from bench.datasets.preprocess import MIN_GENES
from bench.generators.baselines import nb_moments
from bench.scalecurve import exponent

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make-scale-data.py"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-data")
    old = os.environ.get("BENCH_DATA")
    os.environ["BENCH_DATA"] = str(root)
    yield root
    if old is None:
        os.environ.pop("BENCH_DATA", None)
    else:
        os.environ["BENCH_DATA"] = old


@pytest.fixture(scope="module")
def small(cache_root, tmp_path_factory):
    """2,500 cells written in chunks of 1,000 (three appends)."""
    out = tmp_path_factory.mktemp("scale") / "s.h5ad"
    old = scale.CHUNK
    scale.CHUNK = 1000
    try:
        scale.write_scale_data(2500, out, seed=3)
    finally:
        scale.CHUNK = old
    return out


def test_fixture_has_pbmc3k_genes_types_and_every_cell(small):
    a = ad.read_h5ad(small)
    prepared = ds.prepare("pbmc3k", n_top_genes=2000)
    assert a.shape == (2500, 2000)
    assert list(a.var_names) == list(prepared.train.var_names)
    assert set(a.obs["cell_type"]) <= set(prepared.train.obs["cell_type"].astype(str))
    assert a.obs_names.is_unique
    X = sp.csr_matrix(a.X)
    assert X.dtype == np.float32 and np.all(X.data == np.round(X.data)) and X.data.min() > 0
    assert ((X > 0).sum(axis=1).A1 >= MIN_GENES).all()  # nothing for the cell filter to drop
    backed = ad.read_h5ad(small, backed="r")  # the chunked file is a valid h5ad in backed mode too
    assert backed.shape == (2500, 2000)
    np.testing.assert_array_equal(backed.X[2400:2500].toarray(), X[2400:2500].toarray())


def test_fixture_is_deterministic_and_seeded(small, tmp_path):
    old = scale.CHUNK
    scale.CHUNK = 1000
    try:
        again = scale.write_scale_data(2500, tmp_path / "again.h5ad", seed=3)
        other = scale.write_scale_data(2500, tmp_path / "other.h5ad", seed=4)
    finally:
        scale.CHUNK = old
    a, b, c = (ad.read_h5ad(p) for p in (small, again, other))
    assert (a.X != b.X).nnz == 0 and (a.obs["cell_type"] == b.obs["cell_type"]).all()
    assert (a.X != c.X).nnz > 0


def test_fixture_draws_from_the_nb_fit(small):
    """Known answer: per type and gene, the fixture's mean is the fitted mean within sampling error."""
    var, types, mu, size, weights = scale.scale_model()
    a = ad.read_h5ad(small)
    y = a.obs["cell_type"].astype(str).to_numpy()
    big = types[int(np.argmax(weights))]
    t = types.index(big)
    X = sp.csr_matrix(a.X)[y == big].toarray().astype(np.float64)
    n = X.shape[0]
    var_nb = mu[t] + np.where(np.isfinite(size[t]), mu[t] ** 2 / size[t], 0.0)
    se = np.sqrt(var_nb / n)
    ok = mu[t] > 0.5  # well-expressed genes; the redraw of near-empty cells barely moves them
    z = (X.mean(axis=0)[ok] - mu[t][ok]) / se[ok]
    assert np.mean(np.abs(z) < 4) > 0.97
    # the label shares follow pbmc3k's
    share = np.mean(y == big)
    assert abs(share - weights[t]) < 4 * np.sqrt(weights[t] * (1 - weights[t]) / len(y))


def test_nb_moments_known_answer():
    """Two types, hand-computed: mean, unbiased variance, r = mu^2 / (var - mu), Poisson when var <= mu."""
    X = sp.csr_matrix(np.array([[0, 1], [2, 1], [4, 1], [1, 0], [1, 2]], dtype=np.float32))
    y = np.array(["a", "a", "a", "b", "b"])
    mu, size, w = nb_moments(X, y, ["a", "b"])
    np.testing.assert_allclose(mu, [[2, 1], [1, 1]])
    # type a gene 0: values 0,2,4 -> var 4 -> r = 4 / (4 - 2) = 2; gene 1: var 0 <= mu -> Poisson
    # type b gene 0: 1,1 -> var 0 -> Poisson; gene 1: 0,2 -> var 2 -> r = 1 / (2 - 1) = 1
    np.testing.assert_allclose(size, [[2, np.inf], [np.inf, 1]])
    np.testing.assert_allclose(w, [0.6, 0.4])


def test_script_rejects_bad_arguments(tmp_path):
    env = {**os.environ, "BENCH_DATA": str(tmp_path / "cache")}
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "0", str(tmp_path / "x.h5ad")], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and "positive integer" in bad.stderr
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "10", str(tmp_path / "x.csv")], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2 and ".h5ad" in bad.stderr
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "10", str(tmp_path / "x.h5ad"), "--genes", "many"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "'many'" in bad.stderr
    assert not list(tmp_path.glob("*.h5ad")) and not list(tmp_path.glob(".*.part"))


def test_scaling_curve_rejects_bad_sizes(tmp_path):
    script = ROOT / "scripts" / "scaling-curve.py"
    for sizes in ("10k", "0,1000"):
        bad = subprocess.run(
            [sys.executable, str(script), "--sizes", sizes, "--fixtures", str(tmp_path / "fx")],
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 2 and "--sizes" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "fx").exists()


def test_exponent_known_answers():
    n = [1e4, 3e4, 1e5, 3e5]
    assert exponent(n, [3 * x**1.5 for x in n]) == pytest.approx(1.5)
    assert exponent(n, [7e-3 * x for x in n]) == pytest.approx(1.0)
    assert np.isnan(exponent([1e4], [1.0]))


def test_scaling_table_gives_both_exponents(tmp_path):
    # a stage linear up to 1e5 cells and flat above (a cap that binds): exponent over all sizes 0.5,
    # 0 between the last two; memory linear throughout
    runs = [
        {"n_cells": n, "process_peak_rss_mb": n / 100, "stages": [{"stage": "metric auc", "seconds": s}]}
        for n, s in ((10_000, 1.0), (100_000, 10.0), (1_000_000, 10.0))
    ]
    doc = tmp_path / "curve.json"
    doc.write_text(json.dumps({"host": "test", "runs": runs}))
    script = ROOT / "scripts" / "scaling-curve.py"
    out = subprocess.run(
        [sys.executable, str(script), "--table", str(doc)], capture_output=True, text=True, check=True
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("| stage | seconds at 10,000 / 100,000 / 1,000,000 cells |")
    assert lines[2] == "| metric auc | 1.0 / 10.0 / 10.0 | 0.50 | 0.00 |"
    assert lines[3] == "| **process peak RSS (MB)** | 100 / 1000 / 10000 | 1.00 | 1.00 |"


SCALE_CELLS = 100_000


@pytest.mark.slow
def test_100k_cells_through_the_quick_main_experiment(cache_root, tmp_path):
    """Issue 18's CI case: `nb` through the full quick main experiment on a 100,000-cell fixture, as a
    user runs it (the script, then `bench run` by path). Runs in CI (CI=true) or with BENCH_SCALE=1:
    it takes minutes. The time and peak memory go to $BENCH_ARTIFACTS/scale-100k.json."""
    import time

    if os.environ.get("CI") != "true" and os.environ.get("BENCH_SCALE") != "1":
        pytest.skip("the 100k-cell run takes minutes: set BENCH_SCALE=1 (CI sets CI=true)")
    env = {**os.environ, "BENCH_DATA": str(cache_root)}
    fixture = tmp_path / "scale-100k.h5ad"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(SCRIPT), str(SCALE_CELLS), str(fixture)], check=True, env=env)
    t_fixture = time.perf_counter() - t0
    run = tmp_path / "run"
    cmd = [
        "bench",
        "run",
        "--models",
        "nb",
        "--dataset",
        str(fixture),
        "--label-key",
        "cell_type",
        "--experiments",
        "main",
        "--no-control",
        "--out",
        str(run),
    ]
    # the peak RSS of the bench process alone: a wrapper process whose only child it is
    wrapper = (
        "import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(rc)"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    peak_mb = int(out.stderr.strip().splitlines()[-1]) / 1024  # Linux: KB
    doc = json.loads((run / "summary.json").read_text())
    values = {(r["model"], r["metric"]): r["mean"] for r in doc["summary"] if r["experiment"] == "main"}
    for metric in ("auc", "mmd", "cd", "mean_corr", "energy", "precision"):
        assert np.isfinite(values[("nb", metric)]), metric
    assert 0.4 < values[("nb", "auc")] < 0.6  # nb cells from the model the fixture was drawn from
    result = {
        "cells": SCALE_CELLS,
        "fixture_seconds": t_fixture,
        "run_seconds": seconds,
        "peak_rss_mb": peak_mb,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    artifacts = os.environ.get("BENCH_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        (Path(artifacts) / "scale-100k.json").write_text(json.dumps(result, indent=1))
    assert peak_mb < 4096, f"peak RSS {peak_mb:.0f} MB at {SCALE_CELLS:,} cells"


def test_scaling_stages_are_measured(small):
    from bench.scalecurve import measure_stages

    res = measure_stages(small, activa=False, metrics=["mmd", "mean_corr"])
    names = [s["stage"] for s in res["stages"]]
    assert names == ["prepare", "eval setup", "nb fit", "nb generate", "metric mmd", "metric mean_corr"]
    assert res["n_train"] + res["n_test"] == 2500
    assert 1900 < res["n_genes"] <= 2000  # the gene filter (>= 3 cells) drops a few rare genes at 2,500 cells
    assert all(s["seconds"] >= 0 and s["peak_rss_mb"] >= 0 for s in res["stages"])
    assert res["process_peak_rss_mb"] > 0
