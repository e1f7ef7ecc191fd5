"""Control-scaled scores (bench.report.scaling): known answers on hand-made value tables, and the scaled
tables in summary.json / summary.md."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench import report as rpt
from bench.report import scaling
from bench.store import Store
from bench.tasks import DataSpec, TaskRecord, TaskSpec


def table(rows):
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "experiment", "metric", "value"])


ROWS = [
    # mmd (lower): real 0.0, shuffled 0.4 -> nb 0.1 scales to 0.75 (seed 0), 0.2 -> 0.5 (seed 1)
    ("d", "real", 0, "main", "mmd", 0.0), ("d", "shuffled", 0, "main", "mmd", 0.4), ("d", "nb", 0, "main", "mmd", 0.1),
    ("d", "real", 1, "main", "mmd", 0.0), ("d", "shuffled", 1, "main", "mmd", 0.4), ("d", "nb", 1, "main", "mmd", 0.2),
    # precision (higher): real 0.9, shuffled 0.5 -> nb 0.8 -> 0.75, 1.0 -> 1.25 (clipped to 1 in the mean)
    ("d", "real", 0, "main", "precision", 0.9), ("d", "shuffled", 0, "main", "precision", 0.5),
    ("d", "nb", 0, "main", "precision", 0.8),
    ("d", "real", 1, "main", "precision", 0.9), ("d", "shuffled", 1, "main", "precision", 0.5),
    ("d", "nb", 1, "main", "precision", 1.0),
    # mean_corr is not scaled (the negative control keeps the gene means)
    ("d", "real", 0, "main", "mean_corr", 0.99), ("d", "shuffled", 0, "main", "mean_corr", 0.98),
    ("d", "nb", 0, "main", "mean_corr", 0.97),
]  # fmt: skip


def test_scaled_values_known_answers():
    out = scaling.scale(table(ROWS))
    assert "mean_corr" not in set(out.metric)  # declared not_scaled by its metric

    def val(model, seed, metric):
        return float(out[(out.model == model) & (out.seed == seed) & (out.metric == metric)].scaled.iloc[0])

    assert val("nb", 0, "mmd") == pytest.approx(0.75) and val("nb", 1, "mmd") == pytest.approx(0.5)
    assert val("nb", 0, "precision") == pytest.approx(0.75) and val("nb", 1, "precision") == pytest.approx(
        1.25
    )
    for seed in (0, 1):  # the controls define the scale
        assert val("real", seed, "mmd") == 1.0 and val("shuffled", seed, "mmd") == 0.0
    s = scaling.summarise(out)
    row = s[(s.model == "nb") & (s.metric == "mmd")].iloc[0]
    assert (row["mean"], row["n"]) == (pytest.approx(0.625), 2) and row["sd"] == pytest.approx(
        np.std([0.75, 0.5], ddof=1)
    )


def test_auc_is_scaled_on_its_distance_to_one_half():
    """AUC's ideal is 0.5: real 0.5, shuffled 1.0 -> 0.75 and 0.25 are both halfway (0.5), and the
    value column keeps the raw AUC."""
    rows = [("d", "real", 0, "main", "auc", 0.5), ("d", "shuffled", 0, "main", "auc", 1.0),
            ("d", "a", 0, "main", "auc", 0.75), ("d", "b", 0, "main", "auc", 0.25),
            ("d", "c", 0, "main", "auc", 0.9)]  # fmt: skip
    out = scaling.scale(table(rows)).set_index("model")
    assert out.loc["a", "scaled"] == pytest.approx(0.5) and out.loc["b", "scaled"] == pytest.approx(0.5)
    assert out.loc["c", "scaled"] == pytest.approx(0.2)
    assert out.loc["real", "scaled"] == 1.0 and out.loc["shuffled", "scaled"] == 0.0
    assert out.loc["b", "value"] == 0.25  # raw value kept


def test_per_type_auc_is_scaled_on_its_distance_to_one_half():
    """The per-type AUC values (mean over types, worst type) have AUC's target 0.5 too: a worst type
    at 0.3 is 0.2 from the ideal, between real (0.55: 0.05) and shuffled (1.0: 0.5) -> 2/3, not
    the 1.56 a lower-is-better scale of the raw value would give."""
    rows = [("d", "real", 0, "main", "auc_type_worst", 0.55), ("d", "shuffled", 0, "main", "auc_type_worst", 1.0),
            ("d", "nb", 0, "main", "auc_type_worst", 0.3), ("d", "real", 0, "main", "auc_type_mean", 0.5),
            ("d", "shuffled", 0, "main", "auc_type_mean", 0.9), ("d", "nb", 0, "main", "auc_type_mean", 0.6)]  # fmt: skip
    out = scaling.scale(table(rows)).set_index(["model", "metric"])
    assert out.loc[("nb", "auc_type_worst"), "scaled"] == pytest.approx(0.3 / 0.45)
    assert out.loc[("nb", "auc_type_mean"), "scaled"] == pytest.approx(0.3 / 0.4)
    assert out.loc[("nb", "auc_type_worst"), "value"] == 0.3  # raw value kept


def test_mean_scaled_score_clips_and_uses_common_values():
    rows = [*ROWS,
            # a per-type value only conditional models have: left out of everyone's mean when another
            # model lacks it
            ("d", "real", 0, "main", "mmd_type_mean", 0.0), ("d", "shuffled", 0, "main", "mmd_type_mean", 1.0),
            ("d", "nb", 0, "main", "mmd_type_mean", 0.9),
            ("d", "uncond", 0, "main", "mmd", 0.3), ("d", "uncond", 0, "main", "precision", 0.7),
            ("d", "uncond", 1, "main", "mmd", 0.2), ("d", "uncond", 1, "main", "precision", 0.3)]  # fmt: skip
    means = scaling.mean_scores(scaling.scale(table(rows))).set_index("model")
    assert means.loc["nb", "metrics"] == ["main/mmd", "main/precision"] and means.loc["nb", "n_metrics"] == 2
    # nb per seed: mean(0.75, 0.75) = 0.75 and mean(0.5, clip(1.25) = 1) = 0.75
    assert means.loc["nb", "mean"] == pytest.approx(0.75) and means.loc["nb", "sd"] == pytest.approx(0.0)
    # uncond: seed 0 mean(0.25, 0.5), seed 1 mean(0.5, clip(-0.5) = 0)
    assert means.loc["uncond", "mean"] == pytest.approx((0.375 + 0.25) / 2)
    assert means.loc["real", "mean"] == 1.0 and means.loc["shuffled", "mean"] == 0.0
    # without the unconditional model the per-type value joins the common set
    only = scaling.mean_scores(scaling.scale(table([r for r in rows if r[1] != "uncond"])))
    assert only.set_index("model").loc["nb", "n_metrics"] == 3


def test_no_scaled_table_without_controls():
    """A run without controls (--no-control) has nothing to scale by: no table of n/a cells."""
    rows = [r for r in ROWS if r[1] == "nb"]
    assert scaling.table(scaling.build(table(rows)), "d").empty
    assert not scaling.table(scaling.build(table(ROWS)), "d").empty


def test_undefined_when_controls_do_not_separate_or_are_inverted():
    rows = [
        ("d", "real", 0, "main", "mmd", 0.1), ("d", "shuffled", 0, "main", "mmd", 0.1), ("d", "nb", 0, "main", "mmd", 0.2),
        # the negative control is *better* than the positive one: no scale
        ("d", "real", 0, "main", "energy", 0.5), ("d", "shuffled", 0, "main", "energy", 0.2),
        ("d", "nb", 0, "main", "energy", 0.3),
    ]  # fmt: skip
    out = scaling.scale(table(rows))
    assert out.scaled.isna().all() and len(out) == 6
    assert scaling.mean_scores(out).empty


def test_control_missing_a_seed_uses_its_mean_over_seeds():
    rows = [("d", "real", 0, "main", "mmd", 0.0), ("d", "real", 1, "main", "mmd", 0.2),
            ("d", "shuffled", 0, "main", "mmd", 1.1), ("d", "nb", 2, "main", "mmd", 0.6)]  # fmt: skip
    out = scaling.scale(table(rows))
    nb = out[out.model == "nb"].iloc[0]
    assert (nb.positive, nb.negative) == (pytest.approx(0.1), pytest.approx(1.1))
    assert nb.scaled == pytest.approx(0.5)


def test_augmentation_values_scale_per_fraction_and_skip_generator_free_arms():
    rows = [("d", m, 0, "augmentation", f"{arm}@0.1", v) for m, arm, v in
            (("real", "f1_augmented", 0.8), ("shuffled", "f1_augmented", 0.4), ("nb", "f1_augmented", 0.7),
             ("real", "f1_real", 0.5), ("shuffled", "f1_real", 0.5), ("nb", "f1_real", 0.5),
             ("real", "f1_gain", 0.3), ("shuffled", "f1_gain", -0.1), ("nb", "f1_gain", 0.2))]  # fmt: skip
    out = scaling.scale(table(rows))
    assert set(out.metric) == {"f1_augmented@0.1"}
    assert float(out[out.model == "nb"].scaled.iloc[0]) == pytest.approx(0.75)


def test_summary_files_carry_scaled_scores(tmp_path):
    store = Store(tmp_path / "run")
    run_id = store.add_run({"models": ["nb", "real", "shuffled"]}, {})
    for _, model, seed, experiment, _metric, _v in {r[:4] + (None, None) for r in ROWS}:
        spec = TaskSpec(dataset="d", data=DataSpec("d", "cell_type", 0, 0.1, 2000), data_hash="h", model=model,
                        params={}, seed=seed, experiment=experiment, metrics={}, profile="quick")  # fmt: skip
        vals = [(r[4], r[5]) for r in ROWS if r[1] == model and r[2] == seed]
        store.write_record(spec, TaskRecord(key=spec.key, status="done", values=vals), run_id)
    report = rpt.build(store)
    paths = rpt.write_files(report, tmp_path / "run")
    doc = json.loads(paths[2].read_text())
    nb = [r for r in doc["scaled"] if r["model"] == "nb" and r["metric"] == "mmd"][0]
    assert nb["mean"] == pytest.approx(0.625) and nb["n"] == 2
    mean = {r["model"]: r for r in doc["mean_scaled"]}
    assert mean["nb"]["mean"] == pytest.approx(0.75) and mean["real"]["mean"] == 1.0
    assert {r["metric"] for r in doc["summary"]} == {"mmd", "precision", "mean_corr"}  # raw values kept
    md = paths[1].read_text()
    assert rpt.SCALED_TITLE in md and "| nb | 0.625 ± 0.177 | 1.000 ± 0.354 | 0.750 ± 0.000 |" in md
    # the raw tables keep raw values: precision in its suite table, mmd in the main table
    tables = report.datasets["d"]
    assert tables.suite["fidelity and coverage"].loc["nb", "precision ↑"] == "0.900 ± 0.141"
    assert tables.main.loc["nb", "mmd ↓"] == "0.150 ± 0.071"
    assert list(tables.scaled.index) == ["nb", "real", "shuffled"]  # the controls last
    store.close()
