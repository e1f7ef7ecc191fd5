"""CFGen (bench.generators.cfgen): known answers for its pieces (the NB likelihood, the flow's path
and target, guidance, the ODE solver), the generation contract on tiny data, budgets, save/load, and
one quick fit on the bundled pbmc3k that must beat the shuffled control's MMD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from bench.api import TaskFailed, UserError
from bench.api.generator import FitContext, validate_output
from bench.generators.cfgen import CfgenGenerator
from bench.generators.cfgen.flow import dopri5, euler, guided_velocity, probability_path, sample_times
from bench.generators.cfgen.nb import nb_log_prob, sample_nb
from bench.generators.cfgen.networks import timestep_embedding
from bench.generators.cfgen.train import CfgenTrainer, TrainConfig
from tests.conftest import fit_generator

TINY = {
    "ae_dims": [16, 4],
    "ae_epochs": 3,
    "ae_batch_size": 32,
    "fm_epochs": 4,
    "fm_batch_size": 32,
    "fm_hidden": 8,
    "fm_lr": 1e-3,
    "gen_chunk": 40,
}


# -- known answers ------------------------------------------------------------------------------------
def test_nb_log_likelihood_equals_scipy_nbinom():
    x = torch.tensor([0.0, 1.0, 3.0, 10.0, 57.0, 0.0, 200.0], dtype=torch.float64)
    mu = torch.tensor([0.5, 2.0, 3.0, 8.0, 40.0, 1e-3, 150.0], dtype=torch.float64)
    theta = torch.tensor([0.1, 1.0, 5.0, 2.5, 30.0, 0.7, 0.9], dtype=torch.float64)
    ours = nb_log_prob(x, mu, theta, eps=0.0).numpy()
    ref = stats.nbinom.logpmf(x.numpy(), n=theta.numpy(), p=(theta / (theta + mu)).numpy())
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
    # with scvi-tools' eps = 1e-8 inside the logs (the training loss), close on ordinary values
    np.testing.assert_allclose(nb_log_prob(x[:5], mu[:5], theta[:5]).numpy(), ref[:5], rtol=1e-6)


def test_nb_sampler_has_the_nb_mean_and_variance():
    rng = np.random.default_rng(0)
    mu, theta = np.array([[0.0, 2.0, 20.0]]), np.array([1.0, 0.5, 4.0])
    draws = sample_nb(np.repeat(mu, 200_000, axis=0), theta, rng)
    assert draws.dtype == np.float32 and (draws[:, 0] == 0).all() and (draws == np.round(draws)).all()
    np.testing.assert_allclose(draws[:, 1:].mean(0), mu[0, 1:], rtol=0.02)
    np.testing.assert_allclose(draws[:, 1:].var(0), mu[0, 1:] + mu[0, 1:] ** 2 / theta[1:], rtol=0.05)


def test_probability_path_and_target_on_a_tiny_case():
    """Lipman et al. 2023's path as the released FM computes it with use_ot = False (fm.py
    compute_mu_t / compute_sigma_t / compute_conditional_flow): x_t = t x1 + (1 - (1 - s) t) eps,
    u_t = (x1 - (1 - s) x_t) / (1 - (1 - s) t), which equals x1 - (1 - s) eps."""
    x1 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    eps = torch.tensor([[0.3, 0.1], [-1.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([0.25, 0.8], dtype=torch.float64)
    s = 0.1
    xt, ut = probability_path(x1, eps, t, s)
    hand_xt = [
        [0.25 * 1 + 0.775 * 0.3, 0.25 * -2 + 0.775 * 0.1],
        [0.8 * 0.5 + 0.28 * -1.0, 0.8 * 3 + 0.28 * 2.0],
    ]
    np.testing.assert_allclose(xt.numpy(), hand_xt, rtol=1e-12)
    np.testing.assert_allclose(ut.numpy(), (x1 - 0.9 * eps).numpy(), rtol=1e-12)
    # end points: pure noise at t = 0, the latent (plus sigma eps) at t = 1
    x0, _ = probability_path(x1, eps, torch.zeros(2, dtype=torch.float64), s)
    xe, _ = probability_path(x1, eps, torch.ones(2, dtype=torch.float64), s)
    np.testing.assert_allclose(x0.numpy(), eps.numpy())
    np.testing.assert_allclose(xe.numpy(), (x1 + s * eps).numpy(), rtol=1e-12)


def test_antithetic_times_put_one_time_in_each_stratum():
    gen = torch.Generator().manual_seed(3)
    t = sample_times(8, antithetic=True, gen=gen, device=torch.device("cpu"))
    assert t.shape == (8,)
    np.testing.assert_array_equal(np.floor(t.numpy() * 8), np.arange(8))
    np.testing.assert_allclose(np.diff(t.numpy()), 1 / 8, rtol=1e-5)  # one offset, equal spacing
    assert sample_times(5, antithetic=False, gen=gen, device=torch.device("cpu")).shape == (5,)


def test_compositional_guidance_against_a_hand_computation():
    u = torch.tensor([[1.0, 2.0]])
    c1, c2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[-1.0, 4.0]])
    # u + 2 (c1 - u) + 0.5 (c2 - u) = [1 + 4 - 1, 2 - 4 + 1]
    np.testing.assert_allclose(guided_velocity(u, [c1, c2], [2.0, 0.5]).numpy(), [[4.0, -1.0]])
    np.testing.assert_allclose(guided_velocity(u, [c1], [0.0]).numpy(), u.numpy())
    np.testing.assert_allclose(guided_velocity(u, [c1], [1.0]).numpy(), c1.numpy())


def test_timestep_embedding_is_the_released_sinusoid():
    t = torch.tensor([0.0, 0.3, 1.0])
    emb = timestep_embedding(t, 6)
    inv = 10.0 ** np.linspace(0, -4, 3)
    arg = (t.numpy() * 1000)[:, None] * inv[None, :]
    np.testing.assert_allclose(
        emb.numpy(), np.concatenate([np.sin(arg), np.cos(arg)], 1), rtol=1e-5, atol=1e-5
    )


def test_dopri5_and_euler_solve_a_linear_ode():
    x0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    a = torch.tensor([0.7, -1.3], dtype=torch.float64)
    exact = (x0 * torch.exp(a)).numpy()
    x1, nfe = dopri5(lambda t, x: a * x, x0, atol=1e-9, rtol=1e-9)
    np.testing.assert_allclose(x1.numpy(), exact, rtol=1e-7)
    assert nfe > 7
    # a time-dependent field: dx/dt = 2t  ->  x(1) = x(0) + 1
    y1, _ = dopri5(lambda t, x: 2 * t * torch.ones_like(x), x0, atol=1e-8, rtol=1e-8)
    np.testing.assert_allclose(y1.numpy(), (x0 + 1).numpy(), rtol=1e-8)
    e1, steps = euler(lambda t, x: a * x, x0, 1000)
    assert steps == 1000
    np.testing.assert_allclose(e1.numpy(), exact, rtol=2e-3)


@pytest.mark.parametrize("solver", ["dopri5", "euler"])
def test_guidance_weight_zero_is_unconditional_sampling(solver):
    """w = 0: the guided field is the unconditional one (no label embedding), for any label."""
    torch.manual_seed(0)
    tr = CfgenTrainer(TrainConfig(n_genes=10, n_labels=3, ae_dims=[8, 4], fm_hidden=8), seed=0, device="cpu")
    with torch.no_grad():  # make the label embedding matter
        tr.flow.label_embedding.weight.mul_(5.0)
        for block in tr.flow.blocks:
            torch.nn.init.normal_(block.net2[-1].weight, std=0.5)
    labels = torch.tensor([0, 1, 2, 1])
    log_sf = torch.zeros(4)
    kw = {"solver": solver, "ode_steps": 20, "atol": 1e-6, "rtol": 1e-6}
    guided0, _ = tr.sample_latents(
        labels, log_sf, torch.Generator().manual_seed(5), guidance_weight=0.0, **kw
    )
    z = torch.randn((4, 4), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        field = lambda t, x: tr.flow(x, t, log_sf, None)  # noqa: E731
        ref = euler(field, z, 20)[0] if solver == "euler" else dopri5(field, z, atol=1e-6, rtol=1e-6)[0]
    np.testing.assert_allclose(guided0.numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    guided1, _ = tr.sample_latents(
        labels, log_sf, torch.Generator().manual_seed(5), guidance_weight=1.0, **kw
    )
    assert not torch.allclose(guided1, guided0, atol=1e-3)  # the labels do change the field


# -- the generator on tiny data ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    from bench.api.generator import to_library_size
    from tests.conftest import make_counts

    a = make_counts(n_cells=150, n_genes=30, n_types=3, seed=4)
    a.layers["counts"] = a.X.copy()
    a.X = to_library_size(a.X)
    gen = CfgenGenerator(**TINY)
    res = fit_generator(gen, a, seed=0, device="cpu")
    return gen, res, a


def test_generation_contract_counts_labels_dtype_and_seed(fitted):
    gen, res, a = fitted
    req = {"t0": 7, "t2": 5}
    out = gen.generate(req, seed=1)
    validate_output(gen, out, var_names=list(a.var_names), label_key="cell_type", known_labels=gen.labels,
                    requested=req)  # fmt: skip
    assert out.shape == (12, 30) and out.X.dtype == np.float32
    X = out.X.toarray()
    assert (np.round(X) == X).all() and (X >= 0).all()  # counts: the declared scale
    assert out.obs["cell_type"].astype(str).value_counts().to_dict() == req
    assert gen.output_scale == "counts" and gen.conditional
    again = gen.generate(req, seed=1).X
    assert (again != out.X).nnz == 0  # seeded
    assert (gen.generate(req, seed=2).X != out.X).nnz > 0
    one = gen.generate({"t1": 1}, seed=5)  # one cell: a batch of one through the ODE and the embeddings
    assert one.shape == (1, 30) and list(one.obs["cell_type"]) == ["t1"]
    un = gen.generate(20, seed=3)
    validate_output(gen, un, var_names=list(a.var_names), label_key="cell_type", known_labels=gen.labels,
                    requested=20)  # fmt: skip
    assert set(un.obs["cell_type"].astype(str)) <= set(gen.labels)


def test_fit_reports_both_stages(fitted):
    gen, res, a = fitted
    n_train = 150 - 15  # valid_fraction 0.1 held out of each stage
    ae_steps, fm_steps = 3 * (n_train // 32), 4 * (n_train // 32)
    assert res.steps == ae_steps + fm_steps
    assert res.cells_seen == (ae_steps + fm_steps) * 32
    extra = res.extra
    assert extra["autoencoder_steps"] == ae_steps and extra["flow_steps"] == fm_steps
    assert extra["precision"] == "fp32" and extra["device"] == "cpu" and extra["data_on_device"]
    assert len(res.history["ae_loss"]) == 3 and len(res.history["fm_loss"]) == 4
    assert np.isfinite(extra["ae_valid_loss"]) and np.isfinite(extra["fm_valid_loss"])


def test_generated_library_sizes_follow_the_types(fitted):
    gen, _, a = fitted
    out = gen.generate({"t0": 300}, seed=4)
    real = np.log(np.asarray(a.layers["counts"][(a.obs["cell_type"] == "t0").to_numpy()].sum(1)).ravel())
    fake = np.log(np.asarray(out.X.sum(1)).ravel())
    assert abs(np.median(fake) - np.median(real)) < 0.15


def test_save_load_round_trip(fitted, tmp_path):
    gen, _, _ = fitted
    gen.save(tmp_path / "m")
    back = CfgenGenerator.load(tmp_path / "m")
    assert back.labels == gen.labels and back.var_names == gen.var_names
    assert (back.generate({"t1": 6}, seed=9).X != gen.generate({"t1": 6}, seed=9).X).nnz == 0


@pytest.mark.parametrize(("budget", "steps"), [("10 steps", 10), ("2 epochs", None)])
def test_budget_rescales_both_stages(budget, steps, counts_adata):
    from bench.api.generator import to_library_size

    a = counts_adata.copy()
    a.layers["counts"] = a.X.copy()
    a.X = to_library_size(a.X)
    gen = CfgenGenerator(**{**TINY, "budget": budget})
    res = fit_generator(gen, a, seed=0)
    ae, fm = res.extra["autoencoder_steps"], res.extra["flow_steps"]
    per = (120 - 12) // 32  # 3 steps per epoch for both stages
    if steps is not None:
        assert ae + fm == steps and fm / (ae + fm) == pytest.approx(4 / 7, abs=0.1)
    else:  # 2 of the schedule's 7 epochs, shared 3:4
        assert ae + fm == round(2 / 7 * 3 * per) + round(2 / 7 * 4 * per)


def test_snapshots_over_the_flow_stage(counts_adata):
    """Convergence snapshots at the epoch ends that pass 1/8, 1/4, 1/2 and all of the flow's steps
    (the flow is what generates); each hands the harness valid cells."""
    from bench.api.generator import to_library_size

    a = counts_adata.copy()
    a.layers["counts"] = a.X.copy()
    a.X = to_library_size(a.X)
    seen = []

    def on_snapshot(snap):
        cells = snap.cells(10, 0)
        seen.append((snap.step, snap.cells_seen, cells.shape))

    res = fit_generator(gen := CfgenGenerator(**TINY), a, seed=0, on_snapshot=on_snapshot,
                        snapshot_fractions=(0.125, 0.25, 0.5, 1.0), snapshot_cells=10)  # fmt: skip
    ae = res.extra["autoencoder_steps"]  # 3 epochs of 3 steps; the flow: 4 epochs of 3 steps
    assert [s for s, _, _ in seen] == [ae + 3, ae + 6, ae + 12] and seen[-1][0] == res.steps
    assert all(shape == (10, 60) for _, _, shape in seen) and seen[-1][1] == res.cells_seen
    assert gen.trainer.steps["flow"] == 12


def test_deadline_stops_training(counts_adata):
    import time

    from bench.api.generator import bind_training_data

    gen = CfgenGenerator(**TINY)
    a = counts_adata.copy()
    a.layers["counts"] = a.X.copy()
    bind_training_data(gen, a, "cell_type")
    with pytest.raises(TaskFailed, match="time limit"):
        gen.fit(a, FitContext(label_key="cell_type", seed=0, deadline=time.monotonic() - 1))


@pytest.mark.parametrize(
    ("params", "needle"),
    [({"solver": "rk4"}, "solver"), ({"guidance_weight": -1.0}, "guidance_weight"), ({"budget": "3 weeks"}, "budget"),
     ({"ae_dims": [16, 0]}, "ae_dims"), ({"nope": 1}, "nope")],
)  # fmt: skip
def test_bad_parameters_are_user_errors(params, needle):
    with pytest.raises(UserError, match=needle):
        CfgenGenerator(**params)


def test_generate_before_fit_and_unknown_label_fail(fitted):
    with pytest.raises(TaskFailed, match="before fit"):
        CfgenGenerator().generate(3, seed=0)
    with pytest.raises(UserError, match="unknown cell type"):
        fitted[0].generate({"nope": 2}, seed=0)


def test_profiles_are_declared_parameters_and_paper_is_the_released_recipe():
    for prof in CfgenGenerator.profiles.values():
        assert set(prof) <= set(CfgenGenerator.parameters)
    paper = CfgenGenerator.params_for_profile("paper")
    assert paper["ae_epochs"] == 300 and paper["fm_epochs"] == 1500 and paper["fm_batch_size"] == 64
    assert paper["ae_dims"] == [512, 256, 50] and (paper["fm_hidden"], paper["fm_blocks"]) == (32, 3)
    assert math.isclose(paper["conditioning_probability"], 0.8) and paper["solver"] == "dopri5"


def test_speed_probe_trains_both_stages_and_samples():
    from bench.pipeline import speed_probe

    probe = speed_probe("cfgen", 20, 3, seed=0, device="cpu", batch_size=16, precision="fp32", mode="eager")
    X = torch.poisson(torch.full((40, 20), 3.0))
    y = torch.arange(40) % 3
    logs = probe.train_epoch(X, y)
    assert {"ae_loss", "fm_loss"} <= set(logs) and probe.steps == 2 * (40 // 16)
    assert probe.cells_seen == 2 * 32 and probe.graphed_steps == 0
    chunk, decode = probe.sampler()
    cells = decode(5, torch.Generator().manual_seed(0))
    assert chunk >= 1 and cells.shape == (5, 20) and cells.dtype == torch.float32
    with pytest.raises(UserError, match="fp32"):
        speed_probe("cfgen", 20, 3, seed=0, device="cpu", batch_size=16, precision="bf16", mode="eager")


# -- end to end on the bundled data ------------------------------------------------------------------
@pytest.mark.slow
def test_quick_fit_on_pbmc3k_beats_the_shuffled_control(tmp_path):
    """The quick profile through the harness's pipeline on pbmc3k (2,000 HVGs): the MMD (50 PCs,
    the main experiment's metric) of CFGen's cells is lower than the shuffled control's."""
    from bench.datasets import prepare
    from bench.evaluation import EvalContext
    from bench.pipeline import Pipeline, score

    threads = torch.get_num_threads()
    prep = prepare("pbmc3k", split_seed=0, n_top_genes=2000, cache_dir=tmp_path)
    train, test = prep.train, prep.test
    ctx = EvalContext("pbmc3k", train, test, "cell_type", seed=0)
    mmd = {}
    # a fresh preparation can raise torch's thread count (seen: 1 -> 2 under OMP_NUM_THREADS=1); the
    # fit runs on the threads the test started with (one in CI: about 15 CPU-seconds)
    torch.set_num_threads(threads)
    try:
        for model in ("cfgen", "shuffled"):
            params = CfgenGenerator.params_for_profile("quick") if model == "cfgen" else {}
            pipe = Pipeline(model, params, train, "cell_type")
            cells = pipe.generate_cells(pipe.fit_model(train, 0), test.n_obs, seed=1)
            mmd[model] = score("mmd", ctx, cells, seed=0).values["mmd"]
    finally:
        torch.set_num_threads(threads)
    print(f"\nMMD cfgen {mmd['cfgen']:.4f}, shuffled {mmd['shuffled']:.4f}")
    assert mmd["cfgen"] < 0.6 * mmd["shuffled"]
