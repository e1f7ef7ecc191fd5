"""Honest tables: seeds that are missing show as (n/N), failed models keep a row marked `failed`
with the reason under the table, AUC is ranked by |AUC - 0.5|, augmentation arms are compared over
the seeds they share, and only results of the latest code are shown."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from bench import registry
from bench import report as rpt
from bench.api.errors import TaskFailed
from bench.cli import main
from bench.generators.baselines import NegativeBinomial
from bench.report import html as bhtml
from bench.report.tables import arms_table, paper_specs
from bench.store import Store
from tests.conftest import make_counts
from tests.store_fixtures import fill_run


def _seed(args, kwargs) -> int:
    """The seed a fit was called with (keyword arguments, or the fit context of the new contract)."""
    return int(kwargs["seed"]) if "seed" in kwargs else int(args[0].seed)


class FlakyNB(NegativeBinomial):
    """Fails on seed 1 only, with an error that repeats."""

    def fit(self, train, *args, **kwargs):
        if _seed(args, kwargs) == 1:
            raise ValueError("flaky: matrix is singular")
        return super().fit(train, *args, **kwargs)


class BrokenNB(NegativeBinomial):
    """Fails on every seed."""

    def fit(self, train, *args, **kwargs):
        raise RuntimeError("broken: the model exploded\nsecond line of detail")


class SlowNB(NegativeBinomial):
    """Fails on seed 2 the way a preempted job does (transient: worth retrying; a timeout is a limit
    the user set, not transient: tests/test_task_limits.py)."""

    def fit(self, train, *args, **kwargs):
        if _seed(args, kwargs) == 2:
            raise TaskFailed("slow: the node was preempted while it fit")
        return super().fit(train, *args, **kwargs)


PLUGINS = {"flaky": FlakyNB, "broken": BrokenNB, "slow": SlowNB}


@pytest.fixture
def plugins():
    for name, cls in PLUGINS.items():
        registry.register("generators", name, cls)
    yield
    for name in PLUGINS:
        registry._EXTRA["generators"].pop(name)


def test_fmt_shows_missing_seeds_exactly():
    assert rpt.fmt(0.612, 0.020, 2, 3) == "0.612 ± 0.020 (2/3)"
    assert rpt.fmt(0.612, 0.020, 3, 3) == "0.612 ± 0.020"
    assert rpt.fmt(0.612, float("nan"), 1, 3) == "0.612 (1/3)"
    assert rpt.fmt(float("nan"), float("nan"), 0, 3, "failed") == "failed"
    assert rpt.fmt(float("nan"), float("nan"), 0, 3, "missing") == "n/a"


def test_failed_seeds_and_failed_models_stay_visible(plugins, tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    make_counts(n_cells=150, n_genes=80, n_types=3, seed=1).write_h5ad(data)
    run_dir = tmp_path / "run"
    args = ["run", "--models", "nb,flaky,broken,slow", "--dataset", str(data), "--label-key", "cell_type",
            "--seeds", "0,1,2", "--metrics", "mean_corr,mmd", "--experiments", "main", "--no-control",
            "--out", str(run_dir)]  # fmt: skip
    assert main(args) == 1
    out = capsys.readouterr().out
    partial = r"-?\d\.\d{3} ± \d\.\d{3} \(2/3\)"
    table = out[out.index(": headline") : out.index("results:")]  # after the tasks' own lines
    # the console's headline holds the values of the metrics the run selected (--metrics)
    for model in ("flaky", "slow"):
        row = next(line for line in table.splitlines() if f"{model} " in line)
        assert len(re.findall(partial, row)) == 2, row  # mean_corr and mmd over 2 of 3 seeds
    broken_row = next(line for line in table.splitlines() if "broken " in line)
    assert broken_row.count("failed") == 2
    assert "broken: failed on seeds 0, 1, 2 of 3: RuntimeError: broken: the model exploded" in out
    assert "flaky: failed on seed 1 of 3: ValueError: flaky: matrix is singular" in out
    assert "second line of detail" not in table  # one line per reason under the table
    # advice: retry only what can be transient; otherwise the task's error and log
    advice = out[out.index("task(s) failed") :]
    assert (
        "1 task(s) failed in a way that can be transient" in advice and "run the same command again" in advice
    )
    assert "4 task(s) failed with an error that will repeat" in advice and f"bench status {run_dir}" in advice

    def check_files():
        md = (run_dir / "summary.md").read_text()
        assert re.search(r"\| flaky \| " + partial, md) and "| broken | failed | failed |" in md
        assert (
            "- failed: broken: failed on seeds 0, 1, 2 of 3: RuntimeError: broken: the model exploded" in md
        )
        doc = json.loads((run_dir / "summary.json").read_text())
        cells = {(c["model"], c["metric"]): c for c in doc["summary"]}
        assert cells[("flaky", "mmd")]["n"] == 2 and cells[("flaky", "mmd")]["n_planned"] == 3
        assert cells[("flaky", "mmd")]["status"] == "partial"
        assert cells[("broken", "mmd")]["status"] == "failed" and cells[("broken", "mmd")]["n"] == 0
        assert cells[("nb", "mmd")]["n"] == cells[("nb", "mmd")]["n_planned"] == 3
        reasons = {(f["model"], f["seed"]): f for f in doc["failures"]}
        assert reasons[("broken", 0)]["reason"].startswith("RuntimeError: broken: the model exploded")
        assert reasons[("slow", 2)]["transient"] is True and reasons[("flaky", 1)]["transient"] is False
        values = pd.read_csv(run_dir / "values.csv")
        assert {"n", "n_planned"} <= set(values.columns)
        assert set(values[values.model == "flaky"].n) == {2} and set(values.n_planned) == {3}

    check_files()
    # the same command again: the done tasks are reused, the failed ones fail again; the counts
    # still refer to the 3 planned seeds
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "12 task(s): 7 reused" in out
    start = out.index(": headline")
    assert len(re.findall(partial, out[start : out.index("└", start)])) == 4  # the headline
    check_files()
    # `bench report --all` and the HTML report show the same rows (every table) and reasons
    assert main(["report", str(run_dir), "--all", "--html"]) == 0
    out = capsys.readouterr().out
    assert re.search(r" broken +│ +failed +│ +failed", out) and "broken: failed on seeds 0, 1, 2 of 3" in out
    start = out.index("mean ± sd over seeds")
    assert len(re.findall(partial, out[start : out.index("└", start)])) == 4  # the main table
    page = (run_dir / "report.html").read_text()
    assert '<td class="num failed">failed</td>' in page
    assert "failed: broken: failed on seeds 0, 1, 2 of 3: RuntimeError: broken: the model exploded" in page
    assert re.search(r">" + partial + "<", page)


def test_every_seed_failed_still_counts_the_plan(tmp_path):
    fill_run(tmp_path / "run", {("nb", 0, "main"): {"mmd": 0.1}, ("nb", 1, "main"): {"mmd": 0.2},
                                ("bad", 0, "main"): "boom", ("bad", 1, "main"): "boom",
                                ("gone", 0, "main"): None, ("gone", 1, "main"): None})  # fmt: skip
    with Store(tmp_path / "run", create=False) as store:
        report = rpt.build(store)
    # a typed report (issue 28, item 4): attributes, not dict keys, at every reader
    assert isinstance(report, rpt.Report) and isinstance(report.datasets["toy"], rpt.DatasetTables)
    s = report.summary.set_index(["model", "metric"])
    assert s.loc[("bad", "mmd"), "status"] == "failed" and s.loc[("bad", "mmd"), "n_planned"] == 2
    assert s.loc[("gone", "mmd"), "status"] == "missing" and s.loc[("gone", "mmd"), "n_planned"] == 2
    table = report.datasets["toy"].main
    assert table.loc["bad", "mmd ↓"] == "failed" and table.loc["gone", "mmd ↓"] == "n/a"
    assert table.attrs["notes"] == ["bad: failed on seeds 0, 1 of 2: boom",
                                    "gone: missing seeds 0, 1 of 2: not finished (not started)"]  # fmt: skip


def test_augmentation_arms_are_compared_over_the_seeds_they_share():
    # the arms are told apart by their params, not their names (these names carry no "@fraction")
    rows = []
    for seed, real, over, aug in ((0, 0.5, 0.55, 0.7), (1, 0.9, 0.92, np.nan), (2, 0.6, 0.62, 0.8)):
        for cond, v in (("real", real), ("oversampled", over), ("augmented", aug)):
            for frac in (0.1, 0.05):
                rows.append({"dataset": "d", "model": "m", "experiment": "augmentation", "seed": seed,
                             "metric": f"{cond} F1 at {frac}", "value": v if frac == 0.1 else 0.3,
                             "params": {"condition": cond, "fraction": frac}})  # fmt: skip
    s = rpt.summarise(pd.DataFrame(rows)).set_index("metric")
    # seed 1 has no augmented value at 0.1: every arm of 0.1 is averaged over seeds 0 and 2
    assert s.loc["real F1 at 0.1", "mean"] == pytest.approx(0.55) and s.loc["real F1 at 0.1", "n"] == 2
    assert s.loc["oversampled F1 at 0.1", "mean"] == pytest.approx(0.585)
    assert s.loc["augmented F1 at 0.1", "mean"] == pytest.approx(0.75)
    assert set(s.n_planned) == {3}
    assert rpt.cell_text(s.loc["real F1 at 0.1"]) == "0.550 ± 0.071 (2/3)"
    # the fraction 0.05 has every arm on every seed: nothing dropped there
    assert s.loc["real F1 at 0.05", "n"] == 3
    assert s.loc["real F1 at 0.05", "params"] == {"condition": "real", "fraction": 0.05}
    spec = next(t for m, t in paper_specs() if t.arms)
    table = arms_table(s.reset_index(), "d", ["m"], "augmentation", spec)
    assert list(table.columns) == ["0.1", "0.05"]
    assert table.loc[("m", "augmented"), "0.1"] == "0.750 ± 0.071 (2/3)"
    assert table.loc[("m", "real"), "0.05"] == "0.300 ± 0.000"


def test_auc_is_ranked_and_coloured_by_its_distance_to_one_half(tmp_path):
    vals = {"a": (0.30, 0.05), "b": (0.62, 0.30), "c": (0.90, 0.01), "real": (0.5, 0.02)}
    fill_run(tmp_path / "run", {(m, s, "main"): {"auc": auc + 0.01 * s, "auc_sd": sd, "mmd": 0.1 + 0.1 * i}
                                for i, (m, (auc, sd)) in enumerate(vals.items()) for s in (0, 1)})  # fmt: skip
    with Store(tmp_path / "run", create=False) as store:
        report = rpt.build(store)
        page = bhtml.render(store)
    table = report.datasets["toy"].main
    assert list(table.columns) == ["auc (→0.5)", "mmd ↓"]  # auc_sd is information, not a column
    # b (|0.625 - 0.5| = 0.125) beats a (0.195) and c (0.405); lower-is-better would pick a
    assert ("b", "auc (→0.5)") in table.attrs["best"] and ("a", "auc (→0.5)") not in table.attrs["best"]
    assert ("a", "mmd ↓") in table.attrs["best"]
    fig3 = next(df for title, df in report.datasets["toy"].paper.items() if title.startswith("Fig. 3"))
    assert fig3.attrs["best"] == {("auc", "b")}
    assert f'<td class="num best">{table.loc["b", "auc (→0.5)"]}</td>' in page
    assert "auc (→0.5)" in page
    md_dir = tmp_path / "md"
    rpt.write_files(report, md_dir)
    assert f"| b | **{table.loc['b', 'auc (→0.5)']}** |" in (md_dir / "summary.md").read_text()


def test_tables_show_only_the_latest_code_of_each_task(tmp_path):
    # run 1 with the old code, run 2 after an edit (other code hash): `bench report` shows run 2
    fill_run(tmp_path / "run", {("nb", s, "main", "toy", "old"): {"mmd": 0.5} for s in (0, 1)})
    fill_run(tmp_path / "run", {("nb", s, "main", "toy", "new"): {"mmd": 0.1} for s in (0, 1)})
    with Store(tmp_path / "run", create=False) as store:
        assert len(store.values()) == 4  # both kept in the store
        report = rpt.build(store)
        assert report.datasets["toy"].main.loc["nb", "mmd ↓"] == "0.100 ± 0.000"
        assert rpt.build(store, 1).datasets["toy"].main.loc["nb", "mmd ↓"] == "0.500 ± 0.000"


def test_the_de_test_behind_cd_is_recorded_with_the_values(tmp_path, capsys):
    data = tmp_path / "cells.h5ad"
    make_counts(n_cells=150, n_genes=60, n_types=3, seed=2).write_h5ad(data)
    run_dir = tmp_path / "run"

    def run(method: str | None) -> str:
        config = tmp_path / "run.toml"
        config.write_text(f'[metrics.correlation_discrepancy]\nmethod = "{method}"\n' if method else "")
        args = ["run", "--models", "nb", "--dataset", str(data), "--label-key", "cell_type", "--seeds", "0",
                "--metrics", "correlation_discrepancy", "--experiments", "main", "--no-control",
                "--config", str(config), "--out", str(run_dir)]  # fmt: skip
        assert main(args) == 0
        return capsys.readouterr().out

    run("t-test")
    doc = json.loads((run_dir / "summary.json").read_text())
    assert doc["metric_options"]["correlation_discrepancy"]["method"] == "t-test"
    md = (run_dir / "summary.md").read_text()
    assert '- correlation_discrepancy options: {"n_genes": 5, "method": "t-test"}' in md
    assert "### Fig. 5 — correlation discrepancy of DE genes (t-test test)" in md
    with Store(run_dir, create=False) as store:
        (key,) = store.planned().key
        assert store.task_info(key)["metrics"]["correlation_discrepancy"]["de_method"] == "t-test"
    # the default test is another task (its key holds the options), recorded as wilcoxon
    assert "1 task(s): 0 reused" in run(None)
    assert "(wilcoxon test)" in (run_dir / "summary.md").read_text()
    doc = json.loads((run_dir / "summary.json").read_text())
    assert doc["metric_options"]["correlation_discrepancy"]["method"] == "wilcoxon"


def test_main_table_shows_the_budget_and_convergence():
    """steps and cells seen (means over seeds) and the last doubling's MMD gain, 'not converged'
    above 10 %; a model without snapshots shows n/a."""
    rows = []
    for seed, (steps, gain) in enumerate(((1000, 0.30), (3000, 0.20))):
        rows += [("d", "gan", seed, "main", "mmd", 0.1), ("d", "gan", seed, "main", "train_steps", steps),
                 ("d", "gan", seed, "main", "cells_seen", 64 * steps),
                 ("d", "gan", seed, "main", "mmd_gain_last_doubling", gain)]  # fmt: skip
        rows += [("d", "vae", seed, "main", "mmd", 0.2), ("d", "vae", seed, "main", "train_steps", 40000),
                 ("d", "vae", seed, "main", "cells_seen", 40000 * 64),
                 ("d", "vae", seed, "main", "mmd_gain_last_doubling", 0.04)]  # fmt: skip
        rows += [("d", "nb", seed, "main", "mmd", 0.05)]
    values = pd.DataFrame(rows, columns=["dataset", "model", "seed", "experiment", "metric", "value"])
    df = rpt.main_table(rpt.summarise(values), "d", {"mmd": "lower"}, training=True)
    assert df.loc["gan", "steps"] == "2,000" and df.loc["gan", "cells seen"] == "128,000"
    assert df.loc["vae", "cells seen"] == "2.56M"
    assert df.loc["gan", "last 2× ΔMMD"] == "+25 % not converged"
    assert df.loc["vae", "last 2× ΔMMD"] == "+4 %"
    assert df.loc["nb", "steps"] == "n/a" and df.loc["nb", "last 2× ΔMMD"] == "n/a"
    assert "steps" not in rpt.main_table(rpt.summarise(values), "d", {"mmd": "lower"}).columns
