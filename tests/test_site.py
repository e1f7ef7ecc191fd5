"""`bench site`: the static results site across runs (bench.site), from a store and from a committed
summary.json; links resolve, nothing reaches the network, the published docs/site/ is up to date, and
(headless Chromium) the pages render without horizontal overflow at 1,400 px."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from chromium_helpers import chromium, external_refs, screenshot, widths
from store_fixtures import fill_run

from bench.cli import main
from bench.site import build_site

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "reference" / "pbmc3k-quick-activa-scvi"


def _store_run(run_dir: Path) -> Path:
    tasks = {}
    for model, auc, mmd in (("a", 0.6, 0.2), ("b", 0.9, 0.5), ("real", 0.5, 0.0), ("shuffled", 1.0, 1.0)):
        for seed in (0, 1):
            tasks[(model, seed, "main")] = {"auc": auc + 0.01 * seed, "mmd": mmd, "train_seconds": 1.0 + seed}
    fill_run(run_dir, tasks, spec={"models": ["a", "b", "real", "shuffled"], "profile": "quick", "seeds": [0, 1]},
             provenance={"command": "bench run --models a,b", "git": {"commit": "abc1234def"},
                         "host": {"name": "box", "cpus": 2}, "time": "2026-12-01T10:00:00+0000"})  # fmt: skip
    return run_dir


def links(page: Path) -> list[str]:
    return re.findall(r'href="([^"#]+)', page.read_text(encoding="utf-8"))


def assert_links_resolve(site: Path) -> None:
    for page in site.rglob("*.html"):
        for href in links(page):
            assert not re.match(r"[a-z]+:", href), (page, href)  # relative only
            assert (page.parent / href).resolve().exists(), (page, href)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("site")
    out = tmp / "site"
    assert main(["site", str(_store_run(tmp / "run")), str(COMMITTED), "-o", str(out)]) == 0
    return out


def test_pages_of_the_site(site):
    names = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert {"index.html", "datasets/toy.html", "datasets/pbmc3k.html", "models/a.html", "models/scvi.html",
            "run/run/index.html", "run/run/report.html",
            "run/pbmc3k-quick-activa-scvi/index.html"} <= names  # fmt: skip
    index = (site / "index.html").read_text()
    for text in ("abc1234def"[:10], "box, 2 CPUs", "2026-12-01 10:00:00", ">quick<", ">0, 1<", ">genes<"):
        assert text in index, text
    toy = (site / "datasets" / "toy.html").read_text()
    assert "auc (→0.5)" in toy and "0.605 ± 0.007 (n = 2)" in toy and "mean scaled ↑" in toy
    model = (site / "models" / "scvi.html").read_text()
    assert "pbmc3k-quick-activa-scvi" in model and "(n = 2)" in model
    run = (site / "run" / "run" / "index.html").read_text()
    assert 'class="heatmap"' in run and "a has the best mean scaled score" in run


def test_links_resolve_and_nothing_reaches_the_network(site):
    assert_links_resolve(site)
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert external_refs(text) == [], page
        assert "<script" not in text.lower() and "<link" not in text.lower()


def test_a_run_that_is_neither_a_store_nor_a_summary_is_a_user_error(tmp_path, capsys):
    assert main(["site", str(tmp_path), "-o", str(tmp_path / "site")]) == 2
    assert "summary.json" in capsys.readouterr().err


def test_the_published_site_is_up_to_date():
    """docs/site/ is what scripts/publish-site.sh writes from the committed runs (rebuilt here at the
    same depth, so the relative links to the runs' files are the same)."""
    published = ROOT / "docs" / "site"
    # the committed runs, as scripts/publish-site.sh takes them (not a local run dir such as
    # results/quick, which the README's main job writes before CI runs the tests)
    listed = subprocess.run(["git", "ls-files", "--", ":(glob)results/**/summary.json"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    runs = sorted({(ROOT / name).parent for name in listed})
    check = ROOT / "docs" / f".site-check-{os.getpid()}"
    try:
        build_site(runs, check, link=True)
        built = {p.relative_to(check).as_posix(): p.read_bytes() for p in check.rglob("*") if p.is_file()}
        have = {
            p.relative_to(published).as_posix(): p.read_bytes() for p in published.rglob("*") if p.is_file()
        }
        assert sorted(built) == sorted(have), "run scripts/publish-site.sh"
        stale = [name for name in built if built[name] != have[name]]
        assert not stale, f"docs/site is out of date ({stale[:3]}): run scripts/publish-site.sh"
    finally:
        shutil.rmtree(check, ignore_errors=True)
    assert_links_resolve(published)


def test_site_pages_in_headless_chromium(site, tmp_path):
    exe = chromium()
    if exe is None:
        if os.environ.get("BENCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail("headless Chromium is required (BENCH_REQUIRE_CHROMIUM=1) but not installed")
        pytest.skip("chromium not installed")
    artifacts = os.environ.get("BENCH_ARTIFACTS")
    for page in (
        "index.html",
        "datasets/pbmc3k.html",
        "models/scvi.html",
        "run/run/index.html",
        "run/run/report.html",
    ):
        path = site / page
        scroll, view = widths(exe, path, 1400, tmp_path)
        assert scroll <= view, f"{page}: the document is {scroll} px wide in a {view} px window"
        shot = screenshot(exe, path, tmp_path / (page.replace("/", "_") + ".png"), tmp_path)
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(artifacts) / f"site-{shot.name}")
