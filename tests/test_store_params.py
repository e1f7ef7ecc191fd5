"""Value parameters as data: the store's ``params`` column, written by the runner and read by the
report, and stores written before the column existed (the committed reference results) reading
the same."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from bench.report import build, write_files
from bench.store import Store, legacy_params
from bench.tasks import TaskRecord
from tests.store_fixtures import task

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = ["pbmc3k-standard", "pbmc3k-quick-activa-scvi", "pbmc3k-quick-scvi-copula-nb"]

# the schema of a store written before values had params (bench.store before this change)
OLD_SCHEMA = """
CREATE TABLE runs (run_id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, spec TEXT NOT NULL,
    provenance TEXT NOT NULL);
CREATE TABLE planned (run_id INTEGER NOT NULL, key TEXT NOT NULL, dataset TEXT, model TEXT, seed INTEGER,
    experiment TEXT, metrics TEXT, PRIMARY KEY (run_id, key));
CREATE TABLE tasks (key TEXT PRIMARY KEY, run_id INTEGER, dataset TEXT, model TEXT, seed INTEGER,
    experiment TEXT, spec TEXT, status TEXT NOT NULL, started REAL, finished REAL, fit_seconds REAL,
    peak_rss_mb REAL, peak_gpu_mb REAL, host TEXT, error TEXT, log_tail TEXT, info TEXT);
CREATE TABLE task_values (task_key TEXT NOT NULL, dataset TEXT, model TEXT, seed INTEGER, experiment TEXT,
    metric TEXT NOT NULL, value REAL, PRIMARY KEY (task_key, metric));
