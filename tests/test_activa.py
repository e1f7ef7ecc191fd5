"""Unit tests of the native ACTIVA port on tiny data (seconds each)."""

from __future__ import annotations

import json
import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from bench.api.errors import TaskFailed, UserError
from bench.api.generator import validate_output
from bench.generators.activa import ACTINN, ActivaGenerator, ActivaTrainer, Decoder, Encoder, TrainConfig
from bench.generators.activa.model import (
    celltype_loss,
    kl_loss,
    kl_per_sample,
    margin_loss,
    reconstruction_loss,
)
from tests.conftest import fit_generator

N_GENES = 24
LABELS = ["a", "b", "c"]


def tiny_data(n_per: int = 20, seed: int = 0) -> ad.AnnData:
    """Three well-separated 'cell types', library-size normalised to 20,000."""
    rng = np.random.default_rng(seed)
    blocks, labels = [], []
    for k, lab in enumerate(LABELS):
        mean = np.full(N_GENES, 1.0)
        mean[k * 8 : (k + 1) * 8] = 30.0
        blocks.append(rng.poisson(mean, size=(n_per, N_GENES)).astype(np.float32))
        labels += [lab] * n_per
    X = np.vstack(blocks)
    X = X / X.sum(1, keepdims=True) * 20_000
    adata = ad.AnnData(X.astype(np.float32))
    adata.var_names = [f"g{i}" for i in range(N_GENES)]
    adata.obs["cell_type"] = pd.Categorical(labels)
    return adata


def small_params(**over):
    base = dict(epochs=3, num_cf=2, num_vae=3, batch_size=16, zdim=8, gen_chunk=256, max_draws=20_000)
    return {**base, **over}


def layer_spec(seq: nn.Sequential) -> list[tuple]:
    out = []
    for mod in seq:
        if isinstance(mod, nn.Linear):
            out.append(("Linear", mod.in_features, mod.out_features))
        elif isinstance(mod, nn.BatchNorm1d):
            out.append(("BN", mod.num_features))
        else:
            out.append((type(mod).__name__,))
    return out


# -- architecture --------------------------------------------------------------------------------


def test_encoder_layers_shapes_and_order():
    enc = Encoder(N_GENES, zdim=128)
    assert layer_spec(enc.main) == [
        ("Linear", N_GENES, 1024), ("ReLU",), ("BN", 1024),
        ("Linear", 1024, 512), ("ReLU",), ("BN", 512),
        ("Linear", 512, 256), ("ReLU",), ("BN", 256),
        ("Linear", 256, 256), ("ReLU",), ("BN", 256),
    ]  # fmt: skip
    mu, logvar = enc(torch.rand(5, N_GENES))
    assert mu.shape == logvar.shape == (5, 128)


def test_decoder_layers_shapes_and_order():
    dec = Decoder(N_GENES, zdim=128)
    assert layer_spec(dec.main) == [
        ("Linear", 128, 256), ("ReLU",), ("BN", 256),
        ("Linear", 256, 512), ("ReLU",), ("BN", 512),
        ("Linear", 512, 1024), ("ReLU",), ("BN", 1024),
        ("Linear", 1024, N_GENES), ("ReLU",),
    ]  # fmt: skip
    out = dec(torch.randn(6, 128))
    assert out.shape == (6, N_GENES) and bool((out >= 0).all())


def test_actinn_layers_and_logits():
    cf = ACTINN(N_GENES, 5)
    assert layer_spec(cf.main) == [
        ("Linear", N_GENES, 100), ("ReLU",), ("Linear", 100, 50), ("ReLU",),
        ("Linear", 50, 25), ("ReLU",), ("Linear", 25, 5),
    ]  # fmt: skip
    logits = cf(torch.rand(4, N_GENES))
    assert logits.shape == (4, 5)
    assert not torch.allclose(logits.softmax(1).sum(1), logits.sum(1))  # logits, not probabilities


def test_encoder_halves_are_mu_then_logvar():
    enc = Encoder(N_GENES, zdim=4).eval()
    x = torch.rand(3, N_GENES)
    full = enc.main(x)
    mu, logvar = enc(x)
    torch.testing.assert_close(mu, full[:, :4])
    torch.testing.assert_close(logvar, full[:, 4:])


