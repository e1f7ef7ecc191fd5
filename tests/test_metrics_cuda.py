"""The torch metrics on CUDA (issue 15): the values a CPU run gives, within float tolerance, and no TF32
in the MMD's kernel tiles whatever another stage set. CUDA tests skip where PyTorch sees no GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.metrics import energy_distance, mmd, prdc

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cells(n: int = 1500, shift: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 50)), rng.normal(shift, 1.0, size=(n - 100, 50))


def test_mmd_tiles_never_use_tf32_and_the_flag_is_restored(monkeypatch):
    real, fake = _cells(300)
    seen = []
    addmm = torch.addmm

    def spy(*args, **kwargs):
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        return addmm(*args, **kwargs)

    monkeypatch.setattr(torch, "addmm", spy)
    for flag in (True, False):
        torch.backends.cuda.matmul.allow_tf32 = flag
        mmd(real, fake, seed=0, block_size=128)
        assert torch.backends.cuda.matmul.allow_tf32 is flag
    torch.backends.cuda.matmul.allow_tf32 = False
    assert seen and not any(seen)


@cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_mmd_on_cuda_equals_cpu(dtype, estimator):
    real, fake = _cells()
    kw = dict(seed=3, dtype=dtype, estimator=estimator, block_size=512)
    cpu = mmd(real, fake, device="cpu", **kw)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # as an fp32 ACTIVA fit leaves it inside training
    try:
        gpu = mmd(real, fake, device="cuda", **kw)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert gpu.scales == cpu.scales and gpu.n_real == cpu.n_real
    # the squared MMD is a difference of kernel means ~1: compare on the scale of those means
    assert abs(gpu.mmd - cpu.mmd) < (1e-6 if dtype == "float32" else 1e-12)
    assert cpu.mmd > 1e-3  # the shifted sample is detected on both


@cuda
def test_mmd_on_cuda_identical_inputs_near_zero():
    real, _ = _cells()
    assert abs(mmd(real, real.copy(), seed=0, device="cuda").mmd) < 1e-4


@cuda
def test_float64_distance_metrics_on_cuda_equal_cpu():
    real, fake = _cells(800)
    e_cpu, e_gpu = (energy_distance(real, fake, seed=0, device=d).energy for d in ("cpu", "cuda"))
    assert e_gpu == pytest.approx(e_cpu, rel=1e-9)
    p_cpu, p_gpu = (prdc(real, fake, seed=0, device=d) for d in ("cpu", "cuda"))
    assert (p_gpu.precision, p_gpu.recall, p_gpu.density, p_gpu.coverage) == pytest.approx(
        (p_cpu.precision, p_cpu.recall, p_cpu.density, p_cpu.coverage), rel=1e-9
    )
