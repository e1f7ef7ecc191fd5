"""What `bench run` and `bench report` print fits the terminal: one headline table per dataset and
the paper's tables, at 80 and at 120 columns, with no header or cell cut; `--all` prints every table."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from bench.report import build, print_tables
from bench.report.console import headline_table, print_headline
from bench.store import Store
from tests.test_store_params import old_store

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "results" / "reference" / "pbmc3k-standard"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    committed = json.loads((REF / "summary.json").read_text())
    values = pd.read_csv(
        REF / "values.csv", keep_default_na=False, na_values=[""], float_precision="round_trip"
    )
    run_dir = old_store(
        tmp_path_factory.mktemp("ref") / "run", values, {"metrics": committed["metric_options"]}
    )
    with Store(run_dir, create=False) as store:
        yield build(store)


def render(report, width: int, everything: bool = False) -> str:
    buf = io.StringIO()
    console = Console(
        file=buf, width=width, highlight=False, color_system=None, legacy_windows=False, soft_wrap=True
    )
    if everything:
        print_tables(report, console)
    else:
        print_headline(report, console, "results/run")
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_the_console_view_fits_the_terminal_and_cuts_nothing(report, width):
    text = render(report, width)
    lines = text.splitlines()
    assert max(map(len, lines)) <= width
    assert "…" not in text  # rich marks a cut header or cell with an ellipsis
    assert "pbmc3k: headline" in text and "Table 1" in text and "Fig. 7" in text
    # every model of the headline is a row, with every headline column somewhere in the output
    head = headline_table(report, "pbmc3k")
    for model in head.index:
        assert any(line.lstrip("│┃ ").startswith(model) for line in lines), model
    for col in head.columns:
        assert col in text, col
    tail = " ".join(text.split("full tables: ", 1)[1].split())
    assert (
        tail == "results/run/summary.md; all tables here: `bench report results/run --all`; figures: "
        "`bench report results/run --html`"
    )


def test_the_headline_holds_the_papers_values_and_the_scaled_score(report):
    head = headline_table(report, "pbmc3k")
    assert list(head.columns) == ["AUC (→0.5)", "CD ↓", "MMD ↓", "aug F1 @0.005 ↑", "train s ↓", "scaled ↑"]
    assert list(head.index)[-2:] == ["real", "shuffled"]
    assert head.loc["activa", "AUC (→0.5)"] == "0.999 ± 0.001"
    assert head.loc["copula", "scaled ↑"] == "0.752 ± 0.021"
    assert ("copula", "scaled ↑") in head.attrs["best"]


def test_all_prints_every_table(report):
    short, everything = render(report, 200), render(report, 200, everything=True)
    assert "scaled scores (real control = 1" in everything and "scaled scores (real control = 1" not in short
    assert len(everything.splitlines()) > 2 * len(short.splitlines())


def test_the_headline_shows_a_missing_seed_and_a_failed_model_in_the_scaled_score(tmp_path):
    """A model with a failed seed reads (n/N) in every headline column, the scaled score too; a
    model whose tasks all failed reads `failed` there, never a blank or n/a."""
    from tests.store_fixtures import fill_run

    def vals(mmd, auc):
        return {"mmd": mmd, "auc": auc}

    tasks = {}
    for seed in (0, 1):
        tasks[("real", seed)] = vals(0.0, 0.5)
        tasks[("shuffled", seed)] = vals(1.0, 1.0)
        tasks[("good", seed)] = vals(0.2 + seed * 0.01, 0.6)
        tasks[("broken", seed)] = "RuntimeError: exploded"
    tasks[("flaky", 0)] = vals(0.4, 0.7)
    tasks[("flaky", 1)] = "ValueError: singular"
    fill_run(tmp_path / "run", tasks)
    with Store(tmp_path / "run", create=False) as store:
        head = headline_table(build(store), "toy")
    assert head.loc["flaky", "scaled ↑"].endswith("(1/2)") and head.loc["flaky", "MMD ↓"].endswith("(1/2)")
    assert head.loc["broken", "scaled ↑"] == "failed" and head.loc["broken", "MMD ↓"] == "failed"
    assert "(" not in head.loc["good", "scaled ↑"]
