"""The generator contract: FitContext, what the runner records and measures, convergence snapshots."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from bench.api.errors import TaskFailed, UserError
from bench.api.generator import (
    SNAPSHOT_FRACTIONS,
    Budget,
    FitContext,
    FitResult,
    Generator,
    Snapshot,
    make_output,
)
from bench.tasks import DataSpec, TaskSpec, execute_task
from tests.conftest import make_counts


def test_fit_context_is_frozen_and_has_a_deadline():
    ctx = FitContext(label_key="cell_type", seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.seed = 4  # type: ignore[misc]
    assert ctx.time_left() is None
    ctx.check_deadline("x")  # no deadline: never raises
    late = FitContext(label_key="cell_type", seed=0, deadline=time.monotonic() - 1)
    assert late.time_left() < 0
    with pytest.raises(TaskFailed, match="mymodel: training exceeded its time limit"):
        late.check_deadline("mymodel")


def test_snapshot_steps_at_the_budget_fractions():
    seen: list[Snapshot] = []
    ctx = FitContext(label_key="c", seed=0, snapshot_fractions=SNAPSHOT_FRACTIONS, on_snapshot=seen.append)
    assert ctx.snapshot_steps(800) == [100, 200, 400, 800]
    assert ctx.snapshot_steps(3) == [1, 2, 3]  # small budgets: unique, within 1..total
    assert ctx.snapshot_steps(0) == []
    assert FitContext(label_key="c", seed=0).snapshot_steps(800) == []  # the harness wants none
    ctx.snapshot(step=100, cells_seen=6400, cells=lambda n, s: None)
    assert seen[0].step == 100 and seen[0].cells_seen == 6400 and callable(seen[0].cells)


class Recorder(Generator):
    """A plugin written only from the public contract: fit never touches genes or labels."""

    name = "recorder"
    conditional = True
    parameters = {"steps": 8, "sleep": 0.0}

    def fit(self, train, ctx):
        self._mean = np.asarray(train.X.mean(axis=0)).ravel()
        self.seen_ctx = ctx
        for step in range(1, self.params["steps"] + 1):
            ctx.check_deadline(self.name)
            time.sleep(self.params["sleep"])
            if step in ctx.snapshot_steps(self.params["steps"]):
                ctx.snapshot(
                    step=step, cells_seen=step * 10, cells=lambda n, seed: self.generate(n, seed=seed)
                )
        return FitResult(steps=self.params["steps"], cells_seen=self.params["steps"] * 10)

    def generate(self, n_cells, *, seed):
        rng = np.random.default_rng(seed)
        X = rng.poisson(np.tile(self._mean, (n_cells, 1)) / 100) + 1.0
        X = X / X.sum(1, keepdims=True) * 20_000
        labels = rng.choice(self.labels, size=n_cells)
        return make_output(X, self.var_names, self.label_key, labels)


@pytest.fixture
def prepared(tmp_path):
    from bench import datasets

    path = tmp_path / "cells.h5ad"
    make_counts(n_cells=200, n_genes=120, n_types=3, seed=2).write_h5ad(path)
    return datasets.prepare(str(path), label_key="cell_type", cache_dir=tmp_path / "cache")


def _spec(prepared, metrics, **kw):
    data = DataSpec(str(prepared.info["path"]), "cell_type", 0, 0.1, None)
    return TaskSpec(dataset="cells", data=data, data_hash=prepared.hash, model="recorder", params=kw.pop("params", {}),
                    seed=0, experiment="main", metrics=metrics, profile="quick", **kw)  # fmt: skip


def test_runner_records_genes_measures_fit_and_scores_snapshots(prepared, tmp_path, monkeypatch):
    from bench import registry

    monkeypatch.setattr(registry, "get_generator", lambda name: Recorder)

    metrics = {"mean_corr": {}, "timing": {"n_cells": 300}}
    rec = execute_task(_spec(prepared, metrics), tmp_path / "task", data=prepared)
    assert rec.status == "done", rec.error
    values = dict(rec.values)
    # the runner's measurements: the model's fit wall time, steps and cells seen
    assert values["train_steps"] == 8 and values["cells_seen"] == 80
    assert values["fit_wall_seconds"] >= 0 and values["train_seconds"] == values["fit_wall_seconds"]
    assert values["generate_cells_timed"] == 300
    # convergence: four snapshots scored against the test cells, steps at 1/8 .. 1 of the budget
    np.testing.assert_array_equal(rec.artifacts["convergence/step"], [1, 2, 4, 8])
    np.testing.assert_array_equal(rec.artifacts["convergence/cells_seen"], [10, 20, 40, 80])
    for name in ("mmd", "cd", "mean_corr", "auc"):
        assert np.isfinite(rec.artifacts[f"convergence/{name}"]).all()
    assert values["snapshots"] == 4 and np.isfinite(values["mmd_gain_last_doubling"])


def test_snapshot_time_is_left_out_of_the_fit_wall_time(prepared, tmp_path, monkeypatch):
    """A model that sleeps 0.1 s per step: the fit's wall time is ~0.8 s whatever the snapshots cost."""
    from bench import registry

    monkeypatch.setattr(registry, "get_generator", lambda name: Recorder)
    rec = execute_task(_spec(prepared, {"timing": {"n_cells": 100}}, params={"sleep": 0.1}), tmp_path / "t",
                       data=prepared)  # fmt: skip
    assert rec.status == "done", rec.error
    wall = dict(rec.values)["fit_wall_seconds"]
    assert 0.75 < wall < 1.5


