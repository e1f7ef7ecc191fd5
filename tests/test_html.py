"""`bench report --html`: a self-contained page with the tables and the paper's figures.

Fast tests fill a store directly (known values and arrays); the slow test makes a real run with the
CLI on a small synthetic dataset and renders it. The page is opened in headless Chromium when it is
installed (required when BENCH_REQUIRE_CHROMIUM=1); its screenshot goes to $BENCH_ARTIFACTS.
"""

from __future__ import annotations

import base64
import html as htmllib
import io
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from bench import report as rpt
from bench.metrics.figures import paper as figures
from bench.report import html as bhtml
from bench.report.view import RunView
from bench.store import Store
from bench.tasks import DataSpec, TaskRecord, TaskSpec

FIGURE_SECTIONS = ("umap", "markers", "roc", "correlation", "augmentation", "timing", "tradeoff", "convergence",
                   "prdc", "memorisation", "per_type", "de_recovery")  # fmt: skip
IMG_RE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


# -- a store filled by hand -----------------------------------------------------------------------
def _spec(
    model: str, seed: int, experiment: str, dataset: str = "toy", metrics: dict | None = None
) -> TaskSpec:
    data = DataSpec(dataset, "cell_type", 0, 0.1, 2000)
    return TaskSpec(dataset=dataset, data=data, data_hash="h" + dataset, model=model, params={}, seed=seed,
                    experiment=experiment, metrics=metrics or {}, profile="quick", rare_class="t1")  # fmt: skip


def _embedding_artifacts(rng, conditional: bool) -> dict[str, np.ndarray]:
    centres = np.array([[0, 0], [10, 0], [0, 10]], float)
    real_lab = np.repeat(np.array(["t0", "t1", "t2"]), 20)
    gen_lab = np.repeat(np.array(["t0", "t1", "t2"]), 10)
    real_xy = centres[np.repeat(np.arange(3), 20)] + rng.normal(size=(60, 2))
    gen_xy = centres[np.repeat(np.arange(3), 10)] + rng.normal(size=(30, 2))
    genes = np.array(["CD79A", "NKG7", "LYZ"])
    real_m = np.abs(rng.normal(size=(60, 3))) + 3 * (np.repeat(np.arange(3), 20)[:, None] == np.arange(3))
    gen_m = np.abs(rng.normal(size=(30, 3))) + 3 * (np.repeat(np.arange(3), 10)[:, None] == np.arange(3))
    return {
        "embedding/real_umap": real_xy.astype(np.float32),
        "embedding/real_labels": real_lab,
        "embedding/generated_umap": gen_xy.astype(np.float32),
        "embedding/generated_labels": gen_lab if conditional else np.asarray([], dtype=str),
        "embedding/generated_knn_labels": gen_lab,
        "embedding/marker_genes": genes,
        "embedding/real_markers": real_m.astype(np.float32),
        "embedding/generated_markers": gen_m.astype(np.float32),
    }


def _auc_artifacts(rng, separation: float) -> dict[str, np.ndarray]:
    from sklearn.metrics import roc_curve

    out = {"auc/fold_aucs": np.full(3, 0.5)}
    for k in range(3):
        y = np.r_[np.zeros(40), np.ones(40)]
        score = rng.normal(size=80) + separation * y
        fpr, tpr, _ = roc_curve(y, score)
        out[f"auc/roc_fpr_{k}"], out[f"auc/roc_tpr_{k}"] = fpr.astype(np.float32), tpr.astype(np.float32)
    return out


