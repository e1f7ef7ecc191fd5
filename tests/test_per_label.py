"""Per-type metrics score per-label cells: the runner makes one extra per-label generation (the test
set's counts) for conditional models when such a metric is selected, and none for unconditional ones."""

from __future__ import annotations

import numpy as np
import pytest

from bench import registry
from bench.generators.baselines import NegativeBinomial
from bench.pipeline import PerLabelCells, Pipeline
from bench.tasks import DataSpec, TaskSpec, execute_task
from tests.conftest import make_counts


class UnconditionalNB(NegativeBinomial):
    """The `nb` model that cannot condition on labels (samples types by training proportions)."""

    name = "nb_unconditional"
    conditional = False


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from bench import datasets

    path = tmp_path_factory.mktemp("per-label") / "cells.h5ad"
    make_counts(n_cells=600, n_genes=90, n_types=3, seed=2).write_h5ad(path)
    return datasets.prepare(str(path), label_key="cell_type", n_top_genes=None)


def _spec(prepared, model, metrics, generation="unconditional"):
    data = DataSpec(str(prepared.name), "cell_type", 0, 0.1, None)
    return TaskSpec(dataset=prepared.name, data=data, data_hash=prepared.hash, model=model, params={}, seed=0,
                    experiment="main", metrics=metrics, profile="quick", device="cpu",
                    generation=generation)  # fmt: skip


METRICS = {"per_type": {"n_trees": 10, "n_jobs": 1, "min_cells": 5}, "de_recovery": {"top_k": 10},
           "mean_corr": {}}  # fmt: skip


def test_conditional_model_gets_per_label_cells(prepared, tmp_path):
    rec = execute_task(_spec(prepared, "nb", METRICS), tmp_path / "w", data=prepared)
    assert rec.status == "done", rec.error
    values = dict(rec.values)
    assert {"mmd_type_mean", "auc_type_worst", "de_lfc_r", "de_jaccard", "mean_corr"} <= set(values)
    # the per-type cells are the test set's counts per type (the unconditional main cells are not)
    test_counts = prepared.test.obs["cell_type"].astype(str).value_counts()
    types = [str(t) for t in rec.artifacts["per_type/types"]]
    np.testing.assert_array_equal(rec.artifacts["per_type/n_cells"], [test_counts[t] for t in types])
    assert types == sorted(test_counts.index)


def test_unconditional_model_gets_no_per_type_values(prepared, tmp_path):
    registry.register("generators", UnconditionalNB.name, UnconditionalNB)
    rec = execute_task(_spec(prepared, UnconditionalNB.name, METRICS), tmp_path / "w", data=prepared)
    assert rec.status == "done", rec.error
    assert {name for name, _ in rec.values} == {"mean_corr"}
    assert not any(k.startswith(("per_type/", "de_recovery/")) for k in rec.artifacts)


def test_per_label_cells_made_once_or_reused(prepared):
    pipe = Pipeline(NegativeBinomial, {}, prepared.train, "cell_type")
    fitted = pipe.fit_model(prepared.train, 0)
    main = pipe.generate_cells(fitted, prepared.test.n_obs, seed=1)
    cells = PerLabelCells(pipe, fitted, main, prepared.test.n_obs, prepared.test, seed=0)
    first = cells.get()
    assert first is cells.get() and first is not main  # one extra generation, made once
    want = prepared.test.obs["cell_type"].astype(str).value_counts().to_dict()
    assert first.obs["cell_type"].astype(str).value_counts().to_dict() == want
    request = {k: int(v) for k, v in want.items()}
    assert (
        PerLabelCells(pipe, fitted, main, request, prepared.test, seed=0).get() is main
    )  # already per-label
    unconditional = Pipeline(UnconditionalNB, {}, prepared.train, "cell_type")
    assert (
        PerLabelCells(unconditional, fitted, main, prepared.test.n_obs, prepared.test, seed=0).get() is None
    )
