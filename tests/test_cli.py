"""Command-line polish: --version, help texts, `bench list` with the active profile's values, the
one description of the `real` control, and the documented screenshot helper."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from bench.cli import build_parser, main
from bench.generators.baselines import RealControl

ROOT = Path(__file__).resolve().parents[1]


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"bench (scgenbench) {version('scgenbench')}"


def test_run_help_shows_run_examples_only(capsys):
    out = _help(capsys, "run")
    examples = out.split("examples:", 1)[1].strip().splitlines()
    assert len(examples) >= 3
    assert all(line.strip().startswith("bench run ") for line in examples), examples


def _parsers(parser: argparse.ArgumentParser, path: str = "bench"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_argument_of_every_command_is_described():
    missing = [
        f"{path}: {action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_baseline_and_check_help_describe_their_arguments(capsys):
    check = " ".join(_help(capsys, "check").split())
    assert "run dir of the `bench run` to check" in check
    assert "baseline file written by `bench baseline`" in check
    assert "exit 1 when a value got worse" in check
    baseline = " ".join(_help(capsys, "baseline").split())
    assert "run dir of a trusted `bench run`" in baseline and "where to write the baseline" in baseline


def test_timeout_help_says_it_stops_in_process_training(capsys):
    text = " ".join(_help(capsys, "run").split())
    assert "--timeout SECONDS wall-clock limit per task: stops a generator's container and also its " \
        "in-process training" in text  # fmt: skip


def _cells(out: str, name: str, header: str) -> str:
    """The text of the column headed ``header`` (a prefix of its title) in the row ``name`` of a
    `bench list` table (joined over wrapped lines)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^│ {re.escape(name)}\s+│", line))
    top = max(i for i, line in enumerate(lines[:start]) if line.startswith("┏"))
    titles: list[str] = []
    for line in lines[top + 1 : start]:
        if not line.startswith("┃"):
            break
        cells = [c.strip() for c in line.split("┃")[1:-1]]
        titles = cells if not titles else [f"{t} {c}".strip() for t, c in zip(titles, cells, strict=True)]
    column = next(i for i, title in enumerate(titles) if title.startswith(header))
    parts = []
    for line in lines[start:]:
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if not cells or (parts and cells[0]):
            break
        parts.append(cells[column])
    return " ".join(p for p in parts if p)


def test_list_states_the_active_profiles_values(capsys):
    assert main(["list"]) == 0
    quick = capsys.readouterr().out
    assert "profile quick (the default): 2,000 highly variable genes" in quick
    assert _cells(quick, "auc", "values") == "auc (→0.5)"  # AUC's ideal is 0.5, not 1
    assert _cells(quick, "mmd", "values") == "mmd ↓" and _cells(quick, "prdc", "values").startswith(
        "precision ↑"
    )
    assert "n_trees=200" in _cells(quick, "auc", "options") and "1000" not in _cells(
        quick, "auc", "description"
    )
    assert "epochs=30" in _cells(quick, "activa", "quick profile sets")
    assert main(["list", "metrics", "--profile", "paper"]) == 0
    paper = capsys.readouterr().out
    assert "profile paper: all genes" in paper
    assert "n_trees=1000" in _cells(paper, "auc", "options")
    assert main(["list", "generators", "--profile", "paper"]) == 0
    assert "epochs=610" in _cells(capsys.readouterr().out, "activa", "paper profile sets")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_real_is_described_the_same_way_everywhere(capsys):
    """One description, matching what `real` does with a label short of cells (test_baselines)."""
    canon = _flat(RealControl.description.removeprefix("Positive control: "))
    assert "with replacement for a label that asks for more cells than the reserve holds" in canon
    assert "the evaluation's PCA and DE genes were not fit on (the control reserve)" in canon
    assert canon in _flat(RealControl.__doc__)
    for doc in ("README.md", "docs/metrics.md", "docs/report.md"):
        assert canon in _flat((ROOT / doc).read_text()), doc
    assert main(["list", "generators"]) == 0
    assert (
        _cells(capsys.readouterr().out, "real", "description")
        == f"{RealControl.description} / {RealControl.paper}"
    )
    for doc in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = _flat(doc.read_text())
        assert "held-out real training" not in text and "held-out-free" not in text, doc


