"""Data is keyed by its content hash, never by its name (issue 32, finding 1): two inputs with the
same file stem are refused instead of swapping data, and a task handed data checks its hash."""

from __future__ import annotations

import numpy as np
import pytest

from bench.cli import main
from bench.config import RunSpec
from bench.planning import plan
from bench.tasks import execute_task
from tests.conftest import make_counts


@pytest.fixture
def two_x(tmp_path):
    """in/a/x.h5ad and in/b/x.h5ad: the same stem, different cells."""
    paths = []
    for folder, seed in (("a", 1), ("b", 2)):
        (tmp_path / "in" / folder).mkdir(parents=True)
        path = tmp_path / "in" / folder / "x.h5ad"
        make_counts(n_cells=90, n_genes=60, n_types=3, seed=seed).write_h5ad(path)
        paths.append(path)
    return paths


def test_two_inputs_with_one_name_are_refused(two_x, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "cache"))
    a, b = two_x
    rc = main(["run", "--models", "nb", "--dataset", f"{a},{b}", "--label-key", "cell_type",
               "--experiments", "main", "--metrics", "mean_corr", "--out", str(tmp_path / "run")])  # fmt: skip
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "two datasets are named 'x'" in err[0] and str(a) in err[0] and str(b) in err[0]
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache" / "prepared").exists()


def test_the_same_input_twice_is_one_dataset(two_x, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "cache"))
    a, _ = two_x
    spec = RunSpec(models=["nb"], datasets=[str(a), str(a)], label_key="cell_type", experiments=["main"],
                   metrics=["mean_corr"], control=False)  # fmt: skip
    the_plan = plan(spec)
    assert len(the_plan.tasks) == 1
    assert list(the_plan.data) == [the_plan.tasks[0].data_hash]  # keyed by content hash


def test_a_task_handed_other_data_fails_instead_of_scoring_it(two_x, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "cache"))
    a, b = two_x
    plans = [
        plan(
            RunSpec(
                models=["nb"],
                datasets=[str(p)],
                label_key="cell_type",
                experiments=["main"],
                metrics=["mean_corr"],
                control=False,
            )
        )  # fmt: skip
        for p in (a, b)
    ]
    task_a = plans[0].tasks[0]
    data_b = next(iter(plans[1].data.values()))
    assert data_b.hash != task_a.data_hash
    rec = execute_task(task_a, tmp_path / "work", data=data_b)
    assert rec.status == "failed"
    assert f"planned on data {task_a.data_hash}" in rec.error and data_b.hash in rec.error
    good = execute_task(task_a, tmp_path / "work2", data=next(iter(plans[0].data.values())))
    assert good.status == "done" and np.isfinite(dict(good.values)["mean_corr"])
