"""CFGen's latent flow matching (stage 2): the time sampling, the probability path and its target
velocity, compositional classifier-free guidance, and the ODE solvers that integrate the learned
field from noise (t = 0) to cell latents (t = 1). Written from the released
``cfgen/models/fm/fm.py`` and ``cfgen/models/fm/ode.py`` (default ``use_ot = False`` path). Torch
only."""

from __future__ import annotations

from collections.abc import Callable

import torch

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (t, x) -> dx/dt


def sample_times(n: int, *, antithetic: bool, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` training times in [0, 1) (released ``FM._sample_times``): with ``antithetic`` one
    uniform offset t0 ~ U(0, 1/n) and the stratified grid t0 + k/n, k = 0..n-1 (one time in each
    of n equal strata); else n independent uniforms."""
    if antithetic:
        t0 = torch.rand((), generator=gen, device=device) / n
        return t0 + torch.arange(n, device=device, dtype=torch.float32) / n
    return torch.rand(n, generator=gen, device=device)


def probability_path(
    x1: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The point x_t and target velocity u_t of the conditional path of Lipman et al. (2023,
    Eq. 20-21; released ``FM.sample_xt``, ``compute_mu_t``, ``compute_sigma_t`` and
    ``compute_conditional_flow`` with ``use_ot = False``), with x1 the cell's latent, eps ~ N(0, I)::

        x_t = t x1 + (1 - (1 - sigma) t) eps
        u_t = (x1 - (1 - sigma) x_t) / (1 - (1 - sigma) t)      (= x1 - (1 - sigma) eps)
    """
    t = t.reshape(-1, 1)
    s = 1.0 - (1.0 - sigma) * t
    xt = t * x1 + s * eps
    ut = (x1 - (1.0 - sigma) * xt) / s
    return xt, ut


def guided_velocity(
    v_uncond: torch.Tensor, v_conds: list[torch.Tensor], weights: list[float]
) -> torch.Tensor:
    """Compositional classifier-free guidance (paper Eq. 9; released ``ode.py:torch_wrapper``):
    v = v_uncond + sum_c w_c (v_c - v_uncond), one conditional field per attribute c. With one
    attribute and w = 1 this is the conditional field; with w = 0 the unconditional one."""
    v = v_uncond.clone()
    for v_c, w in zip(v_conds, weights, strict=True):
        v = v + w * (v_c - v_uncond)
    return v


def euler(field: Field, x0: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    """Fixed-step Euler from t = 0 to 1 (``solver = "euler"``, not the released solver);
    returns x(1) and the number of field evaluations."""
    x, h = x0, 1.0 / steps
    for k in range(steps):
        x = x + h * field(torch.tensor(k * h, device=x.device), x)
    return x, steps


# Dormand-Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Norsett & Wanner, Table II.5.2)
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4, strict=True))


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def dopri5(
    field: Field, x0: torch.Tensor, *, atol: float, rtol: float, max_steps: int = 10_000
) -> tuple[torch.Tensor, int]:
    """Adaptive Dormand-Prince 5(4) from t = 0 to 1 (the released sampler: torchdyn's
    ``NeuralODE(solver="dopri5", atol=1e-5, rtol=1e-5)`` over ``t_span = [0, 1]``): Hairer's
    initial step, the 5th-order solution propagated (FSAL), the RMS norm over the whole batch of
    the error scaled by atol + rtol max(|x_n|, |x_n+1|), step factor 0.9 err^(-1/5) within
    [0.2, 10]. Returns x(1) and the number of field evaluations."""
    dev = x0.device
    t, x = 0.0, x0
    f = field(torch.tensor(t, device=dev), x)
    nfe = 1
    # Hairer, Norsett & Wanner (1993), II.4 "starting step size"
    scale = atol + rtol * x.abs()
    d0, d1 = _rms(x / scale), _rms(f / scale)
    h0 = 0.01 * d0 / d1 if d0 >= 1e-5 and d1 >= 1e-5 else 1e-6
    f1 = field(torch.tensor(t + h0, device=dev), x + h0 * f)
    nfe += 1
    d2 = _rms((f1 - f) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / 5)
    h = min(100 * h0, h1, 1.0)
    for _ in range(max_steps):
        if t >= 1.0:
            return x, nfe
        h = min(h, 1.0 - t)
        k = [f]
        for i in range(1, 7):
            xi = x + h * sum(a * kj for a, kj in zip(_A[i], k, strict=False) if a != 0.0)
            k.append(field(torch.tensor(t + _C[i] * h, device=dev), xi))
            nfe += 1
        x_new = xi  # the 7th stage's point is the 5th-order solution (row 7 of A = b5)
        err = h * sum(e * kj for e, kj in zip(_E, k, strict=True) if e != 0.0)
        ratio = _rms(err / (atol + rtol * torch.maximum(x.abs(), x_new.abs())))
        if ratio <= 1.0:
            t, x, f = t + h, x_new, k[6]
            if 1.0 - t < 1e-12:
                t = 1.0
        factor = 10.0 if ratio == 0.0 else min(10.0, max(0.2, 0.9 * ratio ** (-1 / 5)))
        h = h * factor
    raise RuntimeError(f"dopri5 did not reach t = 1 in {max_steps} steps (t = {t:.4g})")