def test_screenshot_helper_works_here(tmp_path):
    """docs/report.md's advice (scripts/ci/screenshot.sh) runs headless Chromium with --no-sandbox,
    which Chromium requires as root; this test runs it as whoever runs the suite (root in CI)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        if os.environ.get("BENCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail("headless Chromium is required (BENCH_REQUIRE_CHROMIUM=1) but not installed")
        pytest.skip("Chromium not installed")
    assert "scripts/ci/screenshot.sh" in (ROOT / "docs" / "report.md").read_text()
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><body><h1>scgenbench</h1></body></html>")
    out = tmp_path / "shot.png"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "ci" / "screenshot.sh"), str(page), str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_warnings_are_one_clean_line(tmp_path):
    """A user-facing warning (here: duplicated gene names in a file given by path) prints as one
    line, `warning: ...`, without the Python source line the default format adds."""
    import sys

    from datasets_fixtures import make_counts

    adata = make_counts(sizes=(60, 45, 30), n_genes=60)
    adata.var_names = [f"gene{j % 55}" for j in range(60)]  # five names twice
    path = tmp_path / "dup.h5ad"
    adata.write_h5ad(path)
    cmd = [sys.executable, "-m", "bench.cli", "run", "--models", "nb", "--dataset", str(path)]
    cmd += ["--label-key", "cell_type", "--experiments", "main", "--metrics", "mean_corr", "--no-control"]
    out = subprocess.run(
        [*cmd, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_DATA": str(tmp_path / "cache")},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in out.stderr.splitlines() if "duplicated gene names" in line]
    assert (
        len(lines) == 1
        and lines[0].startswith("warning: ")
        and "dup.h5ad: 5 duplicated gene names" in lines[0]
    )
    assert "datasets.prepare(" not in out.stderr and "UserWarning" not in out.stderr


def test_dry_run_prints_the_resolved_run_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """`bench run --dry-run` prints the ResolvedRun and every planned task, writes no store and no
    dataset cache; after the real run, the same dry run shows every task as reused (same keys)."""
    from tests.conftest import make_counts

    data = tmp_path / "cells.h5ad"
    make_counts(n_cells=300, n_genes=50, n_types=3, seed=1).write_h5ad(data)
    cache = tmp_path / "cache"
    monkeypatch.setenv("BENCH_DATA", str(cache))
    out = tmp_path / "run"
    args = ["run", "--models", "nb", "--dataset", str(data), "--label-key", "cell_type", "--metrics",
            "mean_corr", "--experiments", "main", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "profile quick; seeds 0; device cpu" in printed
    assert re.search(r"^model nb: .*; code [0-9a-f]{16}$", printed, re.M)
    assert re.search(r"^model real \(control\): ", printed, re.M)
    assert "metric mean_corr (main): " in printed
    planned = re.findall(r"^\s+run\s+cells/(\w+)/seed0/main\s+([0-9a-f]{20})$", printed, re.M)
    assert sorted(m for m, _ in planned) == ["nb", "real", "shuffled"]
    assert "dry run: 3 task(s), 0 in" in printed and "nothing was written" in printed
    assert not out.exists() and not any(cache.rglob("*"))
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    again = capsys.readouterr().out
    reused = re.findall(r"^\s+reuse\s+cells/(\w+)/seed0/main\s+([0-9a-f]{20})$", again, re.M)
    assert sorted(reused) == sorted(planned)


def test_a_second_run_into_the_same_dir_keeps_the_first_ones_values(tmp_path, monkeypatch, capsys):
    """values.csv and summary.* cover every task the store holds (issue 29): a follow-up run of
    another model does not drop the first run's values, and summary.md's first line says so."""
    import json

    import pandas as pd

    from tests.conftest import make_counts

    data = tmp_path / "cells.h5ad"
    make_counts(n_cells=300, n_genes=50, n_types=3, seed=1).write_h5ad(data)
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "cache"))
    out = tmp_path / "run"
    common = ["--dataset", str(data), "--label-key", "cell_type", "--metrics", "mean_corr", "--experiments",
              "main", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(["run", "--models", "nb", *common]) == 0
    assert main(["run", "--models", "copula", "--no-control", *common]) == 0
    capsys.readouterr()
    values = pd.read_csv(out / "values.csv")
    assert set(values.model) == {"nb", "copula", "real", "shuffled"}
    first = (out / "summary.md").read_text().splitlines()[0]
    assert (
        first.startswith("Covers every task of the store: 2 run(s)") and "copula, nb, real, shuffled" in first
    )
    doc = json.loads((out / "summary.json").read_text())
    assert [r["models"] for r in doc["runs"]] == [["nb", "real", "shuffled"], ["copula"]]
    assert {r["model"] for r in doc["summary"]} == {"nb", "copula", "real", "shuffled"}
