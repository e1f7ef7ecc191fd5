"""Shared fixtures: tiny synthetic AnnData, and the docker/slurm requirement switches.

Docker and Slurm tests skip when the engine/cluster is absent, but FAIL when CI sets
BENCH_REQUIRE_DOCKER=1 / BENCH_REQUIRE_SLURM=1, so CI can never pass by skipping them.

The README runs the suite in two pytest-xdist workers (``python -m pytest -n 2 --dist loadgroup``;
without ``-n`` it runs in one process). Each test file stays on one worker (its module fixtures are
built once), and every test that needs the Slurm cluster runs on the same worker, one at a time, as
they do alone (the one-node cluster has two CPUs, and the tests wait for their jobs). Workers set ``OMP_WAIT_POLICY=PASSIVE``
(before torch loads its OpenMP runtime; children inherit it): two workers each training with two
OpenMP threads on two cores otherwise spin in OpenMP's barriers (one ACTIVA fit went from 100 s to
500 s); the policy changes no thread count and so no value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import shutil
import subprocess

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp


def _require(env: str, available: bool, what: str) -> None:
    if available:
        return
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} is required ({env}=1) but not available")
    pytest.skip(f"{what} not available")


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:
        return False


def slurm_available() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
        return out.returncode == 0 and any(
            s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.split()
        )
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def require_docker():
    _require("BENCH_REQUIRE_DOCKER", docker_available(), "a Docker engine")


@pytest.fixture
def require_slurm():
    _require("BENCH_REQUIRE_SLURM", slurm_available(), "a Slurm cluster")


@pytest.fixture(autouse=True)
def _console_width_not_inherited(monkeypatch):
    """The consoles' width does not come from whatever runs the tests: xdist's workers export
    COLUMNS=80, and the headline view then wrapped lines the tests read (a plain run has no COLUMNS:
    120). A test that needs a width sets COLUMNS itself."""
    monkeypatch.delenv("COLUMNS", raising=False)


# seconds each xdist group took in one process (python scripts/ci/test_durations.py JUNIT_XML writes it)
DURATIONS = Path(__file__).with_name("durations.json")


def pytest_configure(config):
    """xdist hands out the groups in collection order, not ordered by their number of tests
    (``--loadscope-reorder``, its default, put the heaviest files, which have few tests, last: one
    worker ran them alone at the end)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def _group(item) -> str:
    marker = item.get_closest_marker("xdist_group")
    if marker is not None:
        return marker.args[0] if marker.args else marker.kwargs.get("name", "default")
    return "slurm" if "require_slurm" in item.fixturenames else item.nodeid.split("::")[0]


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config, items):
    """xdist groups (``--dist loadgroup``): the Slurm tests together, every other test with its file.
    The groups run longest first (their seconds in tests/durations.json; a group not in it first of
    all, as it may be long), so that no long group starts when the other worker is nearly done."""
    group = {}
    for item in items:
        group[item.nodeid] = _group(item)
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group[item.nodeid]))
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        first_seen.setdefault(group[item.nodeid], i)
    items.sort(key=lambda it: (-seconds.get(group[it.nodeid], float("inf")), first_seen[group[it.nodeid]]))


def import_tensorflow_lazily(namespace: dict) -> None:
    """Set a test module's globals ``tf``, ``E`` (the scGAN entry module) and ``port`` (the TensorFlow
    port it runs, ``port.nets``, ``port.config``, ...); call it from an autouse fixture, so
    TensorFlow is imported when a test runs, not at collection. TensorFlow in the pytest process at
    collection time broke pytest's captured stderr for later tests (the Slurm tests)."""
    namespace["tf"] = pytest.importorskip("tensorflow")
    namespace["E"] = pytest.importorskip("bench.generators.scgan.entry")
    namespace["port"] = pytest.importorskip("bench.generators.scgan.scgan_tf")


def make_counts(n_cells: int = 120, n_genes: int = 60, n_types: int = 3, seed: int = 0) -> ad.AnnData:
    """Small raw-count AnnData with distinct cell types (type k over-expresses its own gene block)."""
    rng = np.random.default_rng(seed)
    labels = np.array([f"t{i % n_types}" for i in range(n_cells)])
    mu = np.full((n_cells, n_genes), 2.0)
    block = n_genes // n_types
    for k in range(n_types):
        mu[labels == f"t{k}", k * block : (k + 1) * block] = 12.0
    X = rng.poisson(mu).astype(np.float32)
    adata = ad.AnnData(X=sp.csr_matrix(X), obs=pd.DataFrame({"cell_type": pd.Categorical(labels)},
                                                             index=[f"c{i}" for i in range(n_cells)]))  # fmt: skip
    adata.var_names = [f"g{j}" for j in range(n_genes)]
    return adata


@pytest.fixture
def counts_adata() -> ad.AnnData:
    return make_counts()


@pytest.fixture
def train_adata(counts_adata) -> ad.AnnData:
    """Training-format AnnData: X normalised to 20,000, layers['counts'] raw."""
    from bench.api.generator import to_library_size

    a = counts_adata.copy()
    a.layers["counts"] = a.X.copy()
    a.X = sp.csr_matrix(to_library_size(a.X))
    return a


def fit_generator(gen, train: ad.AnnData, *, label_key: str = "cell_type", seed: int = 0, **ctx):
    """Fit ``gen`` as the runner does: record the training genes and labels, then
    ``fit(train, FitContext(...))``; ``ctx`` sets further FitContext fields (device, work_dir,
    deadline, on_snapshot...). Returns the FitResult (bench.pipeline.fit)."""
    from bench.api.generator import FitContext
    from bench.pipeline import fit

    return fit(gen, train, FitContext(label_key=label_key, seed=seed, **ctx)).result
