"""The regression gate: a run compared with its own baseline passes; a worsened model fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench.generators.baselines import NegativeBinomial

from bench import registry
from bench.cli import main
from bench.regression import compare, load_baseline
from bench.report import summarise
from bench.store import Store
from tests.conftest import make_counts

METRICS = ["--metrics", "mean_corr,mmd,auc", "--experiments", "main"]
# a 100-tree forest keeps the test quick; the gate logic does not depend on the forest size
CONFIG = "[metrics.auc]\nn_trees = 100\n"


class ScrambledNB(NegativeBinomial):
    """A deliberately worsened `nb`: per-gene dispersions permuted, and shrunk 100x."""

    def _adjust_size(self, size, seed):
        return np.random.default_rng(seed).permutation(size) / 100.0


@pytest.fixture
def h5ad(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "cells.h5ad"
    make_counts(n_cells=240, n_genes=200, n_types=3, seed=2).write_h5ad(path)
    return path


def _run(h5ad, out):
    config = out.parent / "run.toml"
    config.write_text(CONFIG)
    args = ["run", "--models", "nb", "--dataset", str(h5ad), "--label-key", "cell_type", "--seeds", "0,1,2"]
    return main([*args, "--config", str(config), "--out", str(out), *METRICS])


def test_same_seeds_repeat_within_tolerance_and_worse_model_fails(h5ad, tmp_path, capsys):
    assert _run(h5ad, tmp_path / "base") == 0
    assert main(["baseline", str(tmp_path / "base"), "-o", str(tmp_path / "baseline.json")]) == 0
    doc = load_baseline(tmp_path / "baseline.json")
    assert {v["model"] for v in doc["values"]} == {"nb", "real", "shuffled"}
    assert not {v["metric"] for v in doc["values"]} & {"train_seconds", "peak_rss_mb"}

    # reproducibility: a fresh run of the same seeds on the same machine passes the gate
    assert _run(h5ad, tmp_path / "again") == 0
    capsys.readouterr()
    assert main(["check", str(tmp_path / "again"), "--baseline", str(tmp_path / "baseline.json")]) == 0
    assert "regressed" not in capsys.readouterr().out

    # a deliberately worsened generator fails it
    registry.register("generators", "nb", ScrambledNB)
    try:
        assert _run(h5ad, tmp_path / "worse") == 0
    finally:
        registry._EXTRA["generators"].pop("nb")
    capsys.readouterr()
    assert main(["check", str(tmp_path / "worse"), "--baseline", str(tmp_path / "baseline.json")]) == 1
    out = capsys.readouterr().out
    assert "regressed" in out


def test_compare_directions_and_missing():
    baseline = {
        "tolerance": {"abs": 0.01, "sd_units": 2.0, "rel": 0.0},
        "values": [
            {"dataset": "d", "model": "m", "experiment": "main", "metric": "auc", "direction": "lower", "mean": 0.6, "sd": 0.01},
            {"dataset": "d", "model": "m", "experiment": "main", "metric": "mean_corr", "direction": "higher", "mean": 0.9, "sd": 0.0},
            {"dataset": "d", "model": "m", "experiment": "main", "metric": "mmd", "direction": "lower", "mean": 0.1, "sd": 0.0},
            {"dataset": "d", "model": "x", "experiment": "main", "metric": "auc", "direction": "lower", "mean": 0.6, "sd": 0.0},
        ],
    }  # fmt: skip
    import pandas as pd

    values = pd.DataFrame(
        {
            "dataset": "d",
            "model": "m",
            "experiment": "main",
            "seed": 0,
            "metric": ["auc", "mean_corr", "mmd"],
            "value": [0.625, 0.85, 0.05],
        }  # fmt: skip
    )
    res = compare(summarise(values), baseline).set_index(["model", "metric"]).status.to_dict()
    # auc +0.025 within slack max(0.01, 2*0.01)=0.02? no: 0.025 > 0.02 -> regressed
    assert res[("m", "auc")] == "regressed"
    assert res[("m", "mean_corr")] == "regressed"  # higher is better, dropped by 0.05
    assert res[("m", "mmd")] == "improved"
    assert res[("x", "auc")] == "missing"
    assert (
        compare(summarise(values), baseline, sd_units=3.0).set_index(["model", "metric"]).status[("m", "auc")]
        == "pass"
    )


def test_bad_baseline_file_is_user_error(tmp_path, capsys):
    (tmp_path / "b.json").write_text(json.dumps({"hello": 1}))
    Store(tmp_path / "run").close()
    assert main(["check", str(tmp_path / "run"), "--baseline", str(tmp_path / "b.json")]) == 2
    assert main(["check", str(tmp_path / "run"), "--baseline", str(tmp_path / "nope.json")]) == 2
