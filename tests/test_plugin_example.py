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


def test_editing_the_installed_plugin_stops_the_reuse(installed, tmp_path):
    """The plugin's key holds its distribution's name, version and a hash of its package files: a
    rerun reuses its tasks until a file of the installed package changes."""
    import re

    from bench.store import Store
    from tests.conftest import make_counts

    make_counts(n_cells=120, n_genes=60, seed=5).write_h5ad(tmp_path / "d.h5ad")
    cmd = [sys.executable, "-m", "bench.cli", "run", "--models", "pca_gaussian", "--dataset", str(tmp_path / "d.h5ad"),
           "--label-key", "cell_type", "--metrics", "mean_corr", "--experiments", "main", "--no-control",
           "--out", str(tmp_path / "run")]  # fmt: skip

    def reused() -> int:
        out = subprocess.run(cmd, env=installed, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        return int(re.search(r"(\d+) reused", out.stdout)[1])

    assert reused() == 0
    assert reused() == 1
    target = Path(installed["PYTHONPATH"].split(os.pathsep)[0]) / "scgenbench_gaussian" / "__init__.py"
    original = target.read_text()
    try:
        target.write_text(original + "\n# edited after the first runs\n")
        assert reused() == 0
    finally:
        target.write_text(original)
    with Store(tmp_path / "run", create=False) as store:
        code = store.runs()[-1]["provenance"]["code"]["generators"]["pca_gaussian"]
    assert code["distribution"] == "scgenbench-gaussian" and code["version"] == "0.1.0"
    assert code["editable"] is False and re.fullmatch(r"[0-9a-f]{16}", code["code_hash"])


def test_the_plugin_metric_is_scored_and_its_figure_drawn(installed, tmp_path):
    """The example's metric (entry point bench.metrics) runs beside the built-ins, and the figure it
    declares with a draw callable appears in the HTML report."""
    from tests.conftest import make_counts

    make_counts(n_cells=150, n_genes=80, seed=6).write_h5ad(tmp_path / "d.h5ad")
    run = [sys.executable, "-m", "bench.cli", "run", "--models", "pca_gaussian", "--dataset", str(tmp_path / "d.h5ad"),
           "--label-key", "cell_type", "--metrics", "mean_corr,zero_fraction", "--experiments", "main",
           "--out", str(tmp_path / "run")]  # fmt: skip
    out = subprocess.run(run, env=installed, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "zero_fraction_gap" in out.stdout
    report = [sys.executable, "-m", "bench.cli", "report", str(tmp_path / "run"), "--html"]
    out = subprocess.run(report, env=installed, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    page = (tmp_path / "run" / "report.html").read_text()
    section = page.split('<h3 id="zero_fraction-d">', 1)[1].split("</section>", 1)[0]
    assert section.startswith("Share of zero entries</h3>") and "data:image/png;base64," in section
    assert "of the real test cells (line)." in section
