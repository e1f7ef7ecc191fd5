"""The `embedding` metric: UMAP fit on real cells with generated cells placed on it, marker genes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from bench.api.errors import UserError
from bench.evaluation import EvalContext
from bench.metrics._embedding import (
    EMBEDDING,
    PAPER_MARKERS,
    choose_markers,
    top_marker_per_group,
    umap_embed,
)

CENTRES = np.array([[0.0] * 10, [12.0] + [0.0] * 9, [0.0, 12.0] + [0.0] * 8])


def blobs(n_per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.vstack([c + rng.normal(size=(n_per, 10)) for c in CENTRES]).astype(np.float32)
    return X, np.repeat(np.arange(3), n_per)


def nearest_real_label(real_xy, real_labels, query_xy) -> np.ndarray:
    d = ((query_xy[:, None, :] - real_xy[None, :, :]) ** 2).sum(-1)
    return real_labels[d.argmin(1)]


def test_generated_cells_land_on_their_real_cluster():
    real, real_lab = blobs(40, seed=0)
    gen, gen_lab = blobs(20, seed=1)  # new draws of the same clusters
    res = umap_embed(real, gen, seed=0)
    assert res.real_umap.shape == (120, 2) and res.generated_umap.shape == (60, 2)
    # the map is of the real data: its clusters stay apart in 2-D
    assert (nearest_real_label(res.real_umap, real_lab, res.real_umap) == real_lab).all()
    # placed, not re-fit: every generated cell sits next to real cells of its own cluster
    transferred = nearest_real_label(res.real_umap, real_lab, res.generated_umap)
    assert (transferred == gen_lab).mean() >= 0.95


def test_generated_from_one_cluster_stay_there():
    real, real_lab = blobs(40, seed=0)
    gen = blobs(20, seed=2)[0][40:60]  # cluster 2 only
    res = umap_embed(real, gen, seed=0)
    assert (nearest_real_label(res.real_umap, real_lab, res.generated_umap) == 2).all()


def test_seeded_and_capped():
    real, _ = blobs(40, seed=0)
    gen, _ = blobs(40, seed=1)
    a = umap_embed(real, gen, seed=3, max_cells=50)
    b = umap_embed(real, gen, seed=3, max_cells=50)
    c = umap_embed(real, gen, seed=4, max_cells=50)
    np.testing.assert_array_equal(a.real_umap, b.real_umap)
    np.testing.assert_array_equal(a.generated_umap, b.generated_umap)
    assert len(a.real_index) == len(a.generated_index) == 50
    assert (np.diff(a.real_index) > 0).all() and a.real_index.max() < 120
    assert not np.array_equal(a.real_index, c.real_index)
    # no cap: every cell, in input order
    full = umap_embed(real[:30], gen[:10], seed=0)
    np.testing.assert_array_equal(full.real_index, np.arange(30))
    np.testing.assert_array_equal(full.generated_index, np.arange(10))


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        umap_embed(np.zeros((10, 5)), np.zeros((10, 4)), seed=0)


def test_knn_labels_majority_of_nearest_real_cells():
    from bench.metrics._embedding import _knn_labels

    real, lab = blobs(20, seed=0)
    query, qlab = blobs(5, seed=5)
    names = np.array(["a", "b", "c"])
    np.testing.assert_array_equal(_knn_labels(real, names[lab], query, k=5), names[qlab])
    assert _knn_labels(real, names[lab], query[:0]).shape == (0,)


def test_choose_markers_paper_then_de():
    genes = ["ACTB", "LYZ", "CD79A", "NKG7", "MS4A1", "GAPDH"]
    chosen, source = choose_markers(genes, de=lambda ex: pytest.fail("DE not needed"))
    assert source == "paper" and chosen == [g for g in PAPER_MARKERS if g in genes]
    assert chosen[:2] == ["CD79A", "MS4A1"]
    # too few paper markers: DE genes fill, without repeating the paper ones
    chosen, source = choose_markers(["LYZ", "g1", "g2"], de=lambda ex: [*ex, "g2", "g1"], min_markers=3)
    assert source == "paper+de" and chosen == ["LYZ", "g2", "g1"]
    chosen, source = choose_markers(["g1", "g2"], de=lambda ex: ["g2"])
    assert (chosen, source) == (["g2"], "de")
    assert choose_markers(["g1", "g2"], markers=["g2"]) == (["g2"], "given")
    with pytest.raises(UserError, match="not in the dataset"):
        choose_markers(["g1"], markers=["CD3E"])


def counts_with_blocks(n_per=(40, 30, 20), n_genes=30, seed=0):
    """Type k over-expresses gene 10k strongly (its marker) and genes 10k+1..10k+4 weakly."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for k, n in enumerate(n_per):
        mu = np.full(n_genes, 2.0)
        mu[10 * k + 1 : 10 * k + 5] = 4.0
        mu[10 * k] = 40.0
        rows.append(rng.poisson(mu, size=(n, n_genes)))
        labels += [f"type{k}"] * n
    return np.vstack(rows).astype(np.float32), np.array(labels)