def test_deadline_stops_an_in_process_model(prepared, tmp_path, monkeypatch):
    from bench import registry

    monkeypatch.setattr(registry, "get_generator", lambda name: Recorder)
    spec = _spec(prepared, {"mean_corr": {}}, params={"steps": 50, "sleep": 0.05}, timeout_s=0.5)
    rec = execute_task(spec, tmp_path / "t", data=prepared)
    assert rec.status == "failed" and "time limit" in rec.error


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20000 steps", Budget(20000, "steps")),
        ("600 epochs", Budget(600, "epochs")),
        ("30 minutes", Budget(30, "minutes")),
        ("1 epoch", Budget(1, "epochs")),
        (1500, Budget(1500, "steps")),
        ({"epochs": 12}, Budget(12, "epochs")),
        (None, None),
    ],
)
def test_budget_parses(value, expected):
    assert Budget.parse(value) == expected


@pytest.mark.parametrize("value", ["ten steps", "5 hours", "-3 steps", "0 epochs", [1, 2], True, "600"])
def test_budget_rejects_nonsense(value):
    with pytest.raises(UserError, match="is not a training budget"):
        Budget.parse(value, what="budget")


def test_budget_in_steps_is_independent_of_the_dataset_size():
    """600 epochs are 11,400 steps of 128 cells on pbmc3k's 2,429 training cells (19 per epoch) and
    288,600 on pbmc68k's 61,588 (481 per epoch; issue 12); a budget in steps is the same on both."""
    assert Budget.parse("600 epochs").steps(19) == 11_400
    assert Budget.parse("600 epochs").steps(61588 // 128) == 288_600
    assert Budget.parse("20000 steps").steps(19) == Budget.parse("20000 steps").steps(481) == 20_000
    assert Budget.parse("30 minutes").steps(19) is None and Budget.parse("30 minutes").seconds == 1800


class ReserveProbe(Recorder):
    """A positive control like `real`: the runner hands it the control reserve only."""

    name = "reserve_probe"
    uses_control_reserve = True

    def fit(self, train, ctx):
        self.fit_obs = list(train.obs_names)
        return super().fit(train, ctx)


def test_positive_control_is_fit_on_the_control_reserve_only(prepared, tmp_path, monkeypatch):
    """The `real` control draws from the control reserve (cells the evaluation's PCA and DE genes
    leave out); any other model gets every training cell."""
    from bench import registry
    from bench.evaluation import EvalContext

    fitted: dict[str, list[str]] = {}

    class Probe(ReserveProbe):
        def fit(self, train, ctx):
            fitted[type(self).__name__] = list(train.obs_names)
            return super().fit(train, ctx)

    class Plain(Recorder):
        def fit(self, train, ctx):
            fitted[type(self).__name__] = list(train.obs_names)
            return super().fit(train, ctx)

    for cls in (Probe, Plain):
        monkeypatch.setattr(registry, "get_generator", lambda name, cls=cls: cls)
        rec = execute_task(_spec(prepared, {"mean_corr": {}}), tmp_path / cls.__name__, data=prepared)
        assert rec.status == "done", rec.error
    ctx = EvalContext(
        dataset="cells", train=prepared.train, test=prepared.test, label_key="cell_type", seed=0
    )
    reserve = list(prepared.train.obs_names[ctx.control_reserve])
    assert fitted["Probe"] == reserve and 0 < len(reserve) < prepared.train.n_obs
    assert fitted["Plain"] == list(prepared.train.obs_names)


def test_the_library_size_rule_is_one_rule_for_the_check_and_the_scoring():
    """bench.api.contract's ±1 % rule decides both validate_output (a declared library-size output) and
    the scoring's scale inference (bench.evaluation.infer_scale)."""
    import anndata as ad

    from bench.api import contract
    from bench.api.generator import validate_output
    from bench.evaluation import infer_scale

    assert contract.at_library_size(np.array([19_800.0, 20_200.0, 19_799.0, 20_201.0])).tolist() == [
        True, True, False, False,
    ]  # fmt: skip

    class Gen(Generator):
        name = "lib"

    def cells(total: float) -> ad.AnnData:
        x = np.full((3, 4), total / 4)
        out = ad.AnnData(X=x)
        out.var_names = [f"g{i}" for i in range(4)]
        return out

    genes = [f"g{i}" for i in range(4)]
    kw = {"var_names": genes, "label_key": "cell_type", "known_labels": [], "requested": 3}
    for total, inside in ((20_150.0, True), (20_250.0, False)):
        assert (infer_scale(cells(total).X) == "library-size-20000") is inside
        if inside:
            validate_output(Gen, cells(total), **kw)
        else:
            with pytest.raises(TaskFailed, match="do not sum to 20,000"):
                validate_output(Gen, cells(total), **kw)


def test_resolve_device():
    import torch

    from bench.api.contract import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU is visible"):
            resolve_device("cuda:1")
