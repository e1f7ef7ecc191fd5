"""The scGAN preprocessing steps, checked against scanpy and against their definitions."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from bench.api.errors import UserError
from bench.datasets import preprocess

sys.path.insert(0, str(Path(__file__).parent))
from datasets_fixtures import make_counts  # noqa: E402


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def test_filter_matches_scanpy():
    a = make_counts(seed=3)
    # a cell with 5 genes only: removed by min_genes=10
    X = a.X.tolil()
    X[0, :] = 0
    X[0, :5] = 1
    a.X = X.tocsr()
    ours = preprocess.filter_cells_genes(a, min_genes=10, min_cells=3)
    ref = a.copy()
    sc.pp.filter_cells(ref, min_genes=10)
    sc.pp.filter_genes(ref, min_cells=3)
    assert list(ours.obs_names) == list(ref.obs_names)
    assert list(ours.var_names) == list(ref.var_names)
    assert ours.n_obs == a.n_obs - 1 and ours.n_vars == a.n_vars - 4
    np.testing.assert_array_equal(_dense(ours.X), _dense(ref.X))
    np.testing.assert_array_equal(ours.obs["n_genes"], ref.obs["n_genes"])
    np.testing.assert_array_equal(ours.var["n_cells"], ref.var["n_cells"])


def test_filter_ignores_explicit_zeros_and_leaves_the_input_alone():
    a = make_counts(seed=5)
    X = sp.csr_matrix(a.X, copy=True)
    X.data[X.indptr[0] : X.indptr[1]] = 0  # cell 0: every stored value an explicit zero
    b = ad.AnnData(X=X, obs=a.obs.copy(), var=a.var.copy())
    stored = X.nnz
    ours = preprocess.filter_cells_genes(b, min_genes=10, min_cells=3)
    assert a.obs_names[0] not in set(ours.obs_names) and ours.n_obs == a.n_obs - 1
    assert b.X.nnz == stored  # the caller's matrix keeps its explicit zeros
    ref = b.copy()
    sc.pp.filter_cells(ref, min_genes=10)
    assert list(ours.obs_names) == list(ref.obs_names)


def test_normalize_matches_scanpy_and_sums_to_target():
    a = make_counts(seed=4)
    ours = preprocess.normalize(a.X, 20_000)
    ref = a.copy()
    sc.pp.normalize_total(ref, target_sum=20_000)
    assert ours.dtype == np.float32 and sp.isspmatrix_csr(ours)
    np.testing.assert_allclose(_dense(ours), _dense(ref.X), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.sum(axis=1)).ravel(), 20_000, rtol=1e-5)
    # zero rows stay zero instead of becoming NaN
    Z = sp.csr_matrix(np.array([[0, 0], [1, 3]], dtype=np.float32))
    np.testing.assert_array_equal(_dense(preprocess.normalize(Z, 4)), [[0, 0], [1, 3]])


def test_balanced_split_stratified():
    labels = np.repeat(["a", "b", "c", "d"], [1000, 200, 25, 2])
    split = preprocess.balanced_split(labels, test_fraction=0.1, seed=0)
    for lab, n_expected in {"a": 100, "b": 20, "c": 3, "d": 1}.items():  # 2.5 rounds half up to 3
        in_label = labels == lab
        assert (split[in_label] == "test").sum() == n_expected
        assert (split[in_label] == "train").sum() == in_label.sum() - n_expected
    assert set(split) == {"train", "test"}


def test_balanced_split_seeding():
    labels = np.repeat(["x", "y", "z"], [300, 150, 80])
    s0 = preprocess.balanced_split(labels, seed=0)
    assert np.array_equal(s0, preprocess.balanced_split(labels, seed=0))
    s1 = preprocess.balanced_split(labels, seed=1)
    assert not np.array_equal(s0, s1)
    # a different seed still gives the same per-label test counts
    for lab in "xyz":
        assert (s0[labels == lab] == "test").sum() == (s1[labels == lab] == "test").sum()


def test_balanced_split_tiny_label_is_user_error():
    labels = np.array(["a"] * 20 + ["lonely"])
    with pytest.raises(UserError, match="label 'lonely' has 1 cell"):
        preprocess.balanced_split(labels, seed=0)


@pytest.mark.parametrize("fraction", [0, 1, -0.2, 1.5])
def test_balanced_split_bad_fraction(fraction):
    with pytest.raises(UserError, match="test fraction"):
        preprocess.balanced_split(np.array(["a"] * 10), test_fraction=fraction)


def test_published_split_maps_valid_to_test():
    out = preprocess.published_split(np.array(["train", "valid", "test", "train"]))
    assert list(out) == ["train", "test", "test", "train"]
    with pytest.raises(UserError, match="expected 'train', 'test' or 'valid'"):
        preprocess.published_split(np.array(["train", "holdout"]))


def test_renumber_by_size():
    labels = np.array(["7"] * 2 + ["3"] * 5 + ["10"] * 3 + ["1"] * 3)
    out = preprocess.renumber_by_size(labels)
    # sizes: '3'->5 (0), then ties of 3 cells in natural order: '1' (1), '10' (2); '7' -> 3
    assert list(out) == ["3"] * 2 + ["0"] * 5 + ["2"] * 3 + ["1"] * 3


def test_natural_sort():
    assert preprocess.natural_sort(["10", "2", "1"]) == ["1", "2", "10"]
    assert preprocess.natural_sort(["b", "a"]) == ["a", "b"]


def test_pipeline_split_and_layers():
    a = make_counts(sizes=(100, 60, 40), seed=5)
    train, test, info = preprocess.run_pipeline(a, label_key="cell_type", split_seed=0)
    assert info["split"] == "balanced"
    assert (train.n_obs, test.n_obs) == (180, 20)
    assert dict(test.obs["cell_type"].value_counts()) == {"A": 10, "B": 6, "C": 4}
    assert list(train.obs["cell_type"].cat.categories) == ["A", "B", "C"]
    assert list(test.obs["cell_type"].cat.categories) == ["A", "B", "C"]
    assert not set(train.obs_names) & set(test.obs_names)
    for part in (train, test):
        assert sp.isspmatrix_csr(part.X) and part.X.dtype == np.float32
        np.testing.assert_allclose(np.asarray(part.X.sum(axis=1)).ravel(), 20_000, rtol=1e-5)
        counts = part.layers["counts"]
        assert sp.isspmatrix_csr(counts)
        # X is exactly the counts normalised per cell
        np.testing.assert_allclose(_dense(preprocess.normalize(counts)), _dense(part.X), rtol=1e-6)
        np.testing.assert_array_equal(_dense(counts), _dense(a[part.obs_names, part.var_names].X))
    assert train.n_vars == a.n_vars - 4  # 3 never-expressed genes and 1 gene in 2 cells


def test_pipeline_hvg_renormalises_on_training_cells_only():
    a = make_counts(sizes=(100, 60, 40), n_genes=200, seed=6)
    train, test, info = preprocess.run_pipeline(a, label_key="cell_type", split_seed=0, n_top_genes=30)
    assert train.n_vars == test.n_vars == 30 == info["n_top_genes_selected"]
    assert list(train.var_names) == list(test.var_names)
    for part in (train, test):
        np.testing.assert_allclose(np.asarray(part.X.sum(axis=1)).ravel(), 20_000, rtol=1e-5)
        np.testing.assert_array_equal(
            _dense(part.layers["counts"]), _dense(a[part.obs_names, part.var_names].X)
        )
    # the selection is scanpy's seurat HVG on log1p of the normalised training cells only
    full_train, _, _ = preprocess.run_pipeline(a, label_key="cell_type", split_seed=0)
    ref = full_train.copy()
    ref.X = ref.X.copy()
    sc.pp.log1p(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(ref, flavor="seurat", n_top_genes=30)
    assert set(train.var_names) == set(ref.var_names[ref.var["highly_variable"]])


def test_pipeline_hvg_drops_cells_with_no_counts_left():
    a = make_counts(sizes=(100, 60, 40), n_genes=200, seed=7)
    train0, _, _ = preprocess.run_pipeline(a, label_key="cell_type", split_seed=0, n_top_genes=20)
    kept = list(train0.var_names)
    # give one training cell counts only outside the selected genes (its HVG counts are zeroed)
    victim = train0.obs_names[5]
    i = a.obs_names.get_loc(victim)
    X = a.X.tolil()
    for g in kept:
        X[i, a.var_names.get_loc(g)] = 0
    a.X = X.tocsr()
    with pytest.warns(UserWarning, match="no counts in the"):
        train, test, info = preprocess.run_pipeline(a, label_key="cell_type", split_seed=0, n_top_genes=20)
    assert list(train.var_names) == kept  # the selection did not move ...
    assert victim not in train.obs_names  # ... and the victim, with nothing left, is gone
    assert info["n_cells_dropped_zero_after_hvg"] == 1
    assert train.n_obs == train0.n_obs - 1
    assert np.all(np.asarray(train.X.sum(axis=1)).ravel() > 0)


@pytest.mark.slow
def test_clustering_recovers_planted_groups():
    """Leiden on the zheng17 copy finds the three planted groups, renumbered by size (~1 min: numba JIT)."""
    a = make_counts(sizes=(70, 45, 30), seed=8)
    labels = preprocess.cluster_scgan(a, seed=0)
    truth = a.obs["cell_type"].to_numpy()
    assert {t: labels[truth == t][0] for t in "ABC"} == {"A": "0", "B": "1", "C": "2"}
    for t in "ABC":
        assert len(set(labels[truth == t])) == 1