def test_top_marker_per_group_known_answer():
    from bench.evaluation import lognorm

    X, labels = counts_with_blocks()
    genes = [f"g{i}" for i in range(X.shape[1])]
    assert top_marker_per_group(lognorm(X), labels, genes) == ["g0", "g10", "g20"]
    # a gene already taken is skipped: the group's next best gene of its own block
    out = top_marker_per_group(lognorm(X), labels, genes, exclude=("g10",))
    assert out[0] == "g0" and out[2] == "g20" and 11 <= int(out[1][1:]) <= 14


def _adata(counts, labels, prefix):
    tot = counts.sum(1, keepdims=True)
    a = ad.AnnData(X=sp.csr_matrix((counts * 20_000 / tot).astype(np.float32)))
    a.var_names = [f"g{i}" for i in range(counts.shape[1])]
    a.obs_names = [f"{prefix}{i}" for i in range(counts.shape[0])]
    a.obs["cell_type"] = labels
    return a


@pytest.fixture(scope="module")
def ctx():
    X, labels = counts_with_blocks((60, 45, 30), seed=1)
    test = np.zeros(len(labels), bool)
    test[np.random.default_rng(0).permutation(len(labels))[:45]] = True
    return EvalContext("toy", _adata(X[~test], labels[~test], "r"), _adata(X[test], labels[test], "t"),
                       "cell_type", seed=0)  # fmt: skip


def _generated(ctx, conditional: bool):
    g = ctx.test.copy()
    if not conditional:
        del g.obs["cell_type"]
    g.uns["scgenbench"] = {"output_scale": "library-size-20000"}
    return g


def test_adapter_artifacts(ctx):
    gen = _generated(ctx, conditional=True)
    out = EMBEDDING.func(ctx, gen, seed=0, **EMBEDDING.options_for("quick"))
    a = out.artifacts
    n = ctx.test.n_obs
    assert a["real_umap"].shape == (n, 2) and a["generated_umap"].shape == (n, 2)
    np.testing.assert_array_equal(a["real_labels"], ctx.labels("test"))
    np.testing.assert_array_equal(a["generated_labels"], ctx.labels("test"))
    # generated = the test cells: their nearest real cells on the PCs mostly carry the same type
    # (chance is below 0.45 here; misaligned rows would fall to it)
    assert (a["generated_knn_labels"] == ctx.labels("test")).mean() >= 0.7
    # no paper marker among g0..g29: the top DE gene of each type
    assert list(a["marker_genes"]) == ["g0", "g10", "g20"]
    assert out.info["marker_source"] == "de"
    # marker expression on the evaluation scale, computed independently
    counts = ctx.test.X.toarray()
    expect = np.log1p(counts / counts.sum(1, keepdims=True) * 20_000)[:, [0, 10, 20]]
    np.testing.assert_allclose(a["real_markers"], expect, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a["generated_markers"], expect, rtol=1e-4, atol=1e-4)
    # an informational value (no direction), so the runner writes the task and tables ignore it
    assert out.values == {"embedding_cells": float(n)}
    assert EMBEDDING.direction_of("embedding_cells") is None and EMBEDDING.kind == "sample"


def test_adapter_unconditional_and_capped(ctx):
    gen = _generated(ctx, conditional=False)
    out = EMBEDDING.func(ctx, gen, seed=1, max_cells=20, markers=["g5", "g15"])
    a = out.artifacts
    assert a["generated_labels"].shape == (0,)
    assert a["generated_knn_labels"].shape == (20,)
    assert a["real_umap"].shape == (20, 2) and a["generated_markers"].shape == (20, 2)
    assert list(a["marker_genes"]) == ["g5", "g15"] and out.info["marker_source"] == "given"
    assert out.values["embedding_cells"] == 20.0


def test_collected_into_a_task_record(ctx):
    from bench.tasks import TaskRecord, _collect

    out = EMBEDDING.func(ctx, _generated(ctx, True), seed=0, max_cells=30)
    rec = TaskRecord(key="k", status="done")
    _collect(rec, "embedding", out)
    assert rec.values == [("embedding_cells", 30.0)]
    assert {"embedding/real_umap", "embedding/marker_genes", "embedding/generated_labels"} <= set(
        rec.artifacts
    )
