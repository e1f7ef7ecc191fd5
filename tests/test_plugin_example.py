"""The documented plugin example installs and is found through its entry point, like a user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "scgenbench-gaussian"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(EXAMPLE)], check=True)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    return env


def test_entry_point_lists_the_plugin(installed):
    out = subprocess.run([sys.executable, "-m", "bench.cli", "list", "generators"], env=installed,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert "pca_gaussian" in out.stdout


def test_plugin_runs_in_the_harness(installed, tmp_path):
    from tests.conftest import make_counts

    make_counts(n_cells=150, n_genes=80, seed=4).write_h5ad(tmp_path / "d.h5ad")
    cmd = [sys.executable, "-m", "bench.cli", "run", "--models", "pca_gaussian", "--dataset", str(tmp_path / "d.h5ad"),
           "--label-key", "cell_type", "--metrics", "mean_corr,mmd", "--experiments", "main",
           "--out", str(tmp_path / "run")]  # fmt: skip
    out = subprocess.run(cmd, env=installed, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pca_gaussian" in out.stdout and "mean_corr" in out.stdout
