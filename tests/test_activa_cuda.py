"""ACTIVA's device paths (issue 15): per-epoch draws, on-device loss logs, fp32 generation and ACTINN
filter, TF32 and CUDA-graph training. The CUDA tests run where PyTorch sees a GPU and skip elsewhere;
the CPU tests pin the CPU behaviour those paths must keep."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bench.generators.activa import ActivaGenerator, ActivaTrainer, TrainConfig
from bench.generators.activa.batches import EpochNoise
from bench.generators.activa.cudagraph import GRAPH_WARMUP_STEPS
from bench.generators.activa.generation import decode, generation_decoder
from bench.generators.activa.schedule import EpochLog
from tests.conftest import fit_generator
from tests.test_activa import small_params, tiny_data

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

N_GENES, N_CLASSES = 40, 4


def _data(n: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    X = torch.rand((n, N_GENES), generator=g) * 5
    X[torch.arange(n), y * 10] += 50.0  # one marker gene per class
    return X, y


def _cfg(**over) -> TrainConfig:
    base = dict(n_genes=N_GENES, n_classes=N_CLASSES, zdim=8, m=30.0, batch_size=32, num_cf=2, num_vae=3)
    return TrainConfig(**{**base, **over})


def _update(trainer: ActivaTrainer, start: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([(p.detach().cpu() - start[k]).ravel() for k, p in trainer.net.named_parameters()])


def _params(trainer: ActivaTrainer) -> dict[str, torch.Tensor]:
    return {k: p.detach().cpu().clone() for k, p in trainer.net.named_parameters()}


# -- CPU: what the device paths must keep ----------------------------------------------------------


def test_epoch_log_sums_on_the_tensors_device_in_float64():
    log = EpochLog()
    vals = [torch.tensor(0.1, dtype=torch.float32), torch.tensor(1e8), torch.tensor(-1e8), torch.tensor(3.0)]
    for v in vals:
        log.add(a=v, b=2 * v)
    assert log.sums["a"].dtype == torch.float64 and log.sums["a"].device == vals[0].device
    # the same sequential float64 sum as Python floats (float32 1e8 + 0.1 would lose the 0.1)
    assert log.means() == {"a": sum(float(v) for v in vals) / 4, "b": sum(float(2 * v) for v in vals) / 4}
    assert EpochLog().means() == {}


def test_step_by_step_draws_are_the_stream_of_earlier_versions():
    """CPU: noise then eps per step from one generator, as intro_step drew them before."""
    draws = EpochNoise(torch.Generator().manual_seed(5), 8, [32, 32, 7], noise=True, per_epoch=False)
    ref = torch.Generator().manual_seed(5)
    for k, b in enumerate([32, 32, 7]):
        noise, eps = draws.step(k)
        torch.testing.assert_close(noise, torch.randn((b, 8), generator=ref), rtol=0, atol=0)
        torch.testing.assert_close(eps, torch.randn((b, 8), generator=ref), rtol=0, atol=0)
    _, eps = EpochNoise(torch.Generator().manual_seed(5), 8, [4], noise=False, per_epoch=False).step(0)
    torch.testing.assert_close(eps, torch.randn((4, 8), generator=torch.Generator().manual_seed(5)))


def test_per_epoch_draws_are_one_block_drawn_at_the_start():
    gen = torch.Generator().manual_seed(2)
    draws = EpochNoise(gen, 8, [32, 32, 7], noise=True, per_epoch=True)
    block = torch.randn((3, 2, 32, 8), generator=torch.Generator().manual_seed(2))
    noise, eps = draws.step(2)
    assert noise.shape == eps.shape == (7, 8) and noise.dtype == eps.dtype == torch.float32
    torch.testing.assert_close(noise, block[2, 0, :7], rtol=0, atol=0)
    torch.testing.assert_close(eps, block[2, 1, :7], rtol=0, atol=0)


def test_given_draws_are_the_ones_a_step_uses():
    """intro_step/vae_step with explicit noise and eps == the same step drawing them itself."""
    X, _ = _data(64)
    a, b = ActivaTrainer(_cfg(), seed=0), ActivaTrainer(_cfg(), seed=0)
    ref = torch.Generator().manual_seed(1)  # the trainers draw from seed + 1
    noise, eps = torch.randn((32, 8), generator=ref), torch.randn((32, 8), generator=ref)
    out_a = a.intro_step(X[:32])
    out_b = b.intro_step(X[:32], noise, eps)
    assert {k: float(v) for k, v in out_a.items()} == {k: float(v) for k, v in out_b.items()}
    eps2 = torch.randn((32, 8), generator=ref)
    a.vae_step(X[32:])
    b.vae_step(X[32:], eps2)
    for (k, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), k


def test_cpu_records_its_numerics_and_generates_fp32():
    data = tiny_data()
    gen = ActivaGenerator(**small_params(bf16=True, tf32=True, cuda_graph=True))
    res = fit_generator(gen, data, seed=0, device="cpu")
    assert res.extra["bf16"] is False and res.extra["tf32"] is False and res.extra["cuda_graph"] is False
    assert res.extra["graphed_steps"] == 0 and res.extra["data_on_device"] is True
    x = gen._decode(10, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32


def test_tf32_is_on_only_while_training_and_restored():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    trainer = ActivaTrainer(_cfg(num_cf=1, num_vae=1), seed=0)
    seen = []
    trainer.net.encoder.register_forward_hook(lambda *_: seen.append(torch.backends.cuda.matmul.allow_tf32))
    X, y = _data(64)
    trainer.run_epoch(X, y)
    assert seen and not any(seen)  # CPU: never TF32
    trainer.tf32 = True  # what a CUDA fp32 run sets; the flag itself is device independent
    seen.clear()
    trainer.run_epoch(X, y)
    assert seen and all(seen)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_generation_decoder_does_not_touch_training_state():
    trainer = ActivaTrainer(_cfg(), seed=0)
    before = copy.deepcopy(trainer.net.decoder.state_dict())
    dec = generation_decoder(trainer, "prior", 500)
    x = decode(trainer, dec, 5, torch.Generator().manual_seed(0))
    assert x.shape == (5, N_GENES) and x.dtype == torch.float32
    for k, v in trainer.net.decoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="generation_bn"):
        generation_decoder(trainer, "nope")


# -- CUDA ----------------------------------------------------------------------------------------


@cuda
def test_reference_step_on_cuda_fp32_equals_cpu():
    """Same weights, same batch and draws: three `reference` steps on CUDA (fp32, no TF32, eager)
    update the networks as on the CPU, up to float rounding."""
    X, _ = _data(96)
    cpu = ActivaTrainer(_cfg(), seed=0)
    gpu = ActivaTrainer(_cfg(bf16=False, tf32=False, cuda_graph=False), seed=0, device="cuda")
    start = _params(cpu)
    g = torch.Generator().manual_seed(7)
    for i in range(3):
        xb = X[i * 32 : (i + 1) * 32]
        noise, eps = torch.randn((32, 8), generator=g), torch.randn((32, 8), generator=g)
        out_c = cpu.intro_step(xb, noise, eps)
        out_g = gpu.intro_step(xb.cuda(), noise.cuda(), eps.cuda())
        for k in out_c:
            torch.testing.assert_close(out_g[k].cpu(), out_c[k], rtol=1e-4, atol=1e-3, msg=k)
    du_c, du_g = _update(cpu, start), _update(gpu, start)
    assert du_c.norm() > 0
    assert float((du_c - du_g).norm() / du_c.norm()) < 1e-3
    for (k, a), b in zip(
        cpu.net.decoder.state_dict().items(), gpu.net.decoder.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4, msg=k)


@cuda
@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_graphed_epochs_train_like_eager_epochs(variant):
    """Captured and replayed introspective steps == eager steps on the same draws (fp32, no TF32),
    the short last batch eager, several epochs (the graph is captured once and replayed)."""
    n = 32 * (GRAPH_WARMUP_STEPS + 3) + 9  # full batches past the warm-up, and a short one
    X, y = (t.cuda() for t in _data(n))
    cfg = dict(variant=variant, num_cf=1, num_vae=1, bf16=False, tf32=False)
    eager = ActivaTrainer(_cfg(cuda_graph=False, **cfg), seed=0, device="cuda")
    graphed = ActivaTrainer(_cfg(cuda_graph=True, **cfg), seed=0, device="cuda")
    start = _params(eager)
    for _ in range(3):
        le, lg = eager.run_epoch(X, y), graphed.run_epoch(X, y)
        for k in le:
            assert lg[k] == pytest.approx(le[k], rel=1e-3, abs=1e-3), k
    full = n // 32
    assert graphed.graphed_steps == 3 * full - GRAPH_WARMUP_STEPS and eager.graphed_steps == 0
    assert graphed.intro_steps == eager.intro_steps == 3 * (full + 1)
    du_e, du_g = _update(eager, start), _update(graphed, start)
    assert float((du_e - du_g).norm() / du_e.norm()) < 1e-3  # capturable Adam: bias correction in fp32


@cuda
def test_host_matrix_trains_like_a_resident_one():
    """gpu_max_fraction 0 keeps the matrix on the host (pinned batches): same training."""
    data = tiny_data(n_per=40)
    res = {}
    gens = {}
    for frac in (0.0, 0.9):
        gens[frac] = ActivaGenerator(**small_params(gpu_max_fraction=frac, bf16=False, tf32=False))
        res[frac] = fit_generator(gens[frac], data, seed=0, device="cuda")
    assert res[0.0].extra["data_on_device"] is False and res[0.9].extra["data_on_device"] is True
    for k in res[0.9].history:
        np.testing.assert_allclose(res[0.0].history[k], res[0.9].history[k], rtol=1e-5, atol=1e-5)


@cuda
def test_bf16_run_records_it_and_generates_and_filters_in_fp32():
    data = tiny_data()
    gen = ActivaGenerator(**small_params(bf16=True))
    res = fit_generator(gen, data, seed=0, device="cuda")
    assert res.extra["bf16"] is True and res.extra["tf32"] is False and res.extra["device"].startswith("cuda")
    trainer = gen.trainer
    x = gen._decode(64, torch.Generator(device="cuda").manual_seed(0))
    assert x.dtype == torch.float32 and x.device.type == "cuda"
    # generation is fp32: the same cells as the decoder run in fp32 by hand
    dec = gen._generation_decoder()
    z = torch.randn((64, 8), generator=torch.Generator(device="cuda").manual_seed(0), device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(x, dec(z.float()))
        # ACTINN's confidence filter reads fp32 logits
        probs = trainer.predict(x)
        torch.testing.assert_close(probs, torch.softmax(trainer.cf(x).float(), 1).cpu())
    out = gen.generate({"a": 5, "b": 5}, seed=1)
    assert out.n_obs == 10


@cuda
def test_fit_on_cuda_uses_the_graph_and_restores_tf32():
    before = torch.backends.cuda.matmul.allow_tf32
    data = tiny_data(n_per=40)  # 120 cells, batch 16: 7 full batches + 8
    gen = ActivaGenerator(**small_params(bf16=False, epochs=5))
    res = fit_generator(gen, data, seed=0, device="cuda")
    assert res.extra["tf32"] is True and res.extra["cuda_graph"] is True
    assert res.extra["graphed_steps"] == 3 * 7 - GRAPH_WARMUP_STEPS
    assert all(np.isfinite(v).all() for v in res.history.values() if len(v))
    assert torch.backends.cuda.matmul.allow_tf32 == before
