"""The dataset stage's public API: prepare (files, cache), validation errors, info / list."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import bench.datasets as ds
from bench.api.errors import UserError
from bench.datasets import cache, readers

sys.path.insert(0, str(Path(__file__).parent))
from datasets_fixtures import make_counts, write_10x_h5, write_10x_mtx  # noqa: E402


@pytest.fixture
def bench_data(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("BENCH_DATA", str(root))
    return root


def _write(adata: ad.AnnData, path: Path) -> Path:
    adata.write_h5ad(path)
    return path


def test_cache_dir_follows_env(bench_data):
    assert ds.cache_dir() == bench_data


def test_prepare_h5ad_and_cache_hit(bench_data, tmp_path):
    path = _write(make_counts(sizes=(100, 60, 40)), tmp_path / "toy.h5ad")
    first = ds.prepare(str(path), label_key="cell_type", split_seed=0)
    assert first.info["cached"] is False
    assert first.name == "toy" and first.label_key == "cell_type"
    assert (first.train.n_obs, first.test.n_obs) == (180, 20)
    assert first.info["sha256"] == cache.sha256_file(path)
    assert first.info["n_cells_raw"] == 200 and first.info["n_genes"] == 146
    assert first.default_rare_class is None  # a file: the runner's augmentation rule decides
    assert (bench_data / "prepared" / first.hash / "train.h5ad").exists()

    second = ds.prepare(str(path), label_key="cell_type", split_seed=0)
    assert second.info["cached"] is True and second.hash == first.hash
    assert list(second.train.obs_names) == list(first.train.obs_names)
    assert list(second.test.obs_names) == list(first.test.obs_names)
    np.testing.assert_array_equal(second.train.X.toarray(), first.train.X.toarray())
    assert second.train.obs["cell_type"].dtype == "category"
    assert second.train.uns["scgenbench"]["hash"] == first.hash

    other_seed = ds.prepare(str(path), label_key="cell_type", split_seed=1)
    assert other_seed.hash != first.hash and other_seed.info["cached"] is False
    assert set(other_seed.test.obs_names) != set(first.test.obs_names)
    hvg = ds.prepare(str(path), label_key="cell_type", n_top_genes=40)
    assert hvg.hash != first.hash and hvg.train.n_vars == 40
    np.testing.assert_allclose(np.asarray(hvg.test.X.sum(axis=1)).ravel(), 20_000, rtol=1e-5)


def test_prepare_respects_cache_dir_argument(bench_data, tmp_path):
    path = _write(make_counts(), tmp_path / "toy.h5ad")
    p = ds.prepare(str(path), label_key="cell_type", cache_dir=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "prepared" / p.hash / "info.json").exists()
    assert not (bench_data / "prepared").exists()


def test_prepare_published_split_column_respected(bench_data, tmp_path):
    a = make_counts(sizes=(50, 50))
    split = np.array(["train"] * 100, dtype=object)
    split[[0, 1, 2, 60]] = "test"
    split[[3, 61]] = "valid"
    a.obs["split"] = split
    p = ds.prepare(str(_write(a, tmp_path / "pub.h5ad")), label_key="cell_type")
    assert p.info["split"].startswith("published")
    assert sorted(p.test.obs_names) == sorted(a.obs_names[[0, 1, 2, 3, 60, 61]])


def test_read_10x_formats_match_h5ad(tmp_path):
    a = make_counts()
    for path in (write_10x_h5(a, tmp_path / "m.h5"), write_10x_mtx(a, tmp_path / "mtx")):
        b = readers.read_path(path)
        assert list(b.var_names) == list(a.var_names) and list(b.obs_names) == list(a.obs_names)
        np.testing.assert_array_equal(b.X.toarray(), a.X.toarray())


@pytest.mark.slow
def test_prepare_10x_without_labels_clusters(bench_data, tmp_path):
    """No label key: Leiden clusters into obs['cluster'] ('0' the largest), then split by cluster."""
    a = make_counts(sizes=(70, 45, 30), seed=8)
    p = ds.prepare(str(write_10x_h5(a, tmp_path / "m.h5")))
    assert p.label_key == "cluster" and p.info["clustering"]["method"] == "leiden"
    counts = {**p.info["labels_train"]}
    assert counts == {"0": 63, "1": 40, "2": 27}
    assert p.default_rare_class is None  # a file: the runner's augmentation rule decides


# -- validation errors -----------------------------------------------------------------------


def _log_normalised(a: ad.AnnData) -> ad.AnnData:
    b = a.copy()
    b.layers["counts"] = a.X.copy()
    X = sp.csr_matrix(sp.diags(1e4 / np.asarray(a.X.sum(axis=1)).ravel()) @ a.X, dtype=np.float32)
    X.data = np.log1p(X.data)
    b.X = X
    return b


def test_log_normalised_refused_naming_counts_layer(bench_data, tmp_path):
    path = _write(_log_normalised(make_counts()), tmp_path / "log.h5ad")
    with pytest.raises(UserError, match="log-normalised") as exc:
        ds.prepare(str(path), label_key="cell_type")
    assert "layers['counts']" in exc.value.fix and "adata.X = adata.layers['counts']" in exc.value.fix


def test_log_normalised_refused_naming_raw(bench_data, tmp_path):
    a = make_counts()
    b = _log_normalised(a)
    del b.layers["counts"]
    b.raw = a
    with pytest.raises(UserError, match="does not hold raw counts") as exc:
        ds.prepare(str(_write(b, tmp_path / "lograw.h5ad")), label_key="cell_type")
    assert ".raw" in exc.value.fix and "raw.to_adata()" in exc.value.fix


def test_scaled_negative_refused(bench_data, tmp_path):
    a = make_counts()
    a.X = sp.csr_matrix(a.X.toarray() - 1.5)
    with pytest.raises(UserError, match="negative values"):
        ds.prepare(str(_write(a, tmp_path / "neg.h5ad")), label_key="cell_type")


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_nan_inf_refused(bench_data, tmp_path, bad, word):
    a = make_counts()
    X = a.X.toarray()
    X[3, 4] = bad
    a.X = sp.csr_matrix(X)
    with pytest.raises(UserError, match=f"1 {word}" if word == "NaN" else f"and 1 {word}"):
        ds.prepare(str(_write(a, tmp_path / "nan.h5ad")), label_key="cell_type")


def test_missing_label_key_lists_columns(bench_data, tmp_path):
    a = make_counts()
    a.obs["batch"] = "b1"
    with pytest.raises(
        UserError, match=r"'celltype' not found in obs \(available obs columns: cell_type, batch\)"
    ):
        ds.prepare(str(_write(a, tmp_path / "x.h5ad")), label_key="celltype")


def test_tiny_label_refused(bench_data, tmp_path):
    a = make_counts(sizes=(60, 40))
    labels = a.obs["cell_type"].astype(str).to_numpy()
    labels[0] = "Platelet"
    a.obs["cell_type"] = labels
    with pytest.raises(UserError, match="label 'Platelet' has 1 cell"):
        ds.prepare(str(_write(a, tmp_path / "x.h5ad")), label_key="cell_type")


def test_duplicated_gene_names_made_unique_with_warning(bench_data, tmp_path):
    a = make_counts()
    names = list(a.var_names)
    names[1] = names[0]
    a.var_names = names
    with pytest.warns(UserWarning, match="1 duplicated gene names"):
        p = ds.prepare(str(_write(a, tmp_path / "dup.h5ad")), label_key="cell_type")
    assert p.train.var_names.is_unique and "gene0-1" in p.train.var_names


def test_recipe_with_unknown_label_key(bench_data):
    with pytest.raises(UserError, match="'celltype' not found in obs .*cell_type"):
        ds.prepare("pbmc3k", label_key="celltype")


def test_empty_file(bench_data, tmp_path):
    (tmp_path / "empty.h5ad").touch()
    with pytest.raises(UserError, match="is empty"):
        ds.prepare(str(tmp_path / "empty.h5ad"), label_key="cell_type")


def test_empty_anndata(bench_data, tmp_path):
    a = make_counts()[:0].copy()
    with pytest.raises(UserError, match=r"is empty \(0 cells"):
        ds.prepare(str(_write(a, tmp_path / "none.h5ad")), label_key="cell_type")


@pytest.mark.parametrize("name", ["garbage.h5ad", "garbage.h5"])
def test_unreadable_file(bench_data, tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an HDF5 file\n" * 10)
    with pytest.raises(UserError, match="could not read") as exc:
        ds.prepare(str(tmp_path / name), label_key="cell_type")
    assert "re-download" in exc.value.fix


def test_unsupported_file_type(bench_data, tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="unsupported dataset file type '.csv'"):
        ds.prepare(str(tmp_path / "data.csv"))


def test_missing_file(bench_data, tmp_path):
    with pytest.raises(UserError, match="neither a registered dataset nor an existing file") as exc:
        ds.prepare(str(tmp_path / "nope.h5ad"))
    assert "pbmc3k" in exc.value.fix
    with pytest.raises(UserError, match="not found"):
        readers.read_path(tmp_path / "nope.h5ad")


def test_not_a_10x_directory(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="not a 10x matrix directory"):
        readers.read_path(tmp_path / "folder")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_fraction": 0.0}, "test fraction"),
        ({"n_top_genes": 0}, "n_top_genes"),
        ({"split_seed": "a"}, "seed"),
    ],
)
def test_bad_parameters(bench_data, kwargs, match):
    with pytest.raises(UserError, match=match):
        ds.prepare("pbmc3k", **kwargs)


# -- registry views ---------------------------------------------------------------------------


def test_list_and_info(bench_data):
    names = {d["name"]: d["description"] for d in ds.list_datasets()}
    assert {"pbmc3k", "brain_small", "pbmc68k"} <= set(names)
    assert all(names[n] for n in ("pbmc3k", "brain_small", "pbmc68k"))
    i = ds.info("pbmc3k")
    assert i["present"] and i["sha256"] == "ca5761355ab2d0af63d2f6f3fb1830095d94f6f1ff648ed29b2d20129d2f41eb"
    assert i["sha256"] == cache.sha256_file(Path(i["path"]))
    assert "CC BY 4.0" in i["licence"] and i["default_rare_class"] is None and i["label_key"] == "cell_type"
    b = ds.info("brain_small")
    assert b["present"] is False and b["sha256"] is None
    assert b["path"] == str(bench_data / "raw" / "20kBrainSmall_preprocessed.h5")
    assert (
        b["source_url"]
        == "https://activa-material.s3.amazonaws.com/PreprocessedData/20kBrainSmall_preprocessed.h5"
    )
    with pytest.raises(UserError, match="unknown dataset 'nope'"):
        ds.info("nope")


def test_s3_url_encodes_spaces():
    from bench.datasets.recipes import s3_url

    assert s3_url("Model-Weights/20K Brain Small/x.pth") == (
        "https://activa-material.s3.amazonaws.com/Model-Weights/20K%20Brain%20Small/x.pth"
    )


# -- the real bundled dataset -----------------------------------------------------------------


@pytest.mark.slow
def test_prepare_real_pbmc3k(bench_data):
    t0 = time.perf_counter()
    p = ds.prepare("pbmc3k")
    first = time.perf_counter() - t0
    sizes = {
        "CD4 T": 1158,
        "CD14 Monocytes": 487,
        "B": 357,
        "CD8 T": 329,
        "FCGR3A Monocytes": 160,
        "NK": 160,
        "Dendritic": 36,
        "Megakaryocytes": 13,
    }
    assert p.train.n_obs + p.test.n_obs == 2700  # no cell has < 10 genes
    assert p.default_rare_class is None and p.label_key == "cell_type"
    for t, n in sizes.items():
        n_test = int((p.test.obs["cell_type"] == t).sum())
        assert n_test == int(np.floor(0.1 * n + 0.5)), t
        assert int((p.train.obs["cell_type"] == t).sum()) == n - n_test
    assert p.train.n_vars == p.info["n_genes_filtered"] < 16634
    np.testing.assert_allclose(np.asarray(p.train.X.sum(axis=1)).ravel(), 20_000, rtol=1e-5)
    assert np.all(p.train.layers["counts"].data == np.round(p.train.layers["counts"].data))

    t0 = time.perf_counter()
    again = ds.prepare("pbmc3k")
    hit = time.perf_counter() - t0
    assert again.info["cached"] and again.hash == p.hash
    assert hit < first and hit < 10
    print(f"\npbmc3k prepare: {first:.2f} s first, {hit:.2f} s from cache")

    quick = ds.prepare("pbmc3k", n_top_genes=2000)
    assert quick.train.n_vars == quick.test.n_vars == 2000
    np.testing.assert_allclose(np.asarray(quick.test.X.sum(axis=1)).ravel(), 20_000, rtol=1e-5)


def test_progress_flag_runs_quietly_off_a_tty(bench_data, tmp_path, capsys):
    path = _write(make_counts(), tmp_path / "toy.h5ad")
    p = ds.prepare(str(path), label_key="cell_type", progress=True)
    assert p.train.n_obs > 0
    assert capsys.readouterr().err == ""


def test_benchmark_prepare_cache_hit(benchmark, bench_data, tmp_path):
    """pytest-benchmark (skipped by default, run with --benchmark-only): a prepared-cache load."""
    path = _write(make_counts(sizes=(300, 200, 100), n_genes=500), tmp_path / "toy.h5ad")
    ds.prepare(str(path), label_key="cell_type")
    result = benchmark(ds.prepare, str(path), label_key="cell_type")
    assert result.info["cached"]


def test_prepare_without_cache_write_then_save(bench_data, tmp_path):
    """write_cache=False keeps the result in memory (the runner validates the whole run first);
    save_prepared writes exactly what a plain prepare would have cached."""
    path = _write(make_counts(sizes=(100, 60, 40)), tmp_path / "toy.h5ad")
    held = ds.prepare(str(path), label_key="cell_type", write_cache=False)
    assert held.info["cached"] is False and not (bench_data / "prepared").exists()
    ds.save_prepared(held)
    again = ds.prepare(str(path), label_key="cell_type")
    assert again.info["cached"] is True and again.hash == held.hash
    assert list(again.test.obs_names) == list(held.test.obs_names)
    np.testing.assert_array_equal(again.train.X.toarray(), held.train.X.toarray())
    ds.save_prepared(held)  # already there: a no-op
