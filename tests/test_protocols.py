"""Evaluation protocols (bench.protocols) without Docker: known answers for ``pca-real`` (it is what
scanpy computes on the training cells, and nothing is fit on test or generated cells), ``genes`` (the
evaluation's transform), the ``harmony`` stand-in (shapes, determinism, groupings) and the file
interface of ``paper`` (the R side runs in tests/test_protocol_seurat.py)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from bench.api.errors import TaskFailed
from bench.evaluation import lognorm
from bench.protocols import Genes, Harmony, PcaReal, get_protocol, protocol_keys
from bench.protocols import seurat as S
from tests.conftest import make_counts


def at_scale(X, scale: str) -> ad.AnnData:
    """Cells as a generator hands them over: an AnnData recording its output scale."""
    a = ad.AnnData(X=sp.csr_matrix(X, dtype=np.float32))
    a.var_names = [f"g{j}" for j in range(a.n_vars)]
    a.uns["scgenbench"] = {"output_scale": scale}
    return a


def library(X) -> sp.csr_matrix:
    X = sp.csr_matrix(X, dtype=np.float64)
    return sp.csr_matrix(sp.diags(20_000 / np.asarray(X.sum(1)).ravel()) @ X, dtype=np.float32)


@pytest.fixture(scope="module")
def data():
    """Training cells, test cells and two generated sets, 300 genes, three cell types."""
    counts = make_counts(n_cells=360, n_genes=300, seed=3).X
    train = at_scale(library(counts[:200]), "library-size-20000")
    test = at_scale(library(counts[200:280]), "library-size-20000")
    gen = {
        "a": at_scale(counts[280:320], "counts"),
        "b": at_scale(library(counts[320:360]), "library-size-20000"),
    }
    return train, test, gen


# -- the registry ---------------------------------------------------------------------------------
def test_protocol_keys_and_parsing():
    assert protocol_keys() == [
        "genes",
        "pca-real",
        "paper:joint",
        "paper:pairwise",
        "harmony:joint",
        "harmony:pairwise",
    ]
    assert get_protocol("paper").key == "paper:joint"
    assert get_protocol("harmony:pairwise").key == "harmony:pairwise"
    assert get_protocol("pca-real").key == "pca-real"
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("seurat")
    with pytest.raises(ValueError, match="no grouping"):
        get_protocol("genes:joint")
    with pytest.raises(ValueError, match="no grouping"):
        get_protocol("paper:all")


# -- genes ------------------------------------------------------------------------------------------
def test_genes_is_the_evaluation_transform(data):
    train, test, gen = data
    e = Genes().apply(train, test, gen, seed=0)
    real, a = e.pairs["a"]
    assert (real != lognorm(test.X)).nnz == 0
    assert (a != lognorm(gen["a"].X)).nnz == 0  # counts: normalised then logged like real cells
    assert e.pairs["b"][0] is real


def test_a_matrix_of_unknown_scale_is_refused(data):
    train, test, _ = data
    with pytest.raises(TaskFailed, match="scale"):
        Genes().apply(train, test, {"x": np.log1p(test.X.toarray())}, seed=0)


def test_genes_must_match(data):
    train, test, gen = data
    with pytest.raises(TaskFailed, match="genes"):
        Genes().apply(train, test, {"x": gen["a"][:, :10]}, seed=0)


# -- pca-real ---------------------------------------------------------------------------------------
def test_pca_real_on_training_cells_is_scanpy(data):
    """Fit on training cells, the training cells' own coordinates are what scanpy computes: HVGs
    (flavor 'seurat'), sc.pp.scale, sc.tl.pca (arpack) -- up to each PC's sign."""
    import scanpy as sc

    train, _, _ = data
    protocol = PcaReal(n_top_genes=100, n_pcs=20)
    fit = protocol.fit(train, seed=0)
    ours = fit.transform(lognorm(train.X))

    ref = ad.AnnData(X=lognorm(train.X))
    sc.pp.highly_variable_genes(ref, flavor="seurat", n_top_genes=100)
    assert np.array_equal(np.flatnonzero(ref.var["highly_variable"]), fit.genes)
    ref = ref[:, ref.var["highly_variable"]].copy()
    ref.X = ref.X.toarray()
    sc.pp.scale(ref)
    sc.tl.pca(ref, n_comps=20, svd_solver="arpack", random_state=0)
    theirs = ref.obsm["X_pca"]
    assert ours.shape == theirs.shape == (train.n_obs, 20)
    signs = np.sign(np.sum(ours * theirs, axis=0))
    assert np.all(signs != 0)
    np.testing.assert_allclose(ours * signs, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max())


