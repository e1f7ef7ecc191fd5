"""The ``scvi`` generator (scvi-tools): training on counts with the type as a covariate, new cells
from the prior, posterior-predictive mode, seeds, snapshots, the deadline, save/load, quiet logs."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from bench.api.errors import TaskFailed, UserError
from bench.api.generator import validate_output
from tests.conftest import fit_generator, make_counts

scvi = pytest.importorskip("scvi")

from bench.generators.scvi import ScviGenerator  # noqa: E402

EPOCHS = 3
TINY = {"max_epochs": EPOCHS, "n_epochs_kl_warmup": 1, "batch_size": 32, "n_hidden": 16, "n_latent": 4}


def _train(seed: int = 0, n_cells: int = 150):
    train = make_counts(n_cells=n_cells, n_genes=40, seed=seed)
    train.layers["counts"] = train.X.copy()
    # library sizes that differ by type, so "drawn from that type's training cells" is checkable
    scale = np.where(train.obs["cell_type"] == "t2", 3, 1)
    train.layers["counts"] = train.layers["counts"].multiply(scale[:, None]).tocsr()
    return train


@pytest.fixture(scope="module")
def fitted():
    train = _train()
    gen = ScviGenerator(**TINY)
    result = fit_generator(gen, train, seed=0)
    return gen, train, result


def test_fit_reports_steps_cells_seen_and_history(fitted):
    gen, train, result = fitted
    n_train = round(0.9 * train.n_obs)  # scvi-tools keeps 10 % for validation
    assert result.epochs == EPOCHS
    assert result.steps == EPOCHS * int(np.ceil(n_train / 32))
    assert result.cells_seen == EPOCHS * n_train
    assert len(result.history["elbo_train"]) == EPOCHS
    assert np.isfinite(result.extra["elbo_validation"]) and result.extra["device"] == "cpu"
    assert result.extra["max_epochs"] == EPOCHS and result.extra["stopped_early"] is False


def test_model_is_conditional_on_the_label_and_trained_on_counts(fitted):
    gen, train, _ = fitted
    reg = gen.model.adata_manager.registry["setup_args"]
    assert reg["categorical_covariate_keys"] == ["cell_type"] and reg["layer"] is None
    np.testing.assert_array_equal(gen.model.adata.X.toarray(), train.layers["counts"].toarray())
    assert gen.model.module.gene_likelihood == "nb" and gen.model.module.encode_covariates is False


def test_prior_generation_is_conditional_seeded_and_valid(fitted):
    gen, train, _ = fitted
    req = {"t0": 6, "t1": 0, "t2": 9}
    kw = dict(var_names=list(train.var_names), label_key="cell_type", known_labels=gen.labels)
    out = validate_output(gen, gen.generate(req, seed=4), requested=req, **kw)
    assert out.obs["cell_type"].value_counts().to_dict() == {"t2": 9, "t0": 6}
    assert np.all(out.X.data == np.round(out.X.data))  # counts from the NB
    again, other = gen.generate(req, seed=4), gen.generate(req, seed=5)
    assert (again.X != out.X).nnz == 0 and (other.X != out.X).nnz > 0
    un = validate_output(gen, gen.generate(300, seed=1), requested=300, **kw)
    shares = un.obs["cell_type"].value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.08)  # training proportions


@pytest.mark.parametrize("mode", ["prior", "posterior_predictive"])
def test_library_sizes_follow_the_types_training_cells(fitted, mode):
    """NB means sum to the library size, so a type's generated totals average its training
    cells' library sizes (type t2 has three times the counts of t0)."""
    gen, train, _ = fitted
    gen.params["mode"] = mode
    try:
        out = gen.generate({"t0": 1500, "t2": 1500}, seed=2)
    finally:
        gen.params["mode"] = "prior"
    totals = np.asarray(out.X.sum(axis=1)).ravel()
    lib = np.asarray(train.layers["counts"].sum(axis=1)).ravel()
    for lab in ("t0", "t2"):
        want = lib[(train.obs["cell_type"] == lab).to_numpy()].mean()
        got = totals[(out.obs["cell_type"] == lab).to_numpy()].mean()
        assert got == pytest.approx(want, rel=0.05)


