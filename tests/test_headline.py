"""The report's headline (bench.report.headline): the heatmap's rows and columns and the three
sentences, on a small store filled by hand (known values, so known sentences)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from store_fixtures import fill_run

from bench import report as rpt
from bench.report import headline, headline_html
from bench.report.files import write_files
from bench.store import Store

# per model: (auc, mmd, cd, train_seconds) at seed 0; seeds 1 and 2 add +-jitter
BASE = {
    "a": (0.6, 0.6, 0.4, 100.0),  # scaled: auc 0.8, mmd 0.4, cd 0.8 -> mean 0.667
    "b": (0.9, 0.7, 1.8, 2.0),  # scaled: auc 0.2, mmd 0.3, cd 0.1 -> mean 0.2
    "real": (0.5, 0.0, 0.0, 1.0),
    "shuffled": (1.0, 1.0, 2.0, 0.5),
}


def _fill(run_dir, base=BASE, jitter=0.01, failed=()):
    tasks = {}
    for model, (auc, mmd, cd, secs) in base.items():
        for seed in (0, 1, 2):
            if (model, seed) in failed:
                tasks[(model, seed, "main")] = "RuntimeError: boom"
                continue
            d = 0 if model in ("real", "shuffled") else (seed - 1) * jitter
            tasks[(model, seed, "main")] = {
                "auc": auc + d,
                "mmd": mmd + d,
                "cd": cd + d,
                "train_seconds": secs,
            }
    fill_run(run_dir, tasks, spec={"models": list(base), "profile": "quick"})


def _headline(run_dir):
    with Store(run_dir, create=False) as store:
        report = rpt.build(store)
    return headline.build(headline.from_report(report, ["quick"]), "toy"), report


def test_rows_columns_and_cells(tmp_path):
    _fill(tmp_path)
    h, _ = _headline(tmp_path)
    assert h.models == ["a", "b", "real", "shuffled"]  # best mean first, controls last
    groups = [c.group for c in h.columns]
    assert groups == sorted(groups, key=lambda g: headline._group_rank(g))  # grouped, cost last
    assert {c.metric for c in h.columns if c.group == "realism"} == {"auc", "mmd"}
    assert [c.metric for c in h.columns if c.group == "cost"] == ["train_seconds"]
    auc = next(c for c in h.columns if c.metric == "auc")
    assert h.raw[("a", auc)] == "0.600 ± 0.010" and h.scaled[("a", auc)] == pytest.approx(0.8)
    assert h.scaled[("real", auc)] == pytest.approx(1.0) and h.scaled[("shuffled", auc)] == pytest.approx(0.0)
    assert h.means["a"][0] == pytest.approx((0.8 + 0.4 + 0.8) / 3)
    assert "Profile: quick" in h.note and "Every planned seed has its values" in h.note
    page = headline_html.to_html(h)
    assert page.index(">a<") < page.index(">b<") < page.index(">real (control)<")
    assert 'class="scroll"' in page and "realism" in page and "cost" in page


def test_the_three_sentences(tmp_path):
    _fill(tmp_path)
    h, _ = _headline(tmp_path)
    best, fails, cost = h.sentences
    assert best.startswith(
        "a has the best mean scaled score, 0.67 ± 0.01 (n = 3), 0.47 above b (0.20 ± 0.01, n = 3)"
    )
    assert "beyond the seed spread" in best
    assert fails.startswith("Every model is closer to the shuffled control than to real cells")
    assert "1 of 3 values: mmd (best: a, 0.40)" in fails
    assert cost == (
        "Cost (train_seconds, mean over seeds): b is the cheapest (2), a the dearest (100), 50× as much; "
        "the best model, a, costs 50× the cheapest."
    )


def test_a_margin_within_the_seed_spread_and_missing_seeds(tmp_path):
    base = {**BASE, "b": (0.62, 0.61, 0.45, 2.0)}
    _fill(tmp_path, base, jitter=0.1, failed={("b", 2)})
    h, _ = _headline(tmp_path)
    assert "within the seed spread" in h.sentences[0]
    assert "Missing seeds: b seed 2 (main, failed)" in h.note
    assert h.sentences[0].startswith("b has the best mean scaled score, 0.70 ± 0.08 (n = 2), 0.03 above a")


def test_no_value_where_every_model_fails(tmp_path):
    base = {**BASE, "a": (0.55, 0.2, 0.4, 100.0)}
    _fill(tmp_path, base)
    h, _ = _headline(tmp_path)
    assert h.sentences[1].startswith("No value on which every model fails")


def test_summary_json_gives_the_same_headline(tmp_path):
    _fill(tmp_path / "run")
    h, report = _headline(tmp_path / "run")
    write_files(report, tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "summary.json").read_text())
    h2 = headline.build(headline.from_summary_json(doc, ["quick"]), "toy")
    assert h2.sentences == h.sentences and h2.models == h.models
    assert [c.label for c in h2.columns] == [c.label for c in h.columns]


def test_colour_scale():
    assert headline_html.colour(0.0) == "#f4a582" and headline_html.colour(1.0) == "#78c679"
    assert (
        headline_html.colour(2.0) == headline_html.colour(1.0) and headline_html.colour(np.nan) == "#eeeeee"
    )


def test_the_note_names_the_protocols_and_the_missing_seeds():
    import pandas as pd

    summary = pd.DataFrame(
        {"dataset": ["toy"] * 2, "model": ["a"] * 2, "experiment": ["main", "main@pca-real"],
         "metric": ["auc"] * 2, "params": [{"protocol": "genes"}, {"protocol": "pca-real"}]}
    )  # fmt: skip
    missing = pd.DataFrame(
        [
            {"dataset": "toy", "model": "a", "seed": s, "experiment": "main", "status": "not started"}
            for s in (2, 1)
        ]
    )
    empty = pd.DataFrame(columns=["dataset", "model", "mean", "sd", "n"])
    inputs = headline.Inputs(summary, empty.assign(experiment=[], metric=[]), empty, missing, ["standard"],
                             headline._protocols(summary))  # fmt: skip
    note = headline._note(inputs, "toy")
    assert "also scored in pca-real" in note and "Profile: standard" in note
    assert note.endswith("Missing seeds: a seed 1, 2 (main, not started).")
