"""The augmentation experiment and the timing metric, with fake generators (tiny data, seconds)."""

from __future__ import annotations

import time

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from bench.metrics import AUGMENTATION, TIMING, augmentation, downsample_rare, measure, timing

from bench.errors import UserError
from bench.evaluation import EvalContext


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
    assert quick["fractions"] == (0.1, 0.01) and quick["n_trees"] == 200
    assert AUGMENTATION.kind == "experiment" and AUGMENTATION.requires_conditional
    assert AUGMENTATION.experiment == "augmentation"


# -- timing -----------------------------------------------------------------------------------------
class SleepyGenerator:
    """Takes 1 ms per 1,000 cells."""

    def __init__(self):
        self.generated = 0

    def time_generation(self, n_cells, *, seed, chunk=10_000):
        start = time.perf_counter()
        time.sleep(n_cells / 1e6)
        self.generated += n_cells
        return time.perf_counter() - start


def test_timing_values_and_scaling():
    gen = SleepyGenerator()
    values = timing(
        gen, {"train_seconds": 12.5, "peak_rss_mb": 300.0, "peak_gpu_mb": None}, seed=0, n_cells=20_000
    )
    assert gen.generated == 20_000
    assert values["train_seconds"] == 12.5 and values["peak_rss_mb"] == 300.0
    assert "peak_gpu_mb" not in values
    assert values["generate_cells_timed"] == 20_000
    # 20 ms for 20,000 cells -> ~100 ms per 100,000
    assert 0.09 < values["generate_seconds_per_100k"] < 0.5
    out = TIMING.func(None, gen, {"train_seconds": 1.0}, seed=0, **TIMING.options_for("quick"))
    assert out.values["generate_cells_timed"] == 10_000 and out.info["generate_scaled_from"] == 10_000
    assert set(out.values) - {"generate_cells_timed"} <= set(TIMING.directions)
    assert TIMING.options["n_cells"] == 100_000


def test_measure_time_and_peak_memory():
    def work():
        block = np.ones((4096, 4096))  # 128 MiB
        time.sleep(0.2)
        return float(block.sum())

    import psutil

    before = psutil.Process().memory_info().rss / 2**20
    result, seconds, peak_rss, peak_gpu = measure(work, interval=0.01)
    assert result == 4096 * 4096
    assert 0.2 <= seconds < 5
    assert peak_rss >= before + 100  # the 128 MiB block was seen
    assert peak_gpu is None or peak_gpu >= 0


def test_augmentation_fraction_whose_generation_fails_reports_nan_and_why():
    """A generator that cannot produce the rare class from 2 cells: that fraction's generated arms
    are NaN (n/a in the tables) with the reason in info; the real-only arm and other fractions stay."""
    from bench.errors import TaskFailed

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
