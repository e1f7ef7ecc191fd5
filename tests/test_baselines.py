import numpy as np
import pytest
from bench.generators.base import validate_output
from bench.generators.baselines import NegativeBinomial, RealControl

from bench.errors import TaskFailed
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
    from bench.errors import UserError

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
