"""The augmentation experiment and the timing metric, with fake generators (tiny data, seconds)."""

from __future__ import annotations

import time

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from bench.api.errors import UserError
from bench.evaluation import EvalContext
from bench.metrics import AUGMENTATION, TIMING, augmentation, downsample_rare, timing
from bench.store import legacy_params
from bench.timing import GenerationTiming, measure, time_generation


def make_counts(n_per_class, n_genes=30, seed=0, fold=6.0):
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(123).gamma(2.0, 1.0, size=n_genes)
    labels, rows = [], []
    for c, n in enumerate(n_per_class):
        mu = base.copy()
        mu[c * 4 : c * 4 + 4] *= fold  # four marker genes per class
        rows.append(rng.poisson(mu * 3, size=(n, n_genes)))
        labels += [f"type{c}"] * n
    return np.vstack(rows).astype(np.float32), np.array(labels)


def to_adata(counts, labels, prefix):
    tot = counts.sum(1, keepdims=True)
    X = np.where(tot > 0, counts * 20_000 / np.where(tot > 0, tot, 1), 0).astype(np.float32)
    a = ad.AnnData(X=sp.csr_matrix(X))
    a.layers["counts"] = sp.csr_matrix(counts)
    a.var_names = [f"g{i}" for i in range(counts.shape[1])]
    a.obs_names = [f"{prefix}{i}" for i in range(len(labels))]
    a.obs["cell_type"] = labels
    return a


def make_ctx(fold):
    c, y = make_counts([300, 200, 200], seed=1, fold=fold)
    ct, yt = make_counts([60, 40, 40], seed=2, fold=fold)
    return EvalContext(
        "toy", to_adata(c, y, "c"), to_adata(ct, yt, "t"), "cell_type", rare_class="type0", seed=0
    )


@pytest.fixture(scope="module")
def ctx():
    return make_ctx(fold=6.0)