def _suite_artifacts(rng, model: str) -> dict[str, np.ndarray]:
    """What the metric suite keeps for its figures (memorisation, per type, DE recovery)."""
    copying = model == "real"  # the positive control returns training cells: distance 0
    types = np.array(["t0", "t1", "t2"])
    real_lfc = rng.normal(2.0, 1.0, size=12).astype(np.float32)
    return {
        "memorisation/generated_distances": (np.zeros(40) if copying else rng.gamma(4.0, 1.0, 40)).astype(
            np.float32
        ),
        "memorisation/test_distances": rng.gamma(4.0, 1.0, 40).astype(np.float32),
        "memorisation/threshold": np.array([0.9], np.float32),
        "per_type/types": types,
        "per_type/n_cells": np.array([20, 15, 12]),
        "per_type/mmd": rng.uniform(0.0, 0.1, 3),
        "per_type/energy": rng.uniform(0.5, 3.0, 3),
        # nb's types: AUC 0.3 (below the ideal 0.5), 0.7 (as far above) and 0.9; per-type values below
        "per_type/auc": np.array([0.3, 0.7, 0.9]) if model == "nb" else rng.uniform(0.5, 1.0, 3),
        "de_recovery/types": types,
        "de_recovery/type_index": np.repeat(np.arange(3), 4),
        "de_recovery/genes": np.array([f"G{i}" for i in range(12)]),
        "de_recovery/real_lfc": real_lfc,
        "de_recovery/generated_lfc": (real_lfc + rng.normal(0.0, 0.5, 12)).astype(np.float32),
    }


# suite values per model (the PRDC bars and the titles of the suite figures)
SUITE = {"nb": {"precision": 0.9, "recall": 0.6, "density": 0.95, "coverage": 0.7, "memorisation_ratio": 1.0,
                "memorisation_share": 0.0, "de_lfc_r": 0.6, "de_jaccard": 0.4},
         "real": {"precision": 0.8, "recall": 0.9, "density": 1.0, "coverage": 0.95, "memorisation_ratio": 0.0,
                  "memorisation_share": 1.0, "de_lfc_r": 0.5, "de_jaccard": 0.5},
         "shuffled": {"precision": 0.1, "recall": 0.95, "density": 0.05, "coverage": 0.1, "memorisation_ratio": 1.3,
                      "memorisation_share": 0.0, "de_lfc_r": 0.0, "de_jaccard": 0.02}}  # fmt: skip
# per-type values (the "per type" table): nb's worst type has AUC 0.3, below the ideal 0.5 (its
# artifacts above hold 0.3, 0.7 and 0.9: mean 0.633)
PER_TYPE = {"nb": {"mmd_type_mean": 0.05, "mmd_type_worst": 0.09, "auc_type_mean": 0.633, "auc_type_worst": 0.3},
            "real": {"mmd_type_mean": 0.01, "mmd_type_worst": 0.02, "auc_type_mean": 0.52, "auc_type_worst": 0.55},
            "shuffled": {"mmd_type_mean": 0.4, "mmd_type_worst": 0.6, "auc_type_mean": 0.95,
                         "auc_type_worst": 1.0}}  # fmt: skip

REAL_CORR = np.array([[1.0, 0.8, -0.2], [0.8, 1.0, 0.1], [-0.2, 0.1, 1.0]], np.float32)
GEN_CORR = np.array([[1.0, 0.5, 0.3], [0.5, 1.0, -0.4], [0.3, -0.4, 1.0]], np.float32)

# (model, seed) -> main values; known means: nb auc (0.8+0.9)/2, real auc (0.5+0.52)/2
MAIN = {
    ("nb", 0): {"auc": 0.8, "mmd": 0.02, "cd": 1.5, "train_seconds": 2.0, "generate_seconds_per_100k": 5.0},
    ("nb", 1): {"auc": 0.9, "mmd": 0.03, "cd": 1.7, "train_seconds": 4.0, "generate_seconds_per_100k": 7.0},
    ("real", 0): {"auc": 0.5, "mmd": 0.001, "cd": 0.4, "train_seconds": 0.01, "generate_seconds_per_100k": 0.1},
    ("real", 1): {"auc": 0.52, "mmd": 0.002, "cd": 0.6, "train_seconds": 0.02, "generate_seconds_per_100k": 0.1},
    ("shuffled", 0): {"auc": 1.0, "mmd": 0.1, "cd": 3.0, "train_seconds": 0.01, "generate_seconds_per_100k": 0.1},
    ("shuffled", 1): {"auc": 1.0, "mmd": 0.1, "cd": 3.0, "train_seconds": 0.01, "generate_seconds_per_100k": 0.1},
}  # fmt: skip