CREATE TABLE artifacts (task_key TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (task_key, name));
"""


def old_store(run_dir: Path, values: pd.DataFrame, spec, info: dict | None = None) -> Path:
    """A store in the old schema holding ``values`` (dataset, model, seed, experiment, metric, value),
    every task done and planned by one run; ``spec``: every task's spec, or a function of (model,
    seed, experiment) giving it."""
    run_dir.mkdir(parents=True)
    con = sqlite3.connect(run_dir / "bench.sqlite")
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO runs (created, spec, provenance) VALUES (0, '{}', '{}')")
    for (d, m, s, e), g in values.groupby(["dataset", "model", "seed", "experiment"]):
        key = f"{d}-{m}-{s}-{e}"
        con.execute("INSERT INTO planned VALUES (1, ?, ?, ?, ?, ?, '[]')", (key, d, m, int(s), e))
        con.execute(
            "INSERT INTO tasks (key, run_id, dataset, model, seed, experiment, spec, status, info) "
            "VALUES (?, 1, ?, ?, ?, ?, ?, 'done', ?)",
            (
                key,
                d,
                m,
                int(s),
                e,
                json.dumps(spec(m, s, e) if callable(spec) else spec),
                json.dumps(info or {}),
            ),
        )
        con.executemany(
            "INSERT INTO task_values VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(key, d, m, int(s), e, r.metric, float(r.value)) for r in g.itertuples()],
        )
    con.commit()
    con.close()
    return run_dir


def columns(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[1] for r in con.execute("PRAGMA table_info(task_values)")}
    finally:
        con.close()


@pytest.mark.parametrize("name", REFERENCES)
def test_committed_reference_results_report_identically(name, tmp_path):
    """The committed values of a reference run, in a store of the old schema (names like
    ``f1_augmented@0.1``, no params), give the committed summary.md tables and summary.json cells."""
    ref = ROOT / "results" / "reference" / name
    committed = json.loads((ref / "summary.json").read_text())
    values = pd.read_csv(
        ref / "values.csv", keep_default_na=False, na_values=[""], float_precision="round_trip"
    )
    run_dir = old_store(tmp_path / "run", values, {"metrics": committed["metric_options"]})
    with Store(run_dir, create=False) as store:
        write_files(build(store), tmp_path / "out")
    assert "params" not in columns(run_dir / "bench.sqlite")  # reading never changes a store
    md = (tmp_path / "out" / "summary.md").read_text()
    # committed: title, provenance, then the options and tables; here there is no provenance block
    assert md.split("\n\n", 1)[1] == (ref / "summary.md").read_text().split("\n\n", 2)[2]
    doc = json.loads((tmp_path / "out" / "summary.json").read_text())
    for part in ("summary", "scaled", "mean_scaled"):
        strip = lambda rows: [{k: v for k, v in r.items() if k != "params"} for r in rows]  # noqa: E731
        assert strip(doc[part]) == strip(committed[part]), part
    out = pd.read_csv(
        tmp_path / "out" / "values.csv", keep_default_na=False, na_values=[""], float_precision="round_trip"
    )
    assert out.drop(columns="params").equals(values)
    # the augmentation values' params, derived from their old names in the store layer
    params = dict(zip(out.metric, out.params.map(json.loads), strict=False))
    if "f1_augmented@0.1" in params:
        assert params["f1_augmented@0.1"] == {"condition": "augmented", "fraction": 0.1}
        assert params["n_rare_train@0.005"] == {"fraction": 0.005}
        assert "Fig. 7" in md
    assert params["mmd"] == {}


def test_old_store_gets_the_column_on_its_first_write_and_keeps_reading(tmp_path):
    old = pd.DataFrame(
        [("toy", "nb", 0, "augmentation", "f1_real@0.1", 0.5), ("toy", "nb", 0, "augmentation", "f1_gain@0.1", 0.1),
         ("toy", "nb", 0, "augmentation", "n_rare_train@0.1", 30.0), ("toy", "nb", 0, "main", "mmd", 0.2)],
        columns=["dataset", "model", "seed", "experiment", "metric", "value"],
    )  # fmt: skip
    spec = lambda m, s, e: task(m, int(s), e, dataset="toy").to_dict()  # noqa: E731
    run_dir = old_store(tmp_path / "run", old, spec, info={"metrics": {"augmentation": {"rare_class": "B"}}})
    with Store(run_dir, create=False) as store:
        before = store.values()
        assert before.params.tolist() == [
            {"condition": "gain", "fraction": 0.1, "cell_type": "B"},
            {"condition": "real", "fraction": 0.1, "cell_type": "B"},
            {"fraction": 0.1, "cell_type": "B"},
            {},
        ]
        spec = task("scgan", 0, "augmentation", dataset="toy")
        params = {"f1_real@0.2": {"condition": "real", "fraction": 0.2, "cell_type": "B"}}
        rec = TaskRecord(
            key=spec.key, status="done", values=[("f1_real@0.2", 0.4), ("x", 1.0)], params=params
        )
        store.write_record(spec, rec, 1)
        after = store.values()
    assert "params" in columns(run_dir / "bench.sqlite")
    mine = after[after.model == "scgan"].set_index("metric").params
    assert mine["f1_real@0.2"] == params["f1_real@0.2"] and mine["x"] == {}
    assert after[after.model == "nb"].params.tolist() == before.params.tolist()
    # merging an old store into a new one writes the derived params explicitly
    with Store(tmp_path / "merged") as merged, Store(run_dir, create=False) as source:
        merged.merge_from(source)
        rows = dict(merged.conn.execute("SELECT metric, params FROM task_values WHERE model='nb'").fetchall())
    assert json.loads(rows["f1_real@0.1"]) == {"condition": "real", "fraction": 0.1, "cell_type": "B"}
    assert json.loads(rows["mmd"]) == {}


def test_legacy_params_known_names():
    assert legacy_params("f1_oversampled@0.005", "augmentation") == {
        "condition": "oversampled",
        "fraction": 0.005,
    }
    assert legacy_params("filter_share@0.05", "augmentation") == {"fraction": 0.05}
    assert legacy_params("mmd", "main") == {} and legacy_params("x@notanumber", "main") == {}


def test_slurm_record_files_keep_params(tmp_path):
    rec = TaskRecord(key="k", status="done", values=[("a@1", 1.0)], params={"a@1": {"fraction": 1.0}})
    rec.save(tmp_path / "r.npz")
    assert TaskRecord.load(tmp_path / "r.npz").params == {"a@1": {"fraction": 1.0}}


def test_a_run_writes_the_params_the_metric_returns(tmp_path):
    """End to end: `bench run` of the augmentation experiment stores each value's params, and the
    report's Fig. 7 table reads them."""
    from bench.cli import main
    from tests.conftest import make_counts

    make_counts(n_cells=240, n_genes=200, n_types=3, seed=1).write_h5ad(tmp_path / "cells.h5ad")
    (tmp_path / "run.toml").write_text(
        '[metrics.augmentation]\nfractions = [0.5, 0.25]\nn_trees = 10\nn_generated = 40\nspace = "pca50"\n'
    )
    args = ["run", "--config", str(tmp_path / "run.toml"), "--models", "nb", "--dataset", str(tmp_path / "cells.h5ad"),
            "--label-key", "cell_type", "--metrics", "augmentation", "--experiments", "augmentation",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    with Store(tmp_path / "run", create=False) as store:
        values = store.values()
        stored = dict(
            store.conn.execute("SELECT metric, params FROM task_values WHERE model='nb'").fetchall()
        )
        report = build(store)
    rare = json.loads(stored["f1_augmented@0.5"])["cell_type"]
    assert json.loads(stored["f1_augmented@0.5"]) == {
        "condition": "augmented",
        "fraction": 0.5,
        "cell_type": rare,
    }
    assert json.loads(stored["n_rare_train@0.25"]) == {"fraction": 0.25, "cell_type": rare}
    nb = values[values.model == "nb"]
    assert all(p.get("fraction") in (0.5, 0.25) for p in nb.params)
    (table,) = [df for title, df in report.datasets["cells"].paper.items() if title.startswith("Fig. 7")]
    assert list(table.columns) == ["0.5", "0.25"] and ("nb", "augmented") in table.index
    assert table.loc[("nb", "augmented")].ne("n/a").all()