def test_prior_and_posterior_predictive_differ(fitted):
    gen, _, _ = fitted
    prior = gen.generate({"t1": 50}, seed=3)
    gen.params["mode"] = "posterior_predictive"
    try:
        post = gen.generate({"t1": 50}, seed=3)
    finally:
        gen.params["mode"] = "prior"
    assert (prior.X != post.X).nnz > 0


def test_same_seed_same_model_different_seed_differs():
    train = _train()
    weights = []
    for seed in (1, 1, 2):
        gen = ScviGenerator(**{**TINY, "max_epochs": 1})
        fit_generator(gen, train, seed=seed)
        weights.append(gen.model.module.px_r.detach().clone())
    assert np.array_equal(weights[0].numpy(), weights[1].numpy())
    assert not np.array_equal(weights[0].numpy(), weights[2].numpy())


def test_snapshots_at_the_contract_steps():
    from bench.api.generator import SNAPSHOT_FRACTIONS

    train = _train()
    seen = []

    def grab(snap):
        cells = snap.cells(20, 0) if callable(snap.cells) else snap.cells
        seen.append((snap.step, snap.cells_seen, cells.n_obs, cells.n_vars))

    gen = ScviGenerator(**{**TINY, "max_epochs": 4})
    result = fit_generator(gen, train, seed=0, snapshot_fractions=SNAPSHOT_FRACTIONS, on_snapshot=grab)
    from bench.api.generator import FitContext

    want = FitContext(label_key="x", seed=0, snapshot_fractions=SNAPSHOT_FRACTIONS, on_snapshot=grab)
    assert [s[0] for s in seen] == want.snapshot_steps(result.steps)
    per_step = result.cells_seen / result.steps
    for step, cells_seen, n_obs, n_vars in seen:
        assert cells_seen == pytest.approx(step * per_step, abs=32) and (n_obs, n_vars) == (20, 40)
    assert gen.model.module.training is False  # generation mid-training left no mode behind


@pytest.mark.parametrize(
    "budget, steps, cells_seen", [("7 steps", 7, 135 + 2 * 32), ("3 epochs", 15, 3 * 135)]
)
def test_budget_in_steps_or_epochs_sets_the_length_and_keeps_the_warm_up_share(budget, steps, cells_seen):
    """135 training cells (90 % of 150) in batches of 32: 5 steps per epoch. The unbudgeted schedule
    (4 epochs, KL warm-up over 2) puts half of it in the warm-up; the budget keeps that half, in steps,
    and the snapshots fall at the budget's fractions."""
    from bench.api.generator import SNAPSHOT_FRACTIONS, FitContext

    seen = []
    gen = ScviGenerator(**{**TINY, "max_epochs": 4, "n_epochs_kl_warmup": 2, "budget": budget})
    result = fit_generator(
        gen,
        _train(),
        seed=0,
        snapshot_fractions=SNAPSHOT_FRACTIONS,
        on_snapshot=lambda s: seen.append(s.step),
    )
    assert (result.steps, result.cells_seen) == (steps, cells_seen)
    assert result.extra["budget"] == budget and result.extra["max_steps"] == steps
    assert result.extra["stopped_early"] is False
    plan = gen.model.trainer.lightning_module
    assert (plan.n_epochs_kl_warmup, plan.n_steps_kl_warmup) == (None, round(steps / 2))
    want = FitContext(label_key="x", seed=0, snapshot_fractions=SNAPSHOT_FRACTIONS, on_snapshot=print)
    assert seen == want.snapshot_steps(steps)


def test_minutes_budget_stops_after_the_epoch_that_uses_up_the_time():
    from bench.api.generator import SNAPSHOT_FRACTIONS

    seen = []
    gen = ScviGenerator(**{**TINY, "max_epochs": 50, "budget": "0.001 minutes"})
    result = fit_generator(
        gen, _train(), seed=0, snapshot_fractions=SNAPSHOT_FRACTIONS, on_snapshot=seen.append
    )
    # 0.06 s: stops after the epoch that uses it up (one epoch on a slow machine, a few on a fast one),
    # far before max_epochs
    assert 1 <= result.epochs < 50 and result.steps == 5 * result.epochs
    assert result.extra["max_steps"] == -1 and result.extra["stopped_early"] is False
    steps = [s.step for s in seen]
    assert steps == sorted(set(steps)) and all(x % 5 == 0 for x in steps)  # at epoch ends
    assert steps[-1] == result.steps and seen[-1].train_seconds >= 0.06  # the last one at the end