def fill_store(
    run_dir: Path,
    *,
    with_embedding: bool = True,
    failed: bool = True,
    datasets: tuple[str, ...] = ("toy",),
    options: dict[str, dict] | None = None,
) -> Store:
    """A store with known values and arrays for every figure; ``options``: the metric options the
    main tasks record (as `bench run` does from the run spec)."""
    rng = np.random.default_rng(0)
    store = Store(run_dir)
    prov = {"command": "bench run --models nb <script>", "git": {"commit": "abc123", "dirty": False},
            "python": "3.11", "packages": {"numpy": "1.26"}, "host": {"name": "box", "cpus": 2},
            "gpu": {"gpus": [], "cuda": None}}  # fmt: skip
    run_id = store.add_run(
        {"models": ["nb", "real", "shuffled"], "datasets": ["toy"], "seeds": [0, 1], "profile": "quick"}, prov
    )
    for dataset, ((model, seed), vals) in ((d, item) for d in datasets for item in MAIN.items()):
        spec = _spec(model, seed, "main", dataset, options)
        arts = {**_auc_artifacts(rng, 2.0 if model == "nb" else 0.0),
                "correlation_discrepancy/real_corr": REAL_CORR, "correlation_discrepancy/generated_corr": GEN_CORR,
                "correlation_discrepancy/genes": np.array(["GA", "GB", "GC"])}  # fmt: skip
        if with_embedding:
            arts.update(_embedding_artifacts(rng, conditional=model == "nb"))
        arts.update(_suite_artifacts(rng, model))
        if model == "nb":  # snapshots of an iterative model (bench.convergence)
            arts.update({"convergence/step": np.array([10.0, 20.0, 40.0, 80.0]),
                         "convergence/train_seconds": np.array([1.0, 2.0, 4.0, 8.0]) * (seed + 1),
                         "convergence/mmd": np.array([0.4, 0.2, 0.1, 0.09]),
                         "convergence/auc": np.array([1.0, 0.9, 0.8, 0.78])})  # fmt: skip
        rec = TaskRecord(
            key=spec.key,
            status="done",
            values=[*vals.items(), *SUITE[model].items(), *PER_TYPE[model].items()],
            artifacts=arts,
        )
        store.mark_running(spec, run_id)
        store.write_record(spec, rec, run_id)
        aug = _spec(model, seed, "augmentation", dataset)
        values, params = [], {}
        for frac, base in ((0.1, 0.8), (0.01, 0.3)):
            for cond, v in (
                ("real", base),
                ("oversampled", base + 0.02),
                ("augmented", base + 0.1 + 0.05 * seed),
            ):
                values.append((f"f1_{cond}@{frac:g}", v))
                params[f"f1_{cond}@{frac:g}"] = {"condition": cond, "fraction": frac}
        rec = TaskRecord(key=aug.key, status="done", values=values, params=params)
        store.write_record(aug, rec, run_id)
    if failed:
        bad = _spec("activa", 0, "main")
        store.write_record(
            bad, TaskRecord(key=bad.key, status="failed", error="CUDA <oops> & out of memory"), run_id
        )
    return store


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[str, Path]:
    """One rendered page (and its store's run dir) shared by the read-only checks."""
    run_dir = tmp_path_factory.mktemp("rendered") / "run"
    with fill_store(run_dir) as store:
        return bhtml.render(store), run_dir


@pytest.fixture
def filled(tmp_path):
    store = fill_store(tmp_path / "run")
    yield store
    store.close()


# -- checks shared by the fast and the slow test -------------------------------------------------
def decode_images(page: str) -> list:
    from PIL import Image

    images = []
    for b64 in IMG_RE.findall(page):
        raw = base64.b64decode(b64, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        im = Image.open(io.BytesIO(raw))
        im.load()
        arr = np.asarray(im.convert("L"), dtype=float)
        assert im.width > 200 and im.height > 150 and arr.std() > 5  # not blank
        images.append(im)
    return images


def assert_self_contained(page: str) -> None:
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page):
        assert attr.startswith(("data:image/png;base64,", "#")), attr[:80]
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"url\(|@import|https?://[^\s\"<]*\.(js|css)", page)


def assert_tables_match_console(page: str, store: Store) -> None:
    report = rpt.build(store)
    for tables in report.datasets.values():
        frames = [tables.main, *tables.paper.values(), *tables.suite.values(), tables.scaled]
        for df in frames:
            for value in df.to_numpy().ravel():
                assert f">{htmllib.escape(str(value))}<" in page, value


