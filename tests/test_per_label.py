"""Per-type metrics score per-label cells: the runner makes one extra per-label generation (the test
set's counts) for conditional models when such a metric is selected, and none for unconditional ones."""

from __future__ import annotations

import numpy as np
import pytest

from bench import registry
from bench.api.generator import validate_output
from bench.generators.baselines import NegativeBinomial
from bench.tasks import DataSpec, PerLabelCells, TaskSpec, execute_task
from tests.conftest import fit_generator, make_counts


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
    gen = NegativeBinomial()
    fit_generator(gen, prepared.train)
    known = gen.labels
    main = gen.generate(prepared.test.n_obs, seed=1)
    genes = list(map(str, prepared.train.var_names))

    def validate(g, out, request):
        return validate_output(
            g, out, var_names=genes, label_key="cell_type", known_labels=known, requested=request
        )

    cells = PerLabelCells(gen, main, prepared.test.n_obs, prepared, validate, seed=0)
    first = cells.get()
    assert first is cells.get() and first is not main  # one extra generation, made once
    want = prepared.test.obs["cell_type"].astype(str).value_counts().to_dict()
    assert first.obs["cell_type"].astype(str).value_counts().to_dict() == want
    request = {k: int(v) for k, v in want.items()}
    assert PerLabelCells(gen, main, request, prepared, validate, seed=0).get() is main  # already per-label
    unconditional = UnconditionalNB()
    assert PerLabelCells(unconditional, main, prepared.test.n_obs, prepared, validate, seed=0).get() is None