# -- loss terms (hand-checked) -------------------------------------------------------------------


def test_kl_hand_checked_and_against_torch_distributions():
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # sample 1: -0.5*[(1+0-1-1) + (1+log2-0-2)] = 1 - 0.5*log 2; sample 2: 0
    expected = torch.tensor([1.0 - 0.5 * math.log(2.0), 0.0])
    torch.testing.assert_close(kl_per_sample(mu, logvar), expected)
    torch.testing.assert_close(kl_loss(mu, logvar), expected.mean())  # mean over the batch
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(kl_per_sample(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1))


def test_reconstruction_loss_sums_genes_means_batch():
    rec = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert reconstruction_loss(rec, x).item() == pytest.approx((5.0 + 13.0) / 2)


def test_celltype_loss_sums_over_batch_and_classes():
    a = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    b = torch.tensor([[0.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    assert celltype_loss(a, b).item() == pytest.approx(1 + 4 + 4 + 1)


def test_margin_loss_hinge_with_weight_neg():
    kl_real = torch.tensor(2.0)
    out = margin_loss(kl_real, torch.tensor(100.0), torch.tensor(120.0), m=110.0, weight_neg=0.5)
    assert out.item() == pytest.approx(2.0 + 0.25 * (10.0 + 0.0))
    out = margin_loss(kl_real, torch.tensor(200.0), torch.tensor(300.0), m=110.0)
    assert out.item() == pytest.approx(2.0)


# -- schedule and optimisers ------------------------------------------------------------------------


def test_phase_schedule_is_one_based():
    cfg = TrainConfig(n_genes=3, n_classes=2, num_cf=5, num_vae=10)
    phases = [cfg.phase(e) for e in range(1, 12)]
    assert phases == ["warmup-cf"] * 4 + ["warmup-vae"] * 5 + ["intro"] * 2


def _tensors(adata):
    X = torch.from_numpy(np.asarray(adata.X, dtype=np.float32))
    y = torch.from_numpy(adata.obs["cell_type"].cat.codes.to_numpy().astype(np.int64))
    return X, y


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


def test_which_networks_step_in_which_epoch():
    X, y = _tensors(tiny_data())
    cfg = TrainConfig(n_genes=N_GENES, n_classes=3, zdim=8, num_cf=2, num_vae=3, epochs=3, batch_size=16)
    tr = ActivaTrainer(cfg, seed=0)
    nets = {"enc": tr.net.encoder, "dec": tr.net.decoder, "cf": tr.cf}
    expected = {1: {"enc", "dec", "cf"}, 2: {"enc", "dec"}, 3: {"enc", "dec"}}  # ACTINN frozen from epoch 2
    n_batches = math.ceil(X.shape[0] / 16)
    for epoch in (1, 2, 3):
        before = {k: _params(m) for k, m in nets.items()}
        logs = tr.run_epoch(X, y)
        changed = {k for k, m in nets.items() if _changed(before[k], m)}
        assert changed == expected[epoch], epoch
        assert ("cf_loss" in logs) == (epoch == 1)
        assert ("loss_e" in logs) == (epoch == 3)
    assert (tr.cf_steps, tr.vae_steps, tr.intro_steps) == (n_batches, 2 * n_batches, n_batches)
    assert tr.step == 3 * n_batches


def test_actinn_lr_decays_every_cf_step_global_iterations():
    X, y = _tensors(tiny_data())
    cfg = TrainConfig(n_genes=N_GENES, n_classes=3, zdim=8, num_cf=3, num_vae=3, batch_size=16, cf_step=3)
    tr = ActivaTrainer(cfg, seed=0)
    tr.run_epoch(X, y)
    tr.run_epoch(X, y)  # 2 epochs x 4 batches = 8 global steps -> decays at steps 3 and 6
    assert tr.opt_cf.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.95**2)
    assert tr.opt_cf.param_groups[0]["weight_decay"] == 0.005


def test_same_seed_same_weights_different_seed_differs():
    X, y = _tensors(tiny_data())

    def train(seed):
        cfg = TrainConfig(n_genes=N_GENES, n_classes=3, zdim=8, num_cf=2, num_vae=3, epochs=4, batch_size=16)
        tr = ActivaTrainer(cfg, seed=seed)
        for _ in range(4):
            tr.run_epoch(X, y)
        return {**tr.net.state_dict(), **{f"cf.{k}": v for k, v in tr.cf.state_dict().items()}}

    a, b, c = train(0), train(0), train(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_kl_gradient_reaches_decoder_only_in_paper_variant(variant):
    X, _ = _tensors(tiny_data())
    # weight_rec = 0 leaves only the introspective (KL) terms; m huge keeps both hinges active
    cfg = TrainConfig(n_genes=N_GENES, n_classes=3, zdim=8, variant=variant, weight_rec=0.0, m=1e6)
    tr = ActivaTrainer(cfg, seed=0)
    tr.intro_step(X[:16])
    dec_grad = sum(float(p.grad.abs().sum()) for p in tr.net.decoder.parameters() if p.grad is not None)
    enc_grad = sum(float(p.grad.abs().sum()) for p in tr.net.encoder.parameters() if p.grad is not None)
    assert enc_grad > 0
    if variant == "reference":
        assert dec_grad == 0.0
    else:
        assert dec_grad > 0.0


def test_paper_variant_decoder_gradient_matches_eq4():
    """Decoder gradient in `paper` = d/dG [w_rec (L_rec + L_cls)] + d/dG [w_kl/2 (KL(E'(x_r)) + KL(E'(x_g)))],
    E' = encoder after its step; checked against an independent autograd computation."""
    X, _ = _tensors(tiny_data())
    xb = X[:16]
    cfg = TrainConfig(n_genes=N_GENES, n_classes=3, zdim=8, variant="paper", weight_rec=0.3, m=50.0)
    ref_tr = ActivaTrainer(cfg, seed=0)
    tr = ActivaTrainer(cfg, seed=0)
    tr.intro_step(xb)
    got = [p.grad.clone() for p in tr.net.decoder.parameters()]

    # independent: same initial weights and the same random draws
    net, cf = ref_tr.net, ref_tr.cf
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn((16, 8), generator=gen)
    fake = net.decoder(noise)
    mu, logvar = net.encoder(xb)
    eps = torch.randn(mu.shape, generator=gen)
    rec = net.decoder(mu + eps * torch.exp(0.5 * logvar))
    with torch.no_grad():
        real_logits = cf(xb)
    dec_params = list(net.decoder.parameters())
    g1 = torch.autograd.grad(
        cfg.weight_rec * (reconstruction_loss(rec, xb) + celltype_loss(cf(rec), real_logits)),
        dec_params,
        retain_graph=True,
    )
    enc_after = tr.net.encoder  # the stepped encoder (weights); BN in train mode uses batch statistics
    l_g = 0.5 * cfg.weight_kl * (kl_loss(*enc_after(rec)) + kl_loss(*enc_after(fake)))
    g2 = torch.autograd.grad(l_g, dec_params)
    for a, b, c in zip(got, g1, g2, strict=True):
        torch.testing.assert_close(a, b + c, rtol=1e-4, atol=1e-3)


# -- generator plugin ----------------------------------------------------------------------------


def test_unknown_parameter_and_variant_are_user_errors():
    with pytest.raises(UserError):
        ActivaGenerator(not_a_param=1)
    with pytest.raises(UserError):
        ActivaGenerator(variant="introvae")


def test_profiles_only_name_known_parameters():
    for prof in ActivaGenerator.profiles.values():
        assert set(prof) <= set(ActivaGenerator.parameters)
    paper = ActivaGenerator.params_for_profile("paper")
    assert (paper["m"], paper["weight_kl"], paper["weight_rec"]) == (110.0, 1.0, 0.5)
    cfg = TrainConfig(n_genes=2, n_classes=2, num_cf=paper["num_cf"], num_vae=paper["num_vae"])
    phases = [cfg.phase(e) for e in range(1, paper["epochs"] + 1)]
    assert phases.count("warmup-cf") == 10 and phases.count("intro") == 600


@pytest.fixture(scope="module")
def fitted():
    data = tiny_data()
    gen = ActivaGenerator(**small_params(classifier_epochs=30, cf_lr=3e-3))
    res = fit_generator(gen, data, seed=0, device="cpu")
    return gen, res, data


def test_fit_result_and_history(fitted):
    gen, res, data = fitted
    assert res.epochs == 3 and res.steps == 30 * 4 + 3 * 4
    assert res.train_seconds > 0
    assert len(res.history["epoch"]) == 33 and all(len(v) == 33 for v in res.history.values())
    assert res.extra["introspective_steps"] == 4
    assert gen.labels == LABELS
    assert res.extra["actinn_train_accuracy"] > 0.9  # separable toy classes


def test_unconditional_generation_validates_and_is_seeded(fitted):
    gen, _, data = fitted
    out = gen.generate(50, seed=7)
    validate_output(
        gen, out, var_names=list(data.var_names), label_key="cell_type", known_labels=LABELS, requested=50
    )
    again = gen.generate(50, seed=7)
    np.testing.assert_array_equal(out.X.toarray(), again.X.toarray())
    assert not np.array_equal(out.X.toarray(), gen.generate(50, seed=8).X.toarray())


def test_conditional_generation_returns_exact_labels(fitted):
    gen, _, data = fitted
    # request the two types the (briefly trained) toy decoder produces most often
    common = pd.Series(gen.classify(gen.generate(500, seed=0).X)).value_counts().index[:2]
    req = {str(common[0]): 7, str(common[1]): 3}
    out = gen.generate(req, seed=1)
    validate_output(
        gen, out, var_names=list(data.var_names), label_key="cell_type", known_labels=LABELS, requested=req
    )
    assert out.obs["cell_type"].astype(str).value_counts().to_dict() == req
    # ACTINN agrees with every kept cell's label (that is how they were selected)
    np.testing.assert_array_equal(gen.classify(out.X), out.obs["cell_type"].astype(str).to_numpy())


def test_conditional_generation_errors(fitted):
    gen, _, _ = fitted
    with pytest.raises(UserError):
        gen.generate({"zzz": 3}, seed=0)
    gen.params["confidence"], gen.params["max_draws"] = 0.0, 100
    try:  # fewer draws than cells asked for: no rule can fill the request
        with pytest.raises(TaskFailed, match="100 decoded cells .max_draws. cannot fill 300 cells of 'a'"):
            gen.generate({"a": 300}, seed=0)
    finally:
        gen.params["confidence"], gen.params["max_draws"] = 0.0, 20_000


def test_conditional_generation_falls_back_and_records_it(fitted):
    """A filter no draw passes never gives up silently: the released code's argmax rule, then the
    highest probabilities of the label, fill the request; the record says how many came from each."""
    gen, _, data = fitted
    probs_of = lambda X, lab: gen.trainer.predict(torch.as_tensor(X)).numpy()[:, LABELS.index(lab)]  # noqa: E731
    gen.params["confidence"], gen.params["max_draws"] = 1.01, 2_000  # no probability passes it
    try:
        out = gen.generate({"a": 40, "b": 5}, seed=0)
    finally:
        gen.params["confidence"], gen.params["max_draws"] = 0.0, 20_000
    validate_output(gen, out, var_names=list(data.var_names), label_key="cell_type", known_labels=LABELS,
                    requested={"a": 40, "b": 5})  # fmt: skip
    fill = out.uns["scgenbench"]["conditional_fill"]
    assert out.uns["scgenbench"]["decoded_cells"] == 2_000
    for lab, n in {"a": 40, "b": 5}.items():
        assert sum(fill[lab].values()) == n
        assert fill[lab]["filter"] == 0
        cells = out.X.toarray()[out.obs["cell_type"].astype(str).to_numpy() == lab]
        by_argmax = fill[lab]["filter"] + fill[lab]["argmax"]
        # the argmax-rule cells are ACTINN's calls of that label; the last resort ranks by probability
        assert (gen.classify(cells[:by_argmax]) == lab).all()
        rest = probs_of(cells[by_argmax:], lab)
        assert (np.diff(rest) <= 1e-6).all()


def _with_bn_mode(gen: ActivaGenerator, mode: str, **extra) -> ActivaGenerator:
    """A generator sharing ``gen``'s trained networks, generating with another BatchNorm mode."""
    other = ActivaGenerator(**{**gen.params, "generation_bn": mode, **extra})
    other.trainer, other.label_key, other.var_names, other.labels = (
        gen.trainer,
        gen.label_key,
        gen.var_names,
        gen.labels,
    )
    return other


def _decoder_buffers(gen: ActivaGenerator) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in gen.trainer.net.decoder.state_dict().items()}


def test_generation_bn_modes_known_answers(fitted):
    gen, _, _ = fitted
    before = _decoder_buffers(gen)
    g = torch.Generator().manual_seed(11)
    z = torch.randn(64, gen.trainer.cfg.zdim, generator=g)
    dec = gen.trainer.net.decoder
    with torch.no_grad():
        dec.eval()
        want_training = dec(z)
    # 'training': eval mode with the trained running statistics, i.e. dec.eval()(z)
    got = _with_bn_mode(gen, "training")._decode(64, torch.Generator().manual_seed(11))
    torch.testing.assert_close(got, want_training)
    # 'batch': train-mode BN, statistics of the decoded chunk (by hand: normalise by batch moments)
    got = _with_bn_mode(gen, "batch")._decode(64, torch.Generator().manual_seed(11))
    with torch.no_grad():
        h = z
        for mod in dec.main:
            if isinstance(mod, nn.BatchNorm1d):
                h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + mod.eps) * mod.weight + mod.bias
            else:
                h = mod(h)
    torch.testing.assert_close(got, h, rtol=1e-4, atol=1e-3)
    # 'prior' with the calibration draws == the decoded draws (seed 0, one chunk): the large-batch
    # statistics ARE this batch's, so 'prior' equals 'batch' up to the unbiased/biased variance
    n = 4096
    prior = _with_bn_mode(gen, "prior", bn_calibration_cells=n, gen_chunk=n)
    batch = _with_bn_mode(gen, "batch", gen_chunk=n)
    a = prior._decode(n, torch.Generator().manual_seed(0))
    b = batch._decode(n, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-2)
    assert not torch.allclose(a, _with_bn_mode(gen, "training")._decode(n, torch.Generator().manual_seed(0)))
    # the first BatchNorm's running mean is the mean of its inputs over the calibration draws
    zc = torch.randn(n, gen.trainer.cfg.zdim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first_bn_in = dec.main[1](dec.main[0](zc))
    torch.testing.assert_close(prior._generation_decoder().main[2].running_mean, first_bn_in.mean(0))
    # 'prior': each cell independent of the others decoded with it (eval mode)
    dprior = prior._generation_decoder()
    assert not dprior.training
    with torch.no_grad():
        torch.testing.assert_close(dprior(z[:5]), dprior(z)[:5])
    # generation never touches the trained networks' BatchNorm buffers (training, resume, save)
    after = _decoder_buffers(gen)
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_generation_bn_batch_mode_single_cell_and_bad_mode(fitted):
    gen, _, _ = fitted
    out = _with_bn_mode(gen, "batch", gen_chunk=10).generate(11, seed=0)  # last chunk: one cell
    assert out.n_obs == 11
    with pytest.raises(UserError, match="generation_bn"):
        ActivaGenerator(generation_bn="eval")
    with pytest.raises(UserError, match="bn_calibration_cells"):
        ActivaGenerator(bn_calibration_cells=1)


def test_save_load_round_trip_identical_generation(fitted, tmp_path):
    gen, _, _ = fitted
    gen.save(tmp_path)
    cfg = json.loads((tmp_path / "activa_config.json").read_text())
    assert cfg["train_config"]["zdim"] == 8
    state = torch.load(tmp_path / "activa_weights.pt", weights_only=True)  # plain tensors only
    assert {"encoder", "decoder", "classifier", "opt_e", "opt_g", "opt_cf", "sched_cf"} <= set(state)
    loaded = ActivaGenerator.load(tmp_path, device="cpu")
    np.testing.assert_array_equal(
        gen.generate(40, seed=3).X.toarray(), loaded.generate(40, seed=3).X.toarray()
    )
    a, b = gen.generate({"b": 5}, seed=4), loaded.generate({"b": 5}, seed=4)
    np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())


def test_resume_equals_uninterrupted_training(tmp_path):
    data = tiny_data()
    full = ActivaGenerator(**small_params(epochs=4, classifier_epochs=2))
    fit_generator(full, data, seed=5)
    part = ActivaGenerator(**small_params(epochs=2, classifier_epochs=2))
    fit_generator(part, data, seed=5)
    part.save(tmp_path)
    resumed = ActivaGenerator(**small_params(epochs=4, classifier_epochs=2, resume_from=str(tmp_path)))
    res = fit_generator(resumed, data, seed=5)
    assert res.epochs == 4 and len(res.history["epoch"]) == 2  # only epochs 3 and 4 ran
    sa, sb = full.trainer.state_dict(), resumed.trainer.state_dict()
    for key in ("encoder", "decoder", "classifier"):
        for k in sa[key]:
            assert torch.equal(sa[key][k], sb[key][k]), (key, k)


def test_fit_rejects_bad_input():
    data = tiny_data()
    with pytest.raises(UserError):
        fit_generator(ActivaGenerator(**small_params()), data, label_key="nope")
    bad = data.copy()
    bad.X[0, 0] = -1.0
    with pytest.raises(UserError):
        fit_generator(ActivaGenerator(**small_params()), bad)


def test_entry_point_and_metadata():
    from bench.registry import get_generator

    assert get_generator("activa") is ActivaGenerator
    meta = ActivaGenerator.metadata()
    assert meta["conditional"] is True and meta["output_scale"] == "counts"


def test_reference_step_trains_exactly_like_the_original_loop():
    """One `reference` introspective step == one step of the re-created released loop (second pass,
    anomaly detection, data_parallel and all): the skipped second pass changes no parameter."""
    import copy
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "benchmarks" / "original_activa_loop.py"
    spec = importlib.util.spec_from_file_location("original_activa_loop", path)
    original = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(original)

    X, _ = _tensors(tiny_data())
    cfg = TrainConfig(n_genes=N_GENES, n_classes=3, zdim=8, m=30.0, weight_rec=0.05)
    ours = ActivaTrainer(cfg, seed=0)
    enc, dec, cf = (copy.deepcopy(m) for m in (ours.net.encoder, ours.net.decoder, ours.cf))
    loop = original.OriginalLoop(enc, dec, cf, zdim=8)
    gen = torch.Generator().manual_seed(1)  # ours draws noise and eps from seed + 1
    start = {k: _params(m) for k, m in (("enc", enc), ("dec", dec), ("cf", cf))}
    pairs = {
        "enc": (ours.net.encoder, enc, ours.opt_e, loop.opt_e),
        "dec": (ours.net.decoder, dec, ours.opt_g, loop.opt_g),
    }

    def first_moments(key):
        a, b, oa, ob = pairs[key]
        ma = torch.cat([oa.state[p]["exp_avg"].ravel() for p in a.parameters()])
        mb = torch.cat([ob.state[p]["exp_avg"].ravel() for p in b.parameters()])
        return float((ma - mb).norm() / ma.norm())

    for i in range(3):
        xb = X[i * 16 : (i + 1) * 16]
        ours.intro_step(xb)
        with torch.autograd.set_detect_anomaly(True):
            loop.step(xb, m=30.0, weight_rec=0.05, generator=gen)
        if i == 0:  # the same gradients: Adam's first moment is 0.1 x the first step's gradient (equal
            # bit for bit here; a reconstruction weight 10 % off moves it by 0.1)
            for key in pairs:
                assert first_moments(key) < 1e-4, key
    # After three steps the two agree less tightly, because a first Adam step is about lr * sign(g): it
    # turns float rounding in a gradient near zero into a whole step of either sign, and the later
    # gradients are taken at those parameters. Measured (encoder, relative to its norm): first moment
    # 2e-5 to 5e-5 and update 7e-4 to 1.4e-3 on one CPU with two and one threads; the update 8e-3 on
    # CI's CPU; a reconstruction weight 10 % off moves them by 0.17 and 0.1.
    for key, (a, b, _, _) in pairs.items():
        assert first_moments(key) < 3e-3, key
        da = torch.cat([(p.detach() - p0).ravel() for p, p0 in zip(a.parameters(), start[key], strict=True)])
        db = torch.cat([(p.detach() - p0).ravel() for p, p0 in zip(b.parameters(), start[key], strict=True)])
        assert da.norm() > 0
        assert float((da - db).norm() / da.norm()) < 5e-2, key
    assert all(bool((p == p0).all()) for p, p0 in zip(ours.cf.parameters(), start["cf"], strict=True))
    assert all(bool((p == p0).all()) for p, p0 in zip(cf.parameters(), start["cf"], strict=True))  # frozen
    # the decoder's BatchNorm running statistics (read at generation) match, too
    for (ka, va), (_, vb) in zip(
        ours.net.decoder.state_dict().items(), dec.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-4, msg=ka)


def test_budget_rescales_the_schedule():
    """A budget in steps or epochs stretches the whole schedule; warm-up phases keep their share."""
    cfg = TrainConfig(n_genes=2, n_classes=2, epochs=120, num_cf=5, num_vae=90, batch_size=64)
    assert cfg.steps_per_epoch(2429) == 38  # 2429 = 37*64 + 61
    # a last batch of one cell is skipped
    assert TrainConfig(n_genes=2, n_classes=2, batch_size=64).steps_per_epoch(2369) == 37
    half = cfg.rescaled(38 * 60, 2429)
    assert (half.epochs, half.num_cf, half.num_vae) == (60, 3, 45)
    double = cfg.rescaled(38 * 240, 2429)
    assert (double.epochs, double.num_cf, double.num_vae) == (240, 9, 179)
    assert cfg.rescaled(1, 2429).epochs == 1  # at least one epoch


def test_budget_parameter_sets_steps_taken():
    data = tiny_data()  # 60 cells, batch 16: 4 steps per epoch (16, 16, 16, 12 cells)
    gen = ActivaGenerator(**small_params(budget="50 steps"))
    res = fit_generator(gen, data, seed=0)
    assert res.epochs == 12 and res.steps == 48 and res.cells_seen == 12 * 60  # whole epochs
    gen = ActivaGenerator(**small_params(budget="2 epochs"))
    assert fit_generator(gen, data, seed=0).steps == 8
    with pytest.raises(UserError, match="ACTIVA budget"):
        ActivaGenerator(budget="lots")


def test_sparse_training_matrix_over_the_limit_trains_like_the_dense_one(monkeypatch):
    import scipy.sparse as sp

    from bench.generators.activa import plugin
    from bench.generators.activa.batches import SparseRows

    data = tiny_data()
    data.X[data.X < 200] = 0  # a sparse matrix with real zeros
    sparse = data.copy()
    sparse.X = sp.csr_matrix(data.X)
    dense_gen = ActivaGenerator(**small_params(epochs=4, classifier_epochs=1))
    fit_generator(dense_gen, data, seed=3)
    monkeypatch.setattr(plugin, "DENSE_LIMIT_BYTES", 0)  # every sparse matrix is "too large"
    sparse_gen = ActivaGenerator(**small_params(epochs=4, classifier_epochs=1))
    res = fit_generator(sparse_gen, sparse, seed=3)
    assert isinstance(sparse_gen._training_tensors(sparse, "cell_type")[0], SparseRows)
    assert res.extra["data_on_device"]
    sa, sb = dense_gen.trainer.state_dict(), sparse_gen.trainer.state_dict()
    for key in ("encoder", "decoder", "classifier"):
        for k in sa[key]:
            assert torch.equal(sa[key][k], sb[key][k]), (key, k)
    bad = sparse.copy()
    bad.X.data[0] = -1.0
    with pytest.raises(UserError, match="negative"):
        fit_generator(ActivaGenerator(**small_params()), bad)
    bad.X.data[0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        fit_generator(ActivaGenerator(**small_params()), bad)