def assert_sections(page: str, datasets: list[str]) -> None:
    for anchor in ("headline", "provenance", "tasks"):
        assert f'id="{anchor}"' in page
    # read from the top: the headline first, provenance last
    assert (
        page.index('id="headline"')
        < page.index('id="ds-')
        < page.index('id="suite-')
        < page.index('id="tasks"')
    )
    assert page.index('id="tasks"') < page.index('id="provenance"')
    for d in datasets:
        slug = bhtml._slug(d)
        assert f'id="ds-{slug}"' in page and f'id="suite-{slug}"' in page and f'id="headline-{slug}"' in page
        for sec in FIGURE_SECTIONS:
            assert f'id="{sec}-{slug}"' in page, sec


# -- fast tests -----------------------------------------------------------------------------------
def test_page_has_every_section_and_figure(filled, tmp_path):
    out = bhtml.write_html(filled, filled.run_dir)
    assert out == filled.run_dir / "report.html" and out.is_file()
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # the page says when its newest task ended, not when it was drawn: the same store, the same page
    last = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(filled.last_finished()))
    assert f"results as of {last}" in page and "generated 20" not in page
    assert_sections(page, ["toy"])
    images = decode_images(page)
    assert len(images) == len(FIGURE_SECTIONS)  # one figure per section, none missing
    assert_self_contained(page)
    assert 'class="note"' not in page.split('id="ds-toy"')[1].split("</section>")[0]
    # quality at equal training seconds (bench.report.equal_time): nb's snapshots end at 8 s (seed 0,
    # its final MMD 0.09) and 16 s (seed 1); at their median, 12 s, seed 1 had reached 0.1 at 8 s
    equal = page.split('id="equal-seconds-toy"')[1].split("</table>")[0]
    assert "at 12 s (nb)" in equal and f"0.095 ± {np.std([0.09, 0.1], ddof=1):.3f}<" in equal


def test_one_section_per_dataset(tmp_path):
    with fill_store(tmp_path / "r", datasets=("pbmc 3k", "brain/small")) as store:
        page = bhtml.render(store)
        assert_tables_match_console(page, store)
    assert_sections(page, ["pbmc 3k", "brain/small"])
    assert 'id="ds-pbmc-3k"' in page and 'id="ds-brain-small"' in page
    assert len(decode_images(page)) == 2 * len(FIGURE_SECTIONS)


def test_tables_are_the_console_numbers(rendered):
    page, run_dir = rendered
    with Store(run_dir, create=False) as store:
        assert_tables_match_console(page, store)
    # independently: nb's AUC over the two seeds is 0.85 ± 0.0707
    assert ">0.850 ± 0.071<" in page and ">0.510 ± 0.014<" in page
    # Fig. 7 table: nb augmented at 0.1 = mean(0.9, 0.95)
    assert ">0.925 ± 0.035<" in page
    # the suite's tables: nb's worst type has AUC 0.3 (raw value shown, column marked →0.5)
    assert "auc_type_worst (→0.5)" in page and ">0.300 ± 0.000<" in page
    # scaled AUC (|AUC - 0.5| between real and shuffled): seed 0 (0.5 - 0.3) / 0.5 = 0.4, seed 1
    # (0.5 - 0.4) / (0.5 - 0.02) = 0.2083 -> 0.304 ± 0.136; per-type worst: 0.3 / 0.45 = 0.667
    assert rpt.SCALED_TITLE in page and ">0.304 ± 0.136<" in page and ">0.667 ± 0.000<" in page


def test_per_type_heatmap_colours_auc_by_its_distance_to_one_half(filled):
    from bench.metrics.figures.suite import fig_per_type, per_type_matrix

    run = RunView(filled)
    _, keys = run.figure_tasks("toy", "per_type", "types")
    fig = fig_per_type(run, keys, "toy")
    auc_ax = next(ax for ax in fig.axes if ax.get_title().startswith("RF AUC"))
    shown = np.ma.filled(auc_ax.images[0].get_array(), np.nan)
    models, _, auc = per_type_matrix(run, keys, "auc")
    np.testing.assert_allclose(shown, np.abs(auc - 0.5))
    nb = shown[models.index("nb")]
    assert nb[0] == pytest.approx(nb[1]) == pytest.approx(0.2)  # 0.3 is coloured as badly as 0.7
    assert auc_ax.images[0].norm.vmin == 0.0 and auc_ax.images[0].norm.vmax == 0.5