def test_standard_profile_is_scvi_tools_default_length_on_pbmc3k_as_a_step_budget():
    """pbmc3k's 2,429 training cells: scvi-tools' heuristic trains 400 epochs of ceil(0.9 x 2,429 / 128)
    = 18 steps with the KL warm-up over all 400; the standard profile's 7,200-step budget is the same
    length with the warm-up over all 7,200 steps, and keeps that length on any dataset size."""
    paper = ScviGenerator(**ScviGenerator.params_for_profile("paper"))
    standard = ScviGenerator(**ScviGenerator.params_for_profile("standard"))
    assert paper._schedule(2429) == (400, -1, {"n_epochs_kl_warmup": 400})
    assert standard._schedule(2429) == (400, 7200, {"n_epochs_kl_warmup": None, "n_steps_kl_warmup": 7200})
    assert paper._schedule(40_000)[0] == 200  # scvi-tools' heuristic shortens large datasets...
    assert standard._schedule(40_000)[1] == 7200  # ...a budget in steps does not


def test_deadline_stops_training():
    train = _train()
    gen = ScviGenerator(**{**TINY, "max_epochs": 50})
    with pytest.raises(TaskFailed, match="time limit"):
        fit_generator(gen, train, seed=0, deadline=time.monotonic() - 1)


def test_save_load_with_scvi_tools_round_trips(fitted, tmp_path):
    gen, _, _ = fitted
    gen.save(tmp_path / "m")
    assert (tmp_path / "m" / "scvi_model" / "model.pt").exists()
    again = ScviGenerator.load(tmp_path / "m")
    assert again.labels == gen.labels and again.var_names == gen.var_names and again.params == gen.params
    a, b = gen.generate({"t0": 5, "t1": 7}, seed=9), again.generate({"t0": 5, "t1": 7}, seed=9)
    assert (a.X != b.X).nnz == 0


def test_zinb_and_encoder_covariate_options():
    train = _train()
    gen = ScviGenerator(**{**TINY, "max_epochs": 1, "gene_likelihood": "zinb", "encode_label": True})
    fit_generator(gen, train, seed=0)
    assert gen.model.module.gene_likelihood == "zinb" and gen.model.module.encode_covariates is True
    for mode in ("prior", "posterior_predictive"):
        gen.params["mode"] = mode
        out = gen.generate({"t0": 20}, seed=0)
        assert out.n_obs == 20 and np.all(out.X.data == np.round(out.X.data))


@pytest.mark.parametrize("progress", [False, True])
def test_lightning_chatter_is_silenced(capfd, progress):
    gen = ScviGenerator(**{**TINY, "max_epochs": 1})
    fit_generator(gen, _train(), seed=0, progress=progress)
    out = "".join(capfd.readouterr())
    for chatter in (
        "GPU available",
        "TPU available",
        "Seed set",
        "srun",
        "LitLogger",
        "Trainer.fit",
        "LeafSpec",
    ):
        assert chatter not in out
    assert ("Epoch 1/1" in out) is progress  # the progress bar only when asked for


@pytest.mark.parametrize(
    "params, needle",
    [({"mode": "sample"}, "mode = .sample. is not supported"), ({"gene_likelihood": "poisson"}, "gene_likelihood"),
     ({"dispersion": "gene-batch"}, "dispersion"), ({"max_epochs": -1}, "max_epochs"), ({"train_size": 0}, "train_size"), ({"epochs": 3}, "unknown parameter"),
     ({"budget": "3 parsecs"}, "not a training budget")],
)  # fmt: skip
def test_bad_parameters_are_user_errors(params, needle):
    with pytest.raises(UserError, match=needle):
        ScviGenerator(**params)


def test_generate_before_fit_fails():
    with pytest.raises(TaskFailed, match="before fit"):
        ScviGenerator().generate(3, seed=0)


