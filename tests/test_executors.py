"""The executor interface: executors yield each task's new state and result and never write the
store; the runner (store_outcomes) writes every outcome, and an interrupted task's failed record."""

from __future__ import annotations

import inspect
import signal

import pytest

from bench.config import build_spec
from bench.executors.base import Executor, Outcome
from bench.executors.local import LocalExecutor
from bench.executors.slurm import SlurmExecutor
from bench.interrupt import Interrupted
from bench.planning import plan
from bench.runner import store_outcomes
from bench.store import STORE_NAME, Store
from bench.tasks import TaskRecord
from tests.conftest import make_counts


class NoStore:
    """A store an executor must not touch: any attribute access fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the executor used the store ({name})")


@pytest.fixture
def tiny_plan(tmp_path):
    path = tmp_path / "cells.h5ad"
    make_counts(n_cells=200, n_genes=300, n_types=3, seed=1).write_h5ad(path)
    spec = build_spec(None, models=["nb"], datasets=[str(path)], seeds=[0], label_key="cell_type",
                      metrics=["mmd"], experiments=["main"], control=False)  # fmt: skip
    return plan(spec)


def test_both_executors_follow_the_protocol():
    for cls in (LocalExecutor, SlurmExecutor):
        assert inspect.isgeneratorfunction(cls.execute)
        params = inspect.signature(cls.execute).parameters
        assert list(params) == list(inspect.signature(Executor.execute).parameters)


def test_local_executor_yields_states_and_records_and_never_writes(tiny_plan, tmp_path):
    (task,) = tiny_plan.tasks
    run = LocalExecutor().execute(tiny_plan.tasks, NoStore(), run_dir=tmp_path / "run", run_id=7,
                                  data=tiny_plan.data)  # fmt: skip
    outcomes = []
    with pytest.raises(StopIteration) as stop:
        while True:
            outcomes.append(next(run))
    assert stop.value.value == {"failed": []}
    assert [(o.spec.key, o.record.status, o.run_id) for o in outcomes] == [
        (task.key, "running", 7),
        (task.key, "done", 7),
    ]
    assert "mmd" in {name for name, _ in outcomes[1].record.values}
    assert not (tmp_path / "run" / STORE_NAME).exists()


def test_store_outcomes_writes_each_outcome_and_an_interrupted_record(tiny_plan, tmp_path):
    (task,) = tiny_plan.tasks

    def executor():
        yield Outcome(task, TaskRecord(key=task.key, status="planned"), None)
        yield Outcome(task, TaskRecord(key=task.key, status="running"), None)
        raise Interrupted(
            signal.SIGTERM, TaskRecord(key=task.key, status="failed", error="SIGTERM: the task was stopped")
        )

    with Store(tmp_path / "run") as store:
        run_id = store.add_run({"models": ["nb"]}, {})
        with pytest.raises(KeyboardInterrupt):
            store_outcomes(store, executor(), run_id)
        row = store.task_row(task.key)
        assert row["status"] == "failed" and row["error"] == "SIGTERM: the task was stopped"
        assert row["run_id"] == run_id

        def done():
            yield Outcome(task, TaskRecord(key=task.key, status="done", values=[("mmd", 0.25)]), None)
            return {"failed": []}

        assert store_outcomes(store, done(), run_id) == {"failed": []}
        assert store.done_keys() == {task.key} and store.values().value.tolist() == [0.25]
