"""A run dir filled by hand: planned tasks, finished ones with known values, failed ones with an error.

Tables, the HTML report and the regression gate read only the store, so known values give known
tables without training anything.
"""

from __future__ import annotations

from pathlib import Path

from bench.store import Store
from bench.tasks import DataSpec, TaskRecord, TaskSpec

METRICS = {"main": ["auc", "mmd", "mean_corr", "correlation_discrepancy"], "augmentation": ["augmentation"]}


def task(model: str, seed: int, experiment: str = "main", dataset: str = "toy", code: str = "") -> TaskSpec:
    data = DataSpec(dataset, "cell_type", 0, 0.1, 2000)
    return TaskSpec(dataset=dataset, data=data, data_hash="h" + dataset, model=model, params={}, seed=seed,
                    experiment=experiment, metrics={m: {} for m in METRICS[experiment]}, profile="quick",
                    code={"code_hash": code})  # fmt: skip


def fill_run(run_dir: str | Path, tasks: dict[tuple, dict[str, float] | str | None], *,
             spec: dict | None = None, provenance: dict | None = None) -> int:  # fmt: skip
    """One run planning every ``(model, seed, experiment[, dataset])`` of ``tasks``: a dict of values
    makes it done, a string makes it failed with that error, None leaves it planned but never
    started. Returns the run id."""
    with Store(run_dir) as store:
        run_id = store.add_run(spec or {"models": sorted({k[0] for k in tasks})}, provenance or {})
        specs = {k: task(*k) for k in tasks}
        store.add_planned(run_id, specs.values())
        for k, outcome in tasks.items():
            if outcome is None:
                continue
            if isinstance(outcome, str):
                rec = TaskRecord(key=specs[k].key, status="failed", error=outcome)
            else:
                rec = TaskRecord(key=specs[k].key, status="done", values=list(outcome.items()))
            store.write_record(specs[k], rec, run_id)
    return run_id