@pytest.mark.slow
def test_both_count_models_run_in_the_harness(tmp_path, capsys):
    """`bench run` with scvi and copula through their entry points, both experiments (main and the
    rare-type augmentation, which refits each model per fraction), on a small count file."""
    from bench.cli import main
    from bench.store import Store

    path = tmp_path / "cells.h5ad"
    make_counts(n_cells=300, n_genes=60, n_types=3, seed=12).write_h5ad(path)
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'datasets = ["' + str(path) + '"]\nlabel_key = "cell_type"\nseeds = [0]\n'
        'metrics = {select = ["mean_corr", "mmd", "correlation_discrepancy", "augmentation"], augmentation = {n_trees = 20}}\n'
        "[models.copula]\ncopula_genes = 20\n"
        "[models.scvi]\nmax_epochs = 2\nn_epochs_kl_warmup = 1\nn_hidden = 16\n"
    )
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    with Store(tmp_path / "run") as store:
        values = store.values()
    for model in ("copula", "scvi"):
        mine = values[values.model == model]
        assert {"mean_corr", "mmd", "cd"} <= set(mine.metric), model
        assert mine.metric.str.startswith("f1_augmented").any(), model
        assert np.isfinite(mine.value).all(), model
    assert "copula" in capsys.readouterr().out


def test_profiles_paper_is_scvi_tools_defaults_and_quick_is_shorter():
    import inspect

    from scvi.module import VAE
    from scvi.train import TrainingPlan

    def defaults(fn):
        return {k: v.default for k, v in inspect.signature(fn).parameters.items()}

    for prof in ScviGenerator.profiles.values():
        assert set(prof) <= set(ScviGenerator.parameters)
    paper = ScviGenerator.params_for_profile("paper")
    assert paper == ScviGenerator.parameters
    assert ScviGenerator.profiles["standard"] == {"budget": "7200 steps"}  # the same length on pbmc3k
    model, vae, plan, train = (defaults(f) for f in (scvi.model.SCVI.__init__, VAE.__init__, TrainingPlan.__init__,
                                                      scvi.model.SCVI.train))  # fmt: skip
    for key in ("n_latent", "n_hidden", "n_layers", "dropout_rate", "dispersion"):
        assert paper[key] == model[key], key
    assert paper["encode_label"] == vae["encode_covariates"]
    assert (paper["lr"], paper["n_epochs_kl_warmup"]) == (plan["lr"], plan["n_epochs_kl_warmup"])
    assert (paper["batch_size"], paper["early_stopping"]) == (train["batch_size"], train["early_stopping"])
    assert paper["max_epochs"] == 0 and train["max_epochs"] is None  # both mean scvi-tools' heuristic
    assert model["gene_likelihood"] == "zinb" and paper["gene_likelihood"] == "nb"  # the documented departure
    quick = ScviGenerator.params_for_profile("quick")
    assert (quick["max_epochs"], quick["n_epochs_kl_warmup"], quick["lr"]) == (120, 60, 3e-3)


def test_the_scvi_extra_pins_the_last_release_for_python_311_and_setup_installs_it():
    """scvi-tools 1.4.2 is the last release for Python 3.11 (1.4.3 needs 3.12): the `[scvi]` extra
    allows it and not 1.4.3 on 3.11, newer releases on 3.12, and setup.sh installs the extra."""
    import sys
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parent.parent
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["scvi"]

    def allowed(version: str, python: str) -> bool:
        reqs = [
            r
            for r in map(Requirement, extra)
            if r.marker is None or r.marker.evaluate({"python_version": python})
        ]
        return any(r.name == "scvi-tools" and r.specifier.contains(version) for r in reqs)

    assert allowed("1.4.2", "3.11") and not allowed("1.4.3", "3.11") and not allowed("1.3.3", "3.11")
    assert allowed("1.4.3", "3.12") and allowed("1.5.0", "3.13")
    assert allowed(scvi.__version__, f"{sys.version_info.major}.{sys.version_info.minor}")  # what runs here
    setup = (root / "scripts" / "setup.sh").read_text()
    extras = re.search(r'pip install -e "\.\[([\w,]+)\]"', setup).group(1).split(",")
    assert "scvi" in extras