def test_provenance_and_failed_tasks(rendered):
    page, _ = rendered
    prov = page.split('id="provenance"')[1]
    for text in ("abc123", "bench run --models nb &lt;script&gt;", "numpy 1.26", "box", "0, 1", "quick"):
        assert text in prov, text
    tasks = page.split('id="tasks"')[1]
    assert "CUDA &lt;oops&gt; &amp; out of memory" in tasks and "activa" in tasks
    assert "<oops>" not in page  # escaped everywhere


def test_missing_artifacts_give_notes_not_errors(tmp_path):
    with fill_store(tmp_path / "r", with_embedding=False, failed=False) as store:
        page = bhtml.render(store)
    assert "no embedding artifacts" in page
    assert len(IMG_RE.findall(page)) == len(FIGURE_SECTIONS) - 2  # UMAP and markers left out
    with Store(tmp_path / "empty") as store:
        page = bhtml.render(store)
    assert "no finished task" in page and not IMG_RE.findall(page)


def test_captions_follow_the_recorded_options(rendered, tmp_path):
    """Each figure's caption is its metric's declaration filled with the options recorded with the
    values: the defaults when a task records none, the user's when a run changed them."""
    default = rendered[0]
    for text in ("top 5 DE genes per cluster (wilcoxon test", "k-NN balls (k = 5)", "fewer than 10 cells",
                 "top 20 DE genes", "UMAP (n_neighbors 15, min_dist 0.5)", "5-fold cross-validated random forest (1000 trees"):  # fmt: skip
        assert text in default, text
    options = {"correlation_discrepancy": {"n_genes": 7, "method": "t-test"}, "prdc": {"k": 9},
               "per_type": {"min_cells": 25}, "de_recovery": {"top_k": 12}, "embedding": {"n_neighbors": 30},
               "auc": {"folds": 3, "n_trees": 200}}  # fmt: skip
    with fill_store(tmp_path / "run", options=options, failed=False) as store:
        page = bhtml.render(store)
    for text in ("top 7 DE genes per cluster (t-test test", "k-NN balls (k = 9)", "fewer than 25 cells",
                 "top 12 DE genes", "UMAP (n_neighbors 30, min_dist 0.5)", "3-fold cross-validated random forest (200 trees"):  # fmt: skip
        assert text in page, text
    assert "top 5 DE genes" not in page and "(k = 5)" not in page


def test_output_path_option(filled, tmp_path):
    out = bhtml.write_html(filled, filled.run_dir, out=tmp_path / "sub" / "paper.html")
    assert out == tmp_path / "sub" / "paper.html" and out.read_text().rstrip().endswith("</html>")
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)


def test_combine_corr_generated_below_real_above():
    m = figures.combine_corr(REAL_CORR, GEN_CORR)
    assert m[0, 1] == pytest.approx(0.8) and m[1, 0] == pytest.approx(0.5)  # upper real, lower generated
    assert m[2, 1] == pytest.approx(-0.4) and m[1, 2] == pytest.approx(0.1)
    np.testing.assert_array_equal(np.diag(m), 1.0)


def test_interp_roc_known_curve():
    fpr = np.array([0.0, 0.0, 0.5, 1.0])
    tpr = np.array([0.0, 0.5, 1.0, 1.0])
    grid = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(figures.interp_roc(fpr, tpr, grid), [0.5, 0.75, 1.0, 1.0, 1.0])


def test_augmentation_frame_mean_and_range(filled):
    agg = figures.augmentation_frame(RunView(filled), "toy")
    row = agg[(agg.model == "nb") & (agg.cond == "augmented") & (agg.frac == 0.01)].iloc[0]
    assert row["mean"] == pytest.approx(0.425) and row["min"] == pytest.approx(0.4)
    assert row["max"] == pytest.approx(0.45) and row["count"] == 2