class CopyRareCells:
    """A perfect conditional 'generator': returns copies of the full data's real rare training
    cells (library-size scale), and records what it was trained on."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.calls = []

    def __call__(self, train_subset, request, seed):
        self.calls.append((train_subset, dict(request), seed))
        ((rare, n),) = request.items()
        pool = self.ctx.train[self.ctx.train.obs["cell_type"] == rare]
        idx = np.random.default_rng(seed).choice(pool.n_obs, size=n, replace=True)
        out = ad.AnnData(X=pool.X[idx].copy())
        out.var_names = pool.var_names
        out.obs["cell_type"] = [rare] * n
        out.uns["scgenbench"] = {"output_scale": "library-size-20000"}
        return out


def test_downsample_rare_counts():
    labels = np.array(["a"] * 200 + ["b"] * 50 + ["c"] * 7)
    for fraction, expected in ((0.1, 20), (0.05, 10), (0.01, 2), (0.005, 1), (0.001, 1)):
        kept = downsample_rare(labels, "a", fraction, seed=0)
        got = labels[kept]
        assert (got == "a").sum() == expected
        assert (got == "b").sum() == 50 and (got == "c").sum() == 7
    assert (downsample_rare(labels, "a", 0.1, seed=0) == downsample_rare(labels, "a", 0.1, seed=0)).all()
    assert not (downsample_rare(labels, "a", 0.1, seed=0) == downsample_rare(labels, "a", 0.1, seed=1)).all()
    with pytest.raises(UserError):
        downsample_rare(labels, "zzz", 0.1, seed=0)
    with pytest.raises(UserError):
        downsample_rare(labels, "a", 0.0, seed=0)


def test_augmentation_protocol_and_sizes(ctx):
    fake = CopyRareCells(ctx)
    out = AUGMENTATION.func(ctx, fake, seed=3, fractions=(0.1, 0.01), n_generated=100, n_trees=30)
    assert [c[1] for c in fake.calls] == [{"type0": 100}, {"type0": 100}]
    for (subset, _, seed), fraction in zip(fake.calls, (0.1, 0.01), strict=True):
        counts = subset.obs["cell_type"].value_counts()
        assert counts["type0"] == max(1, round(fraction * 300))
        assert counts["type1"] == 200 and counts["type2"] == 200
        assert seed == 3
        assert "counts" in subset.layers  # the generator gets the training schema
    v = out.values
    assert v["n_rare_train@0.1"] == 30 and v["n_rare_train@0.01"] == 3
    for tag in ("0.1", "0.01"):
        for kind in ("real", "oversampled", "augmented"):
            assert 0.0 <= v[f"f1_{kind}@{tag}"] <= 1.0
        assert v[f"f1_gain@{tag}"] == pytest.approx(v[f"f1_augmented@{tag}"] - v[f"f1_real@{tag}"])
    assert out.info["rare_class"] == "type0" and out.info["space"] == "genes"
    for name in v:
        if not name.startswith("n_rare_train"):
            assert AUGMENTATION.direction_of(name) == "higher"
    assert AUGMENTATION.direction_of("f1_augmented@0.2") == "higher"
    assert AUGMENTATION.direction_of("n_rare_train@0.1") is None
    # every value's parameters come as data, and equal what the store derives from a name it wrote
    # before values had params (bench.store.legacy_params)
    assert out.params["f1_augmented@0.01"] == {
        "condition": "augmented",
        "fraction": 0.01,
        "cell_type": "type0",
    }
    assert out.params["n_rare_train@0.1"] == {"fraction": 0.1, "cell_type": "type0"}
    assert set(out.params) == set(v)
    for name in v:
        assert (
            legacy_params(name, "augmentation", {"metrics": {"augmentation": out.info}}) == out.params[name]
        )


def test_perfect_augmentation_helps_on_an_easy_case():
    # weak markers (x2): 3 real rare cells are too few (F1 ~0.15-0.55 over these seeds), copies of
    # real rare cells as "generated" cells fix it (F1 ~0.97); oversampling the 3 cells does not
    ctx = make_ctx(fold=2.0)
    aug, real, over = [], [], []
    for seed in range(3):
        out = AUGMENTATION.func(
            ctx, CopyRareCells(ctx), seed=seed, fractions=(0.01,), n_generated=150, n_trees=50
        )
        aug.append(out.values["f1_augmented@0.01"])
        real.append(out.values["f1_real@0.01"])
        over.append(out.values["f1_oversampled@0.01"])
    assert np.mean(aug) > 0.9
    assert np.mean(aug) - np.mean(real) > 0.2
    assert np.mean(aug) > np.mean(over)


def test_augmentation_pure_function_with_arrays():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(400, 5)), rng.normal(size=(100, 5)) + 2]
    y = np.array(["rest"] * 400 + ["rare"] * 100)
    Xt = np.r_[rng.normal(size=(100, 5)), rng.normal(size=(25, 5)) + 2]
    yt = np.array(["rest"] * 100 + ["rare"] * 25)
    seen = []

    def generate(kept, fraction):
        seen.append((fraction, int((y[kept] == "rare").sum())))
        return rng.normal(size=(200, 5)) + 2

    res = augmentation(X, y, Xt, yt, "rare", generate, seed=0, fractions=(0.1, 0.02), n_trees=50)
    assert seen == [(0.1, 10), (0.02, 2)]
    assert res.values["f1_augmented@0.02"] > 0.8


def test_augmentation_default_and_quick_options():
    assert AUGMENTATION.options["fractions"] == (0.1, 0.05, 0.01, 0.005)
    assert AUGMENTATION.options["n_generated"] == 1500 and AUGMENTATION.options["n_trees"] == 1000
    quick = AUGMENTATION.options_for("quick")
    # the quick profile refits twice: the two ends of the paper's range; the smallest (which picks the
    # rare class) is the paper's, so quick and standard runs downsample the same class
    assert quick["fractions"] == (0.1, 0.005) and quick["n_trees"] == 200
    assert AUGMENTATION.options_for("standard")["fractions"] == (0.1, 0.05, 0.01, 0.005)
    assert AUGMENTATION.options_for("paper")["fractions"] == (0.1, 0.05, 0.01, 0.005)
    assert AUGMENTATION.kind == "experiment" and AUGMENTATION.requires_conditional
    assert AUGMENTATION.experiment == "augmentation"


# -- timing -----------------------------------------------------------------------------------------
def sleepy_generate(n_cells, seed):
    """Takes 1 ms per 1,000 cells; reports its own time as a container entry point does."""
    time.sleep(n_cells / 1e6)
    out = ad.AnnData(X=np.zeros((n_cells, 1), np.float32))
    out.uns["scgenbench"] = {"generate_seconds": n_cells / 2e6}  # half the wall time
    return out


def test_time_generation_chunks_and_own_time():
    calls = []

    def generate(k, seed):
        calls.append((k, seed))
        return sleepy_generate(k, seed)

    t = time_generation(generate, 25_000, seed=10, chunk=10_000)
    assert calls == [(10_000, 10), (10_000, 10_010), (5_000, 20_010)]  # seed + cells done
    assert t.n_cells == 25_000 and t.chunk == 10_000
    assert t.wall_seconds >= 0.025 and t.own_seconds == pytest.approx(0.0125)
    # a chunk without a reported time: no own time at all
    t = time_generation(lambda k, s: ad.AnnData(X=np.zeros((k, 1))), 20, seed=0, chunk=10)
    assert t.own_seconds is None


def test_timing_values_and_scaling():
    fit = {"train_seconds": 12.5, "fit_wall_seconds": 20.0, "peak_rss_mb": 300.0, "peak_gpu_mb": None,
           "train_steps": 400, "cells_seen": 51_200}  # fmt: skip
    values = timing(fit, GenerationTiming(wall_seconds=0.02, own_seconds=0.01, n_cells=20_000, chunk=10_000))
    assert values["train_seconds"] == 12.5 and values["fit_wall_seconds"] == 20.0
    assert values["peak_rss_mb"] == 300.0 and "peak_gpu_mb" not in values
    assert values["train_steps"] == 400 and values["cells_seen"] == 51_200
    assert values["generate_cells_timed"] == 20_000
    # 10 ms (own) and 20 ms (wall) for 20,000 cells -> 50 and 100 ms per 100,000
    assert values["generate_seconds_per_100k"] == pytest.approx(0.05)
    assert values["generate_wall_seconds_per_100k"] == pytest.approx(0.1)
    # without an own time, the wall time is the generation time
    values = timing({"train_seconds": 1.0}, GenerationTiming(0.02, None, 20_000, 10_000))
    assert values["generate_seconds_per_100k"] == pytest.approx(0.1)
    # the adapter asks the runner's time_generation for the profile's cell count
    asked = []

    def timer(n):
        asked.append(n)
        return time_generation(sleepy_generate, n, seed=0)

    out = TIMING.func(
        None, {"train_seconds": 1.0, "time_generation": timer}, seed=0, **TIMING.options_for("quick")
    )
    assert asked == [10_000]
    assert out.values["generate_cells_timed"] == 10_000 and out.info["generate_scaled_from"] == 10_000
    assert set(out.values) - {"generate_cells_timed"} <= set(TIMING.directions)
    assert TIMING.options["n_cells"] == 100_000  # the paper profile times the paper's 100,000
    assert TIMING.options_for("standard")["n_cells"] == 10_000 == TIMING.options_for("quick")["n_cells"]
    assert TIMING.options_for("paper")["n_cells"] == 100_000


def test_measure_time_and_peak_memory():
    def work():
        block = np.ones((4096, 4096))  # 128 MiB
        time.sleep(0.2)
        return float(block.sum())

    m = measure(work, interval=0.01)
    assert m.result == 4096 * 4096
    assert 0.2 <= m.seconds < 5
    assert 100 <= m.peak_rss_mb < 400  # the 128 MiB block, not the whole process
    assert m.peak_gpu_mb is None or m.peak_gpu_mb >= 0


def test_measure_is_the_calls_own_memory_not_the_process():
    """Memory held before the call does not count: the same work measures the same with and
    without 512 MiB already resident (issue 13: nb showed 728 MB after one task, 419 after another)."""

    def work():
        block = np.ones((2048, 4096))  # 64 MiB
        time.sleep(0.1)
        return block.size

    alone = measure(work, interval=0.01).peak_rss_mb
    ballast = np.ones((8192, 8192))  # 512 MiB resident during the second measurement
    with_ballast = measure(work, interval=0.01).peak_rss_mb
    assert ballast.sum() > 0
    assert abs(with_ballast - alone) < 48 and 50 < alone < 200


def test_measure_counts_a_child_process_memory():
    """Container and process backends run the model in a child: its RSS counts (the sampler reads
    the known children every sample and looks for new ones every second)."""
    import subprocess
    import sys

    code = "import numpy as np, time; b = np.ones((4096, 4096)); time.sleep(2.0); print(b.sum())"
    m = measure(
        lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True), interval=0.02
    )
    assert 100 <= m.peak_rss_mb < 600  # the child's 128 MiB block (+ its interpreter and numpy)


def test_augmentation_fraction_whose_generation_fails_reports_nan_and_why():
    """A generator that cannot produce the rare class from 2 cells: that fraction's generated arms
    are NaN (n/a in the tables) with the reason in info; the real-only arm and other fractions stay."""
    from bench.api.errors import TaskFailed

    rng = np.random.default_rng(1)
    X = np.r_[rng.normal(size=(400, 5)), rng.normal(size=(100, 5)) + 2]
    y = np.array(["rest"] * 400 + ["rare"] * 100)
    Xt = np.r_[rng.normal(size=(100, 5)), rng.normal(size=(25, 5)) + 2]
    yt = np.array(["rest"] * 100 + ["rare"] * 25)

    def generate(kept, fraction):
        if fraction < 0.05:
            raise TaskFailed("could not generate {'rare': 200} cells")
        return rng.normal(size=(200, 5)) + 2

    res = augmentation(X, y, Xt, yt, "rare", generate, seed=0, fractions=(0.1, 0.02), n_trees=50)
    assert res.values["f1_augmented@0.1"] > 0.8
    assert np.isnan(res.values["f1_augmented@0.02"]) and np.isnan(res.values["f1_gain@0.02"])
    assert 0.0 <= res.values["f1_real@0.02"] <= 1.0
    assert np.isnan(res.values["f1_oversampled@0.02"])  # no count to oversample to was given
    assert "could not generate" in res.info["generation_failed"]["0.02"]
    # with the requested count known, the generator-free oversampling arm is still measured
    res = augmentation(X, y, Xt, yt, "rare", generate, seed=0, fractions=(0.1, 0.02), n_trees=50,
                       n_oversample=200)  # fmt: skip
    assert 0.0 <= res.values["f1_oversampled@0.02"] <= 1.0
    assert np.isnan(res.values["f1_augmented@0.02"])


# -- the default rare class and fractions ---------------------------------------------------------
PBMC3K_TRAIN = {"CD4 T": 1042, "CD14 Monocytes": 438, "B": 321, "CD8 T": 296, "FCGR3A Monocytes": 144,
                "NK": 144, "Dendritic": 32, "Megakaryocytes": 12}  # fmt: skip
PBMC3K_TEST = {k: max(1, round(v / 9)) for k, v in PBMC3K_TRAIN.items()}


def test_default_rare_class_keeps_five_cells_at_the_smallest_fraction():
    from bench.metrics import PAPER_FRACTIONS, choose_rare_class, kept_rare_cells

    rare, fractions, why = choose_rare_class(PBMC3K_TRAIN, PBMC3K_TEST, PAPER_FRACTIONS)
    assert rare == "CD4 T" and fractions == (0.1, 0.05, 0.01, 0.005) and "5 of 1042" in why
    assert kept_rare_cells(321, 0.01) == 3 and kept_rare_cells(321, 0.005) == 2  # B: why not B
    # larger fractions admit smaller classes: the smallest that keeps 5 at 10 % (50 cells)
    assert choose_rare_class(PBMC3K_TRAIN, PBMC3K_TEST, (0.5, 0.1))[0] == "FCGR3A Monocytes"
    # a class without test cells is never chosen
    assert choose_rare_class({**PBMC3K_TRAIN, "X": 2000}, PBMC3K_TEST)[0] == "CD4 T"
    # nothing large enough: the largest class, dropping the fractions that keep < 5 of it
    rare, fractions, why = choose_rare_class({"a": 300, "b": 120}, {"a": 30, "b": 12})
    assert rare == "a" and fractions == (0.1, 0.05) and "0.01, 0.005 dropped" in why
    rare, fractions, _ = choose_rare_class({"a": 20, "b": 10}, {"a": 2, "b": 1})
    assert rare == "a" and fractions == (0.1,)  # the largest fraction always stays


def test_plan_applies_the_rule_and_the_users_choice(tmp_path):
    from bench.config import build_spec
    from bench.planning import plan

    the_plan = plan(build_spec(None, models=["nb"], experiments=["augmentation"], metrics=["augmentation"]))
    aug = [t for t in the_plan.tasks if t.experiment == "augmentation"]
    assert {t.rare_class for t in aug} == {"CD4 T"}
    assert aug[0].metrics["augmentation"]["fractions"] == (0.1, 0.005)  # quick: the two ends
    assert any("rare class 'CD4 T' (the smallest class keeping" in line for line in the_plan.header)
    standard = plan(build_spec(None, models=["nb"], experiments=["augmentation"], metrics=["augmentation"],
                               profile="standard"))  # fmt: skip
    aug = [t for t in standard.tasks if t.experiment == "augmentation"]
    assert {t.rare_class for t in aug} == {"CD4 T"}  # the same class as quick: the same smallest fraction
    assert aug[0].metrics["augmentation"]["fractions"] == (0.1, 0.05, 0.01, 0.005)
    # the user's choice stands, with a note on the fractions that keep fewer than 5 cells
    the_plan = plan(build_spec(None, models=["nb"], experiments=["augmentation"], metrics=["augmentation"],
                               rare_class="B", profile="standard"))  # fmt: skip
    assert {t.rare_class for t in the_plan.tasks} == {"B"}
    assert any("0.01 keeps 3, 0.005 keeps 2" in note for note in the_plan.skipped)
    assert "  augmentation: rare class 'B' (--rare-class)" in the_plan.header


def test_fractions_from_the_command_line(tmp_path):
    from bench.cli import build_parser
    from bench.config import build_spec, parse_list

    args = build_parser().parse_args(["run", "--models", "nb", "--fractions", "0.2,0.1", "--rare-class", "B"])
    spec = build_spec(None, models=parse_list(args.models), fractions=parse_list(args.fractions, float),
                      rare_class=args.rare_class)  # fmt: skip
    assert spec.metric_options["augmentation"]["fractions"] == (0.2, 0.1) and spec.rare_class == "B"


def test_measure_leaves_out_a_child_that_was_running_before_the_call():
    """A child process alive before the measured call (a worker pool an earlier task left) is not the
    call's memory, even when it grows during the call."""
    import subprocess
    import sys

    grow = "import numpy as np, time; time.sleep(0.5); b = np.ones((4096, 8192)); time.sleep(3.0)"
    earlier = subprocess.Popen([sys.executable, "-c", grow])
    try:
        m = measure(lambda: time.sleep(2.5), interval=0.02)
    finally:
        earlier.wait()
    assert m.peak_rss_mb < 50  # the earlier child's 256 MiB block is not counted
