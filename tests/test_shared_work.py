"""Model-independent work done once per run (bench.evaluation.SharedWork): kept on disk, keyed by
the data's content hash and the scoring code, reused by every task, process and model; the
augmentation experiment's real-only and oversampled arms among it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.evaluation import EvalContext, SharedWork
from bench.metrics import augmentation

sys.path.insert(0, str(Path(__file__).parent))
from test_metrics_experiments import make_counts, to_adata  # noqa: E402


def test_persisted_entries_survive_a_new_process_and_stay_in_their_namespace(tmp_path):
    work = SharedWork()
    work.attach(tmp_path, "data-A|scoring-1")
    work[("pca", 0)] = {"components": np.arange(6.0)}
    work["train_log"] = "memory only"  # not worth a file
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("pca-")

    again = SharedWork()  # another task or Slurm job: a fresh object over the same folder
    again.attach(tmp_path, "data-A|scoring-1")
    assert ("pca", 0) in again
    np.testing.assert_array_equal(again[("pca", 0)]["components"], np.arange(6.0))
    assert "train_log" not in again and again.get("train_log", 7) == 7

    for namespace in ("data-B|scoring-1", "data-A|scoring-2"):  # other data, other scoring code
        other = SharedWork()
        other.attach(tmp_path, namespace)
        assert ("pca", 0) not in other


def test_a_damaged_file_is_recomputed(tmp_path):
    work = SharedWork()
    work.attach(tmp_path, "ns")
    work[("de_genes", 5, "wilcoxon", 0)] = ["g1", "g2"]
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not a pickle")
    fresh = SharedWork()
    fresh.attach(tmp_path, "ns")
    assert ("de_genes", 5, "wilcoxon", 0) not in fresh


def _ctx(shared_dir, data_hash="h1"):
    c, y = make_counts([300, 200, 200], seed=1)
    ct, yt = make_counts([60, 40, 40], seed=2)
    ctx = EvalContext("toy", to_adata(c, y, "c"), to_adata(ct, yt, "t"), "cell_type", seed=0)
    ctx.share_on_disk(shared_dir, data_hash)
    return ctx


def test_evaluation_quantities_are_computed_once_per_run(tmp_path):
    first = _ctx(tmp_path)
    pcs = first.test_pcs
    genes = first.de_genes()
    new_cells = first.train_log[:40]
    projected = first.project(new_cells)
    names = {p.name.split("-")[0] for p in tmp_path.iterdir()}
    assert {"pca", "test_pcs", "de_genes"} <= names
    # a new process: new AnnData objects of the same data; nothing is refit
    second = _ctx(tmp_path)
    calls = []
    second.shared._memory.clear()
    import sklearn.decomposition

    real_fit = sklearn.decomposition.PCA.fit

    def counting_fit(self, *a, **k):
        calls.append(1)
        return real_fit(self, *a, **k)

    sklearn.decomposition.PCA.fit = counting_fit
    try:
        np.testing.assert_array_equal(second.test_pcs, pcs)
        assert second.de_genes() == genes
        # the reloaded PCA projects new (generated) cells to the same bits as the fitted one
        np.testing.assert_array_equal(second.project(new_cells), projected)
    finally:
        sklearn.decomposition.PCA.fit = real_fit
    assert calls == []


def test_augmentation_real_and_oversampled_arms_are_shared_between_models():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(400, 5)), rng.normal(size=(100, 5)) + 2]
    y = np.array(["rest"] * 400 + ["rare"] * 100)
    Xt = np.r_[rng.normal(size=(100, 5)), rng.normal(size=(25, 5)) + 2]
    yt = np.array(["rest"] * 100 + ["rare"] * 25)
    store: dict = {}
    computed: list = []

    def shared(key, compute):
        if key not in store:
            computed.append(key)
            store[key] = compute()
        return store[key]

    def model(shift):
        return lambda kept, fraction: np.random.default_rng(1).normal(size=(200, 5)) + shift

    kwargs = dict(seed=0, fractions=(0.1, 0.02), n_trees=30, shared=shared)
    a = augmentation(X, y, Xt, yt, "rare", model(2.0), **kwargs)
    assert len(computed) == 4  # real and oversampled, per fraction
    b = augmentation(X, y, Xt, yt, "rare", model(-3.0), **kwargs)
    assert len(computed) == 4  # the second model refits only its own (augmented) forests
    alone = augmentation(X, y, Xt, yt, "rare", model(-3.0), seed=0, fractions=(0.1, 0.02), n_trees=30)
    for tag in ("0.1", "0.02"):
        assert a.values[f"f1_real@{tag}"] == b.values[f"f1_real@{tag}"] == alone.values[f"f1_real@{tag}"]
        assert a.values[f"f1_oversampled@{tag}"] == alone.values[f"f1_oversampled@{tag}"]
        assert b.values[f"f1_augmented@{tag}"] == alone.values[f"f1_augmented@{tag}"]
    assert a.values["f1_augmented@0.02"] > b.values["f1_augmented@0.02"]


def test_a_metrics_shared_work_is_namespaced_by_the_metric(tmp_path):
    """Each metric keeps its shared work under its own name (EvalContext.shared_for): the same key
    of two metrics are two entries, and the files on disk are named by the metric."""
    from bench.evaluation import MetricWork

    work = SharedWork()
    work.attach(tmp_path, "data-A|scoring-1")
    mmd, other = MetricWork(work, "mmd"), MetricWork(work, "plugin_metric")
    mmd[("kxx", 1)] = 1.0
    assert ("kxx", 1) in mmd and ("kxx", 1) not in other
    assert other(("kxx", 1), lambda: 2.0) == 2.0 and mmd[("kxx", 1)] == 1.0
    assert sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir()) == [
        "metric-mmd",
        "metric-plugin_metric",
    ]
    fresh = SharedWork()
    fresh.attach(tmp_path, "data-A|scoring-1")
    assert MetricWork(fresh, "mmd").get(("kxx", 1)) == 1.0


class _Payload:
    """Unpickling it creates ``marker``: what a pickle planted in a shared run dir could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_is_never_executed(tmp_path):
    """Issue 32, finding 2: a run dir that someone shared holds a payload pickle under the names
    shared work uses (today's .npz and the former .pkl); resuming reads neither as code."""
    import pickle

    marker = tmp_path / "owned"
    shared = tmp_path / "run" / "shared"
    work = SharedWork()
    work.attach(shared, "ns")
    key = ("de_genes", 5, "wilcoxon", 0)
    work[key] = ["g1", "g2"]
    (path,) = shared.iterdir()
    assert path.suffix == ".npz"
    payload = pickle.dumps(_Payload(marker))
    path.write_bytes(payload)
    path.with_suffix(".pkl").write_bytes(payload)  # where the former code looked
    fresh = SharedWork()
    fresh.attach(shared, "ns")
    assert key not in fresh  # unreadable as arrays: recomputed
    assert not marker.exists()
    # a whole evaluation over a run dir full of planted pickles
    first = _ctx(shared)
    first.test_pcs, first.de_genes()
    for f in list(shared.iterdir()):
        f.write_bytes(payload)
        f.with_suffix(".pkl").write_bytes(payload)
    again = _ctx(shared)
    again.shared._memory.clear()
    np.testing.assert_array_equal(again.test_pcs, first.test_pcs)
    assert again.de_genes() == first.de_genes()
    assert not marker.exists()


def test_every_persisted_kind_round_trips_without_pickle(tmp_path):
    work = SharedWork()
    work.attach(tmp_path, "ns")
    values = {
        ("metric", "mmd", "kxx", "fp", (1.0,), "float32"): 12.5,
        ("metric", "augmentation", "arm", "2", 0, 10, "real", "0.1", 0): 0.75,
        ("test_pcs", 0): np.arange(6, dtype=np.float32).reshape(2, 3),
        ("de_genes", 5, "wilcoxon", 0): ["CD3E", "MS4A1"],
    }
    for k, v in values.items():
        work[k] = v
    again = SharedWork()
    again.attach(tmp_path, "ns")
    for k, v in values.items():
        got = again[k]
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(got, v)
            assert got.dtype == v.dtype
        else:
            assert got == v and type(got) is type(v)
    work[("pca", 1)] = object()  # not an array type: kept in memory only, no file
    assert not list(tmp_path.glob("pca-*"))
