import numpy as np
import pytest

from bench.api.errors import TaskFailed
from bench.api.generator import validate_output
from bench.generators.baselines import NegativeBinomial, RealControl, ShuffledControl
from tests.conftest import fit_generator


def _fit(cls, train, **params):
    gen = cls(**params)
    fit_generator(gen, train)
    return gen


def test_real_samples_training_cells_only(train_adata):
    gen = _fit(RealControl, train_adata)
    out = gen.generate({"t0": 5, "t2": 3}, seed=1)
    validate_output(gen, out, var_names=list(train_adata.var_names), label_key="cell_type",
                    known_labels=["t0", "t1", "t2"], requested={"t0": 5, "t2": 3})  # fmt: skip
    train_rows = {tuple(r) for r in train_adata.X.toarray().round(3)}
    assert all(tuple(r) in train_rows for r in out.X.toarray().round(3))
    assert out.obs["cell_type"].value_counts().to_dict() == {"t0": 5, "t2": 3}


def test_real_is_seeded(train_adata):
    gen = _fit(RealControl, train_adata)
    a, b = gen.generate(20, seed=3), gen.generate(20, seed=3)
    assert (a.X != b.X).nnz == 0


def test_nb_moments_recovered(train_adata):
    """With many draws, per-type means of generated counts match the fitted means (before LSN)."""
    gen = _fit(NegativeBinomial, train_adata)
    i = gen.labels.index("t1")
    draws = gen._sample(i, 20000, np.random.default_rng(0))
    mu = gen._mu[i]
    np.testing.assert_allclose(draws.mean(axis=0), mu, rtol=0.05, atol=0.05)
    # over-dispersed genes: variance = mu + mu^2 / r
    finite = np.isfinite(gen._size[i]) & (mu > 1)
    var = mu[finite] + mu[finite] ** 2 / gen._size[i][finite]
    np.testing.assert_allclose(draws[:, finite].var(axis=0), var, rtol=0.15)


def test_nb_output_valid_and_conditional(train_adata):
    gen = _fit(NegativeBinomial, train_adata)
    req = {"t0": 7, "t1": 0, "t2": 4}
    out = gen.generate(req, seed=0)
    validate_output(gen, out, var_names=list(train_adata.var_names), label_key="cell_type",
                    known_labels=gen.labels, requested=req)  # fmt: skip
    np.testing.assert_allclose(out.X.sum(axis=1).A1, 20000, rtol=1e-4)
    # type-specific block is expressed higher in its own type
    t0 = out[out.obs.cell_type == "t0"].X.toarray()
    assert t0[:, :20].mean() > 2 * t0[:, 20:40].mean()


def test_nb_save_load_roundtrip(train_adata, tmp_path):
    gen = _fit(NegativeBinomial, train_adata)
    gen.save(tmp_path / "m")
    again = NegativeBinomial.load(tmp_path / "m")
    a, b = gen.generate({"t0": 5}, seed=2), again.generate({"t0": 5}, seed=2)
    assert (a.X != b.X).nnz == 0


def test_unknown_parameter_is_user_error():
    from bench.api.errors import UserError

    with pytest.raises(UserError, match="unknown parameter"):
        NegativeBinomial(dispersion=3)


def test_validate_output_catches_problems(train_adata):
    gen = _fit(RealControl, train_adata)
    out = gen.generate(10, seed=0)
    kw = dict(var_names=list(train_adata.var_names), label_key="cell_type", known_labels=gen.labels)
    with pytest.raises(TaskFailed, match="generated 10 cells, 11"):
        validate_output(gen, out, requested=11, **kw)
    bad = out.copy()
    bad.var_names = list(reversed(bad.var_names))
    with pytest.raises(TaskFailed, match="var_names"):
        validate_output(gen, bad, requested=10, **kw)
    bad = out.copy()
    bad.X = bad.X * 0.5
    with pytest.raises(TaskFailed, match="20,000"):
        validate_output(gen, bad, requested=10, **kw)
    bad = out.copy()
    bad.X = bad.X.toarray()
    bad.X[0, 0] = np.nan
    with pytest.raises(TaskFailed, match="NaN"):
        validate_output(gen, bad, requested=10, **kw)
    bad = out.copy()
    bad.obs["cell_type"] = "alien"
    with pytest.raises(TaskFailed, match="not in the training set"):
        validate_output(gen, bad, requested={"alien": 10}, **kw)