def test_pca_real_fits_nothing_on_test_or_generated_cells(data):
    train, test, gen = data
    e1 = PcaReal(n_top_genes=100).apply(train, test, gen, seed=0)
    other_test = at_scale(library(make_counts(n_cells=50, n_genes=300, seed=9).X), "library-size-20000")
    other_gen = {"a": gen["a"], "b": at_scale(np.ones((30, 300)), "counts")}
    e2 = PcaReal(n_top_genes=100).apply(train, other_test, other_gen, seed=0)
    for field in ("genes", "mean", "std", "components", "pca_mean"):
        assert np.array_equal(getattr(e1.fitted, field), getattr(e2.fitted, field)), field
    # so a model's cells land where they land whatever the other model and the test cells are
    assert np.array_equal(e1.generated("a"), e2.generated("a"))
    # and the training cells decide: other training cells, another fit
    e3 = PcaReal(n_top_genes=100).apply(other_test, test, gen, seed=0)
    assert not np.array_equal(e1.fitted.components, e3.fitted.components)


def test_pca_real_identical_inputs_give_identical_embeddings(data):
    train, test, gen = data
    same = {"copy": at_scale(test.X.copy(), "library-size-20000"), **gen}
    e = PcaReal(n_top_genes=100).apply(train, test, same, seed=0)
    real, copy = e.pairs["copy"]
    assert np.array_equal(real, copy)
    assert real.shape == (test.n_obs, 50) and e.record["n_pcs"] == 50
    assert e.record["n_hvg"] == 100 and e.record["n_fit_cells"] == train.n_obs
    # one set of real coordinates for every model; each cell projected on its own
    assert e.real("a") is e.real("b") is real
    part = PcaReal(n_top_genes=100).apply(train, test[:7], {"a": gen["a"][:5]}, seed=0)
    np.testing.assert_allclose(part.real("a"), real[:7], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(part.generated("a"), e.generated("a")[:5], rtol=1e-6, atol=1e-6)


def test_pca_real_reads_every_output_scale(data):
    """The same cells as counts, at library size 20,000 or log1p land on the same coordinates."""
    train, test, gen = data
    counts = gen["a"].X
    lib = library(counts)
    log1p = lib.copy()
    log1p.data = np.log1p(log1p.data)
    cells = {"counts": gen["a"], "lib": at_scale(lib, "library-size-20000"), "log": at_scale(log1p, "log1p")}
    e = PcaReal(n_top_genes=100).apply(train, test, cells, seed=0)
    for name in ("lib", "log"):
        np.testing.assert_allclose(e.generated(name), e.generated("counts"), rtol=1e-4, atol=1e-3)


def test_pca_real_is_deterministic_and_a_kept_fit_projects_the_same(data):
    import pickle

    train, test, gen = data
    protocol = PcaReal(n_top_genes=100)
    e1 = protocol.apply(train, test, gen, seed=4)
    e2 = protocol.apply(train, test, gen, seed=4)
    assert np.array_equal(e1.real("a"), e2.real("a"))
    assert np.array_equal(e1.generated("b"), e2.generated("b"))
    kept = pickle.loads(pickle.dumps(protocol.fit(train, seed=4)))  # e.g. in the run's shared work
    e3 = protocol.project(kept, test, {"b": gen["b"]})
    assert np.array_equal(e3.generated("b"), e1.generated("b")) and e3.record == e1.record


def test_pca_real_keeps_every_gene_when_there_are_fewer_than_asked(data):
    train, test, gen = data
    e = PcaReal().apply(train, test, gen, seed=0)  # 3,000 asked, 300 genes
    assert e.record["n_hvg"] == 300


def test_pca_real_separates_what_differs(data):
    """A known answer for the space itself: flat cells (every gene equal) are far from the test cells
    on the PCs, a copy of the test cells is not."""
    train, test, _ = data
    e = PcaReal(n_top_genes=100).apply(
        train, test, {"copy": test, "shifted": at_scale(np.ones((30, 300)), "counts")}, seed=0
    )
    real = e.real("copy")
    assert np.abs(e.generated("copy").mean(0) - real.mean(0)).max() < 1e-5
    assert np.linalg.norm(e.generated("shifted").mean(0) - real.mean(0)) > 1.0


# -- harmony ----------------------------------------------------------------------------------------
def test_harmony_shapes_groupings_and_determinism(data):
    pytest.importorskip("harmonypy")
    train, test, gen = data
    joint = Harmony("joint", n_top_genes=100).apply(train, test, gen, seed=0)
    assert joint.protocol == "harmony:joint" and joint.record["harmonypy"]
    for m, c in gen.items():
        assert joint.real(m).shape == (test.n_obs, 50)
        assert joint.generated(m).shape == (c.n_obs, 50)
        assert np.isfinite(joint.generated(m)).all()
    assert joint.real("a") is joint.real("b")  # one integration of everything
    again = Harmony("joint", n_top_genes=100).apply(train, test, gen, seed=0)
    assert np.array_equal(joint.generated("a"), again.generated("a"))

    pair = Harmony("pairwise", n_top_genes=100).apply(train, test, gen, seed=0)
    assert pair.protocol == "harmony:pairwise"
    assert not np.array_equal(pair.real("a"), pair.real("b"))  # the real cells, integrated per model
    # pairwise: a model's score cannot depend on which other models ran
    alone = Harmony("pairwise", n_top_genes=100).apply(train, test, {"a": gen["a"]}, seed=0)
    assert np.array_equal(alone.generated("a"), pair.generated("a"))
    assert np.array_equal(alone.real("a"), pair.real("a"))
    # joint: it can
    assert not np.allclose(joint.generated("a"), alone.generated("a"))


def test_integration_protocols_refuse_the_reserved_name(data):
    train, test, gen = data
    with pytest.raises(ValueError, match="real-test"):
        Harmony().apply(train, test, {"real-test": gen["a"]}, seed=0)


# -- paper: the file interface (no Docker) -----------------------------------------------------------
def test_paper_files_round_trip(tmp_path, data):
    _, test, gen = data
    blocks = {"real-test": S.library_size_cells(test), "a": S.library_size_cells(gen["a"])}
    S.write_inputs(tmp_path, blocks, list(test.var_names), {**S.PARAMS, "seed": 0, "normalize": "none"})
    objects = (tmp_path / "objects.csv").read_text().splitlines()
    assert objects == ["name,file,n_cells", "real-test,object0.mtx,80", "a,object1.mtx,40"]
    M = scipy.io.mmread(tmp_path / "object1.mtx")  # genes x cells, as Seurat wants it
    assert M.shape == (300, 40)
    np.testing.assert_allclose(M.toarray().T, blocks["a"].toarray(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(blocks["a"].sum(1)).ravel(), 20_000, rtol=1e-6)
    assert (tmp_path / "genes.txt").read_text().split() == list(test.var_names)
    # what R writes back: rows in any order, matched to cells by (object, index)
    out = tmp_path / "out"
    out.mkdir()
    rows = ["object,cell,PC_1,PC_2"]
    rows += [f"a,{i},{i},{-i}" for i in reversed(range(40))]
    rows += [f"real-test,{i},{i / 10},0" for i in range(80)]
    (out / "pcs.csv").write_text("\n".join(rows) + "\n")
    (out / "record.csv").write_text("key,value\nSeurat,4.3.0\nseed,0\n")
    pcs, record = S.read_outputs(out, blocks)
    assert pcs["a"].shape == (40, 2) and np.array_equal(pcs["a"][:, 0], np.arange(40))
    assert pcs["real-test"].shape == (80, 2)
    assert record == {"Seurat": "4.3.0", "seed": "0"}
    (out / "pcs.csv").write_text("\n".join(rows[:-1]) + "\n")  # a cell missing
    with pytest.raises(TaskFailed, match="cover"):
        S.read_outputs(out, blocks)


def test_paper_reads_log1p_cells_on_the_linear_scale(data):
    _, _, gen = data
    lib = S.library_size_cells(gen["a"])
    log1p = lib.copy()
    log1p.data = np.log1p(log1p.data)
    np.testing.assert_allclose(
        S.library_size_cells(at_scale(log1p, "log1p")).toarray(), lib.toarray(), rtol=1e-5
    )


def test_paper_without_docker_says_what_to_do(monkeypatch, data):
    import bench.api.sandbox as sandbox

    monkeypatch.setattr(sandbox, "docker_client", lambda timeout=10: None)
    train, test, gen = data
    from bench.api.errors import UserError

    with pytest.raises(UserError, match="Docker"):
        get_protocol("paper").apply(train, test, gen, seed=0)
