"""End-to-end runner behaviour on a small real AnnData file: reuse, resume after a kill, errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from bench.cli import main
from bench.store import Store
from tests.conftest import make_counts

FAST = ["--metrics", "mean_corr,mmd", "--experiments", "main"]


@pytest.fixture
def h5ad(tmp_path):
    path = tmp_path / "cells.h5ad"
    make_counts(n_cells=200, n_genes=300, n_types=3, seed=1).write_h5ad(path)
    return path


def _run(h5ad, out, *extra):
    return main(["run", "--models", "nb", "--dataset", str(h5ad), "--label-key", "cell_type",
                 "--out", str(out), *FAST, *extra])  # fmt: skip


def test_run_writes_store_tables_and_files(h5ad, tmp_path, capsys):
    assert _run(h5ad, tmp_path / "run", "--seeds", "0,1") == 0
    out = capsys.readouterr().out
    assert "6 task(s): 0 reused" in out and "MMD ↓" in out  # nb and the two controls, two seeds
    with Store(tmp_path / "run") as store:
        values = store.values()
        assert set(values.model) == {"nb", "real", "shuffled"} and set(values.seed) == {0, 1}
        prov = store.runs()[-1]["provenance"]
    assert prov["packages"]["scgenbench"] and "commit" in prov["git"] and prov["host"]["cpus"]
    for name in ("values.csv", "summary.md", "summary.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_rerun_reuses_every_task_and_force_recomputes(h5ad, tmp_path, capsys):
    assert _run(h5ad, tmp_path / "run") == 0
    with Store(tmp_path / "run") as store:
        first = store.values().value.to_numpy()
    capsys.readouterr()
    t0 = time.perf_counter()
    assert _run(h5ad, tmp_path / "run") == 0
    assert "3 reused" in capsys.readouterr().out
    assert time.perf_counter() - t0 < 30
    with Store(tmp_path / "run") as store:
        np.testing.assert_array_equal(store.values().value.to_numpy(), first)
    assert _run(h5ad, tmp_path / "run", "--force") == 0
    assert "0 reused" in capsys.readouterr().out
    with Store(tmp_path / "run") as store:  # same seed, same values
        np.testing.assert_allclose(store.values().value.to_numpy(), first, rtol=1e-6)


def test_killed_task_leaves_no_values_and_is_redone(h5ad, tmp_path):
    """SIGKILL a real `bench run` while a task runs: no partial values; the next run redoes it."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "bench.cli", "run", "--models", "nb", "--no-control", "--dataset", str(h5ad),
           "--label-key", "cell_type", "--out", str(run_dir), "--metrics", "auc", "--experiments", "main"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CI": "1"}
    )
    db = run_dir / "bench.sqlite"
    deadline = time.time() + 120
    status = None
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    row = conn.execute("SELECT status FROM tasks").fetchone()
                status = row[0] if row else None
            except sqlite3.OperationalError:
                status = None
            if status == "running":
                break
        time.sleep(0.05)
    assert status == "running", "the task never showed as running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Store(run_dir) as store:
        assert store.values().empty
        assert store.done_keys() == set()
    assert main(cmd[3:]) == 0
    with Store(run_dir) as store:
        assert len(store.done_keys()) == 1 and not store.values().empty


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_log_normalised_input_is_refused(tmp_path, capsys):
    import scanpy as sc

    a = make_counts()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    a.write_h5ad(tmp_path / "log.h5ad")
    assert main(["run", "--models", "nb", "--dataset", str(tmp_path / "log.h5ad"), "--label-key", "cell_type",
                 "--out", str(tmp_path / "run")]) == 2  # fmt: skip
    assert "error:" in _error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_nan_input_is_refused(tmp_path, capsys):
    a = make_counts()
    X = a.X.toarray()
    X[3, 4] = np.nan
    a.X = X
    a.write_h5ad(tmp_path / "nan.h5ad")
    assert main(["run", "--models", "nb", "--dataset", str(tmp_path / "nan.h5ad"), "--label-key", "cell_type",
                 "--out", str(tmp_path / "run")]) == 2  # fmt: skip
    assert "nan" in _error_line(capsys).lower()
    assert not (tmp_path / "run").exists()


def test_missing_label_key_is_refused(h5ad, tmp_path, capsys):
    assert main(["run", "--models", "nb", "--dataset", str(h5ad), "--label-key", "celltype",
                 "--out", str(tmp_path / "run")]) == 2  # fmt: skip
    line = _error_line(capsys)
    assert "celltype" in line and "cell_type" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--models", "nosuchmodel"], "unknown generator 'nosuchmodel'"),
        (["--models", "nb", "--metrics", "nosuch"], "unknown metric 'nosuch'"),
        (["--models", "nb", "--dataset", "/does/not/exist.h5ad"], "exist"),
        (["--models", "nb", "--config", "/nope.toml"], "config file not found"),
        (["--models", "nb", "--seeds", "a,b"], "cannot parse"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, needle, tmp_path, capsys):
    assert main(["run", *args, "--out", str(tmp_path / "run")]) == 2
    assert needle in _error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_store_merge(h5ad, tmp_path):
    assert _run(h5ad, tmp_path / "a", "--seeds", "0") == 0
    assert _run(h5ad, tmp_path / "b", "--seeds", "1") == 0
    with Store(tmp_path / "a") as a, Store(tmp_path / "b") as b:
        assert a.merge_from(b) == 3  # nb and the two controls
        assert a.merge_from(b) == 0
        assert set(a.values().seed) == {0, 1}


def test_scoring_does_not_change_torch_threads():
    """scanpy's DE test (CD's genes) set the shared libgomp to every core: ACTIVA then trained with
    2 threads under OMP_NUM_THREADS=1 and spun on a busy machine. The runner keeps the count across
    every scoring call and convergence snapshot (bench.pipeline.torch_threads_kept)."""
    import torch

    from bench.evaluation import EvalContext
    from bench.pipeline import score, threads_kept, torch_threads_kept
    from tests.conftest import make_counts

    adata = make_counts(n_cells=200, n_genes=60, n_types=3, seed=0)
    train, test = adata[:150].copy(), adata[150:].copy()
    ctx = EvalContext(dataset="tiny", train=train, test=test, label_key="cell_type", profile="quick",
                      device="cpu", seed=0)  # fmt: skip
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch_threads_kept():
            score("correlation_discrepancy", ctx, test, seed=0)
            torch.set_num_threads(2)  # what numba's OpenMP layer does, whether or not this scanpy does
        assert torch.get_num_threads() == 1
        threads_kept(lambda: torch.set_num_threads(2))()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_fresh_prepare_does_not_change_torch_threads(tmp_path):
    """Preparing pbmc3k from an empty cache ran scanpy's numba kernels, whose OpenMP layer set torch's
    thread count from 1 to 2 under OMP_NUM_THREADS=1: a fit after a fresh prepare ran on two
    threads, one after a cached prepare on one (ACTIVA's values depend on it). DataSpec.prepare
    keeps the count (in a fresh interpreter: the first kernel launch is what sets it)."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from bench.taskspec import DataSpec\n"
        "DataSpec('pbmc3k', None, 0, 0.1, 2000, 'hvg').prepare(write_cache=False)\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_DATA": str(tmp_path / "data"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "1"