def test_permute_columns_keeps_every_marginal_and_destroys_correlation():
    import scipy.sparse as sp

    from bench.generators.baselines import permute_columns

    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 1))
    X = np.maximum(
        np.round(np.hstack([z, z, -z, rng.normal(size=(400, 2))]) * 3 + 2), 0
    )  # 3 correlated genes
    for inp in (X, sp.csr_matrix(X)):
        out = permute_columns(inp, np.random.default_rng(1))
        assert sp.issparse(out) and out.shape == X.shape
        D = out.toarray()
        np.testing.assert_array_equal(np.sort(D, axis=0), np.sort(X, axis=0))  # each gene's values kept
        assert np.corrcoef(X[:, 0], X[:, 1])[0, 1] > 0.99
        assert (
            abs(np.corrcoef(D[:, 0], D[:, 1])[0, 1]) < 0.15
            and abs(np.corrcoef(D[:, 0], D[:, 2])[0, 1]) < 0.15
        )
    a = permute_columns(sp.csr_matrix(X), np.random.default_rng(5))
    b = permute_columns(sp.csr_matrix(X), np.random.default_rng(5))
    assert (a != b).nnz == 0  # seeded


def test_shuffled_control_keeps_marginals_and_breaks_types(train_adata):
    gen = _fit(ShuffledControl, train_adata)
    counts = train_adata.layers["counts"].toarray()
    # fit permuted each gene's raw counts across the training cells: same values per gene
    np.testing.assert_array_equal(np.sort(gen._X.toarray(), axis=0), np.sort(counts, axis=0))
    assert not np.array_equal(gen._X.toarray(), counts)
    req = {"t0": 30, "t2": 20}
    out = gen.generate(req, seed=1)
    validate_output(gen, out, var_names=list(train_adata.var_names), label_key="cell_type",
                    known_labels=["t0", "t1", "t2"], requested=req)  # fmt: skip
    assert out.obs["cell_type"].value_counts().to_dict() == req
    # the cells "of" t0 carry no t0 signature: its marker block is no higher than in real t1 cells
    X = out.X.toarray()
    t0_real = counts[train_adata.obs["cell_type"] == "t0"][:, :20].mean()
    t0_shuffled = X[(out.obs["cell_type"] == "t0").to_numpy()][:, :20].mean()
    assert t0_shuffled < 0.7 * t0_real
    assert (gen.generate(40, seed=3).X != gen.generate(40, seed=3).X).nnz == 0  # seeded
    again = _fit(ShuffledControl, train_adata)
    assert (again._X != gen._X).nnz == 0  # the permutation is seeded by the fit's seed


def test_shuffled_is_a_registered_control():
    from bench.config import CONTROLS, build_spec
    from bench.registry import get_generator

    assert get_generator("shuffled") is ShuffledControl and CONTROLS == ("real", "shuffled")
    assert build_spec(None, models=["nb"]).models == ["nb", "real", "shuffled"]
    assert build_spec(None, models=["nb"], control=False).models == ["nb"]


def test_real_draws_with_replacement_only_for_a_label_short_of_cells(train_adata):
    """What the `real` description says: without replacement, except for a label that asks for
    more cells than the training set holds (the augmentation experiment's rare class)."""
    gen = _fit(RealControl, train_adata)
    y = train_adata.obs["cell_type"].astype(str).to_numpy()
    n_t1 = int((y == "t1").sum())
    out = gen.generate({"t0": int((y == "t0").sum()), "t1": 3 * n_t1}, seed=2)
    X = out.X.toarray()
    labels = out.obs["cell_type"].astype(str).to_numpy()
    t0_rows = {tuple(r) for r in X[labels == "t0"].round(3)}
    assert len(t0_rows) == (labels == "t0").sum()  # every t0 training cell exactly once
    assert t0_rows == {tuple(r) for r in train_adata.X.toarray()[y == "t0"].round(3)}
    t1_rows = [tuple(r) for r in X[labels == "t1"].round(3)]
    assert len(t1_rows) == 3 * n_t1 and len(set(t1_rows)) < len(t1_rows)  # repeats: with replacement
    unconditional = gen.generate(train_adata.n_obs // 2, seed=2).X.toarray().round(3)
    assert len({tuple(r) for r in unconditional}) == train_adata.n_obs // 2  # no repeats