def test_cli_report_html(filled, tmp_path, capsys):
    from bench.cli import main

    filled.close()
    assert main(["report", str(tmp_path / "run"), "--html"]) == 0
    assert (tmp_path / "run" / "report.html").is_file()
    assert main(["report", str(tmp_path / "run"), "--html", "-o", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").is_file()


def test_cli_report_html_builds_the_tables_once(filled, tmp_path, monkeypatch):
    """`bench report --html` builds the store's tables once, for the console, the files and the page."""
    import bench.report
    import bench.report.tables as tables
    import bench.report.view as view
    from bench.cli import main

    calls = []

    def counted(store, run_id=None):
        calls.append(run_id)
        return tables.build(store, run_id)

    for module in (bench.report, bhtml, view):
        monkeypatch.setattr(module, "build", counted)
    filled.close()
    assert main(["report", str(tmp_path / "run"), "--html"]) == 0
    assert (tmp_path / "run" / "report.html").is_file() and calls == [None]


# -- headless Chromium ----------------------------------------------------------------------------
def _chromium() -> str | None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None and os.environ.get("BENCH_REQUIRE_CHROMIUM") == "1":
        pytest.fail("headless Chromium is required (BENCH_REQUIRE_CHROMIUM=1) but not installed")
    return exe


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]  # fmt: skip
# the page has no script, so any console message at all is a fault
CONSOLE_ERROR = re.compile(r"Uncaught|:CONSOLE[:(]|Failed to load resource|net::ERR_")


def open_in_chromium(exe: str, page: Path, tmp: Path, shot_name: str) -> tuple[str, Path]:
    """Render ``page`` headless: returns the DOM and the screenshot path; fails on console errors."""
    url = page.resolve().as_uri()
    common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = tmp / shot_name
    cap = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1400,4000", url],
                         capture_output=True, text=True, timeout=180)  # fmt: skip
    assert cap.returncode == 0 and shot.is_file(), cap.stderr[-2000:]
    for err in (dom.stderr, cap.stderr):
        bad = [line for line in err.splitlines() if CONSOLE_ERROR.search(line)]
        assert not bad, bad
    artifacts = os.environ.get("BENCH_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot_name)
        shutil.copy(page, Path(artifacts) / shot_name.replace(".png", ".html"))
    return dom.stdout, shot


def _check_rendered(dom: str, shot: Path, datasets: list[str]) -> None:
    from PIL import Image

    assert_sections(dom, datasets)
    assert dom.count("<img") >= 1
    im = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert im.shape == (4000, 1400) and im.std() > 10  # something was drawn


def test_opens_in_headless_chromium(filled, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed")
    out = bhtml.write_html(filled, filled.run_dir)
    dom, shot = open_in_chromium(exe, out, tmp_path, "report-filled.png")
    # wide tables scroll inside their own box: the document never runs past the window's edge
    from chromium_helpers import widths

    for width in (1400, 900):
        scroll, view = widths(exe, out, width, tmp_path)
        assert scroll <= view, f"at {width} px the document is {scroll} px wide in a {view} px window"
    _check_rendered(dom, shot, ["toy"])


def test_chromium_check_catches_console_errors(tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed")
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body id="summary"><script>throw new Error("boom")</script></body></html>')
    with pytest.raises(AssertionError, match="boom"):
        open_in_chromium(exe, bad, tmp_path, "bad.png")


# -- end to end: a real (small) run, then the report ----------------------------------------------
def _small_h5ad(path: Path) -> Path:
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    n, g, k = 450, 80, 3  # 15 test cells per type: enough for the per-type metrics (>= 10 a side)
    labels = np.array([f"type{i % k}" for i in range(n)])
    mu = np.full((n, g), 2.0)
    for t in range(k):
        mu[labels == f"type{t}", t * 25 : t * 25 + 25] = 10.0
    a = ad.AnnData(X=sp.csr_matrix(rng.poisson(mu).astype(np.float32)),
                   obs=pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(n)]))  # fmt: skip
    a.var_names = [f"gene{j}" for j in range(g)]
    a.write_h5ad(path)
    return path


@pytest.mark.slow
def test_report_from_a_real_run(tmp_path):
    from bench.cli import main

    data = _small_h5ad(tmp_path / "small.h5ad")
    run_dir = tmp_path / "run"
    args = ["run", "--models", "nb", "--dataset", str(data), "--label-key", "cell_type", "--seeds", "0,1",
            "--out", str(run_dir)]  # fmt: skip
    assert main(args) == 0
    assert main(["report", str(run_dir), "--html"]) == 0
    page = (run_dir / "report.html").read_text()
    with Store(run_dir, create=False) as store:
        datasets = sorted(set(store.values().dataset))
        assert_tables_match_console(page, store)
        # the embedding metric ran for nb and the two controls, both seeds
        emb = store.values().query("metric == 'embedding_cells'")
        assert len(emb) == 6
    assert_sections(page, datasets)
    # nb is not trained iteratively: no training snapshots, a note instead of the convergence figure
    assert len(decode_images(page)) == (len(FIGURE_SECTIONS) - 1) * len(datasets)
    assert "no training snapshots" in page
    assert_self_contained(page)
    exe = _chromium()
    if exe is not None:
        dom, shot = open_in_chromium(exe, run_dir / "report.html", tmp_path, "report-e2e.png")
        _check_rendered(dom, shot, datasets)


def test_a_plugin_metrics_declared_figure_is_drawn(tmp_path):
    """A metric the report does not know (a plugin's) declares a figure with a ``draw`` callable
    (FigureSpec.draw): the page has its section, title, caption and image; a draw that finds nothing
    or fails leaves a note, not an error."""
    from bench import registry
    from bench.api import Drawing, FigureSpec, Metric, MetricOutput

    def drawn(view, dataset):  # a figure of one task and seed: the caption says the seed
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3, 2))
        fig.add_subplot().plot([0, 1], [1, 0])
        return Drawing(fig, tuple(view.main_tasks(dataset).key[:1]), seed=0)

    def draw(view, dataset):
        from matplotlib.figure import Figure

        v = view.values[(view.values.dataset == dataset) & (view.values.metric == "mmd")]
        fig = Figure(figsize=(3, 2))
        fig.add_subplot().bar(range(len(v)), v.value)
        return fig

    def broken(view, dataset):
        raise RuntimeError("no such array")

    metric = Metric(
        name="plugin_metric",
        func=lambda ctx, cells, *, seed, k=3: MetricOutput(values={}),
        options={"k": 3},
        figures=(
            FigureSpec("plugin_bars", "Plugin bars", "MMD of every task, k = {k}.", draw=draw),
            FigureSpec("plugin_empty", "Plugin empty", "Nothing.", draw=lambda view, dataset: None),
            FigureSpec("plugin_broken", "Plugin broken", "Fails.", draw=broken),
            # in the paper's part, between the ROC (order 30) and the correlation (40)
            FigureSpec(
                "plugin_paper", "Plugin paper", "One seed, k = {k}.", draw=drawn, part="paper", order=35
            ),
            FigureSpec(
                "plugin_note", "Plugin note", "-", draw=lambda v, d: "why not", part="paper", order=36
            ),
        ),
    )
    registry.register("metrics", metric.name, metric)
    try:
        with fill_store(tmp_path / "run") as store:
            page = bhtml.render(store)
    finally:
        registry._EXTRA["metrics"].pop(metric.name)
    section = page.split('id="plugin_bars-toy"', 1)[1].split("<h3", 1)[0]
    assert ">Plugin bars</h3>" in section and "MMD of every task, k = 3." in section
    assert len(IMG_RE.findall(section)) == 1
    empty = page.split('id="plugin_empty-toy"', 1)[1].split("<h3", 1)[0]
    assert "nothing to draw for toy (metric plugin_metric)" in empty and not IMG_RE.findall(empty)
    failed = page.split('id="plugin_broken-toy"', 1)[1].split("</section>", 1)[0]
    assert "could not draw this figure: RuntimeError: no such array" in failed
    order = [page.index(f'id="{sec}-toy"') for sec in ("roc", "plugin_paper", "plugin_note", "correlation")]
    assert order == sorted(order) and order[-1] < page.index('id="suite-toy"')
    paper = page.split('id="plugin_paper-toy"', 1)[1].split("<h3", 1)[0]
    assert "One seed, k = 3. Seed 0." in paper and len(IMG_RE.findall(paper)) == 1
    assert '<p class="note">why not</p>' in page.split('id="plugin_note-toy"', 1)[1].split("<h3", 1)[0]
