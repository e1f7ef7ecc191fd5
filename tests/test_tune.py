"""`bench tune`: the validation split never touches the test cells; points are scored, ranked, reused."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from bench.api.errors import UserError
from bench.cli import main
from bench.tune import grid_points, parse_grid, tune, validation_split
from tests.conftest import make_counts


@pytest.fixture
def h5ad(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "cache"))
    path = tmp_path / "cells.h5ad"
    make_counts(n_cells=240, n_genes=120, n_types=3, seed=3).write_h5ad(path)
    return str(path)


def test_validation_split_is_balanced_and_inside_the_training_cells(h5ad):
    from bench import datasets

    p = datasets.prepare(h5ad, label_key="cell_type")
    fit_part, val = validation_split(p.train, "cell_type", seed=0)
    assert set(fit_part.obs_names).isdisjoint(val.obs_names)
    assert set(val.obs_names) <= set(p.train.obs_names)
    assert set(val.obs_names).isdisjoint(p.test.obs_names)  # the test split is never seen
    per_type = val.obs["cell_type"].value_counts()
    assert fit_part.n_obs + val.n_obs == p.train.n_obs and (per_type > 0).all()


def test_grid_parsing():
    assert parse_grid(["lr=1e-3,5e-3", "batch_size=64,128"]) == {"lr": [1e-3, 5e-3], "batch_size": [64, 128]}
    assert parse_grid(None) is None
    # any number Python reads (a leading dot, a sign), true/false, else text: no JSON traceback
    assert parse_grid(["lr=.5,-1e-3", "xla=true,false", "mode=prior"]) == {
        "lr": [0.5, -1e-3], "xla": [True, False], "mode": ["prior"]}  # fmt: skip
    with pytest.raises(UserError, match="cannot read grid axis"):
        parse_grid(["lr"])
    assert grid_points({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


def test_sweep_ranks_by_validation_mmd_writes_the_table_and_reuses_points(h5ad, tmp_path):
    out = tmp_path / "tuning"
    grid = {"min_dispersion": [1e-3, 1e3]}  # 1e3: (nearly) Poisson, ignores over-dispersion
    table = tune("nb", h5ad, profile="quick", grid=grid, label_key="cell_type", out=out)
    assert len(table) == 2 and list(table.mmd) == sorted(table.mmd)
    doc = json.loads((out / "nb-cells.json").read_text())
    assert doc["ranked_by"] == "mmd" and "training cells" in doc["validation"]
    assert [r["min_dispersion"] for r in doc["rows"]] == list(table.min_dispersion)
    assert "| min_dispersion | mmd |" in (out / "nb-cells.md").read_text()
    # a wider grid measures only the new point, and the same sweep again measures nothing
    wider = tune("nb", h5ad, profile="quick", grid={"min_dispersion": [1e-3, 1e3, 1.0]}, label_key="cell_type",
                 out=out)  # fmt: skip
    assert len(wider) == 3
    np.testing.assert_allclose(sorted(wider.mmd[wider.min_dispersion != 1.0]), sorted(table.mmd))


def test_cli_tune_and_its_errors(h5ad, tmp_path, capsys):
    args = ["tune", "--model", "nb", "--dataset", h5ad, "--label-key", "cell_type", "--profile", "quick",
            "--out", str(tmp_path / "t")]  # fmt: skip
    assert main([*args, "--grid", "min_dispersion=0.001"]) == 0
    assert "best by validation MMD: {'min_dispersion': 0.001}" in capsys.readouterr().out
    assert main([*args, "--grid", "min_dispersion=0.001"]) == 0  # measured: reused, said the same way
    assert re.search(r"\[1/1\] min_dispersion=0.001: reused \(MMD -?\d\.\d{4}\)", capsys.readouterr().out)
    assert main(args) == 2  # nb declares no grid of its own
    assert "declares no tuning grid" in capsys.readouterr().err
    assert main([*args, "--grid", "min_dispersion=0.001", "--budget", "3 steps"]) == 2
    assert "not in epochs" in capsys.readouterr().err
