"""scDiffusion's Gaussian diffusion in the latent space: the noise schedule, the forward process
q(x_t | x_0), the posterior q(x_{t-1} | x_t, x_0), the reverse step with the model's noise prediction
(epsilon parameterisation, fixed 'large' variance) and classifier guidance of its mean.

Written from the released code (github.com/EperLuo/scDiffusion, commit e20ee19):
``guided_diffusion/gaussian_diffusion.py`` (get_named_beta_schedule, GaussianDiffusion.__init__,
q_sample, q_posterior_mean_variance, p_mean_variance, condition_mean, p_sample), which ports Ho et
al. 2020 and Dhariwal & Nichol 2021, and ``guided_diffusion/respace.py`` (space_timesteps,
SpacedDiffusion) for sampling with fewer steps. The schedule is computed in float64 and read as
float32, as the released ``_extract_into_tensor`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

SCHEDULES = ("linear", "cosine")
# classifier guidance: which timestep the guidance window (t < start_guide_steps) compares, when
# sampling uses fewer steps than training. 'spaced': the index into the respaced chain, as the
# released p_sample does (`t[0] < start_guide_steps` before SpacedDiffusion maps t); 'original':
# the training timestep that index stands for. The two agree when sampling runs every step.
GUIDE_WINDOW = ("spaced", "original")


def beta_schedule(name: str, steps: int) -> np.ndarray:
    """beta_1..beta_T in float64. 'linear': Ho et al.'s 1e-4 .. 0.02 stretched to ``steps``
    (``scale = 1000 / steps``); 'cosine': Nichol & Dhariwal's alpha_bar(t) = cos^2((t + 0.008) /
    1.008 * pi / 2), each beta capped at 0.999 (gaussian_diffusion.py: get_named_beta_schedule)."""
    if name == "linear":
        scale = 1000.0 / steps
        return np.linspace(scale * 1e-4, scale * 0.02, steps, dtype=np.float64)
    if name == "cosine":

        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array(
            [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999) for i in range(steps)],
            dtype=np.float64,
        )
    raise ValueError(f"unknown noise schedule {name!r}; use one of {SCHEDULES}")


def space_timesteps(num_timesteps: int, count: int) -> list[int]:
    """``count`` timesteps of ``num_timesteps`` evenly strided, first and last kept (respace.py:
    space_timesteps with one section: ``round(i * (T - 1) / (count - 1))``)."""
    if not 1 <= count <= num_timesteps:
        raise ValueError(f"cannot take {count} of {num_timesteps} diffusion steps")
    if count == 1:
        return [0]
    stride = (num_timesteps - 1) / (count - 1)
    return sorted({round(i * stride) for i in range(count)})


class GaussianDiffusion:
    """A diffusion process over ``betas`` (float64), optionally restricted to ``use_timesteps`` of it
    (respace.py: SpacedDiffusion: new beta_i = 1 - alpha_bar_i / alpha_bar_prev over the kept steps;
    the model is called with the original timestep of each kept step)."""

    def __init__(self, betas: np.ndarray, use_timesteps: list[int] | None = None):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-d array in (0, 1]")
        if use_timesteps is not None:
            base = np.cumprod(1.0 - betas)
            kept = sorted(set(use_timesteps))
            prev = np.append(1.0, base[kept][:-1])
            betas = 1.0 - base[kept] / prev
            self.timestep_map = np.asarray(kept, dtype=np.int64)
        else:
            self.timestep_map = np.arange(len(betas), dtype=np.int64)
        self.betas = betas
        self.num_timesteps = len(betas)
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)
        # q(x_{t-1} | x_t, x_0)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        )
        # the reverse step's fixed 'large' variance: beta_t, with the first replaced by the
        # posterior variance of step 2 (p_mean_variance, ModelVarType.FIXED_LARGE)
        self.model_variance = (
            np.append(self.posterior_variance[1], betas[1:]) if len(betas) > 1 else betas.copy()
        )
        self._cache: dict[tuple[str, str], torch.Tensor] = {}

    def _get(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``name``'s values at timesteps ``t`` as a float32 column (one per row of the batch)."""
        key = (name, str(t.device))
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(np.asarray(getattr(self, name))).to(t.device).float()
        return self._cache[key][t].unsqueeze(-1)

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The training timesteps the model is called with for indices ``t`` of this chain."""
        key = ("timestep_map", str(t.device))
        if key not in self._cache:
            self._cache[key] = torch.from_numpy(self.timestep_map).to(t.device)
        return self._cache[key][t]

    # -- forward process ------------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise."""
        return (
            self._get("sqrt_alphas_cumprod", t) * x0 + self._get("sqrt_one_minus_alphas_cumprod", t) * noise
        )

    def q_posterior(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._get("posterior_mean_coef1", t) * x0 + self._get("posterior_mean_coef2", t) * xt
        return mean, self._get("posterior_variance", t).expand_as(xt)

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = x_t / sqrt(alpha_bar_t) - sqrt(1 / alpha_bar_t - 1) eps."""
        return (
            self._get("sqrt_recip_alphas_cumprod", t) * xt - self._get("sqrt_recipm1_alphas_cumprod", t) * eps
        )

    # -- reverse process ------------------------------------------------------------------------
    def p_mean_variance(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        xt: torch.Tensor,
        t: torch.Tensor,
        *,
        clip: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reverse step's mean (the posterior mean at the model's x_0, clipped to [-1, 1] when
        ``clip``) and its fixed 'large' variance."""
        eps = model(xt, self.model_timesteps(t))
        x0 = self.predict_x0(xt, t, eps)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, self._get("model_variance", t).expand_as(xt)

    def p_sample(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        xt: torch.Tensor,
        i: int,
        gen: torch.Generator,
        *,
        clip: bool,
        grad_log_p: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x_{i-1} from x_i: mean + sqrt(variance) z (no noise at i = 0); with ``grad_log_p`` (the
        gradient of the scaled log classifier probability of the wanted type at x_t and the model's
        timestep), the mean moves by variance x gradient (Sohl-Dickstein et al. 2015; condition_mean)."""
        t = torch.full((xt.shape[0],), i, dtype=torch.long, device=xt.device)
        with torch.no_grad():
            mean, var = self.p_mean_variance(model, xt, t, clip=clip)
        if grad_log_p is not None:
            mean = mean + var * grad_log_p(xt, self.model_timesteps(t))
        noise = torch.randn(xt.shape, generator=gen, device=xt.device, dtype=xt.dtype)
        return mean + var.sqrt() * noise if i > 0 else mean  # noise drawn at i = 0 too, unused (released)

    def sample(
        self,
        model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        n: int,
        dim: int,
        gen: torch.Generator,
        device: torch.device,
        *,
        clip: bool,
        grad_log_p: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        guide_below: int = 0,
        guide_window: str = "spaced",
    ) -> torch.Tensor:
        """Ancestral sampling from x_T ~ N(0, I) down to x_0 (p_sample_loop). Guidance acts at the
        steps whose timestep is below ``guide_below`` (released start_guide_steps), compared on the
        chain's own index ('spaced', as released) or on the training timestep ('original')."""
        x = torch.randn((n, dim), generator=gen, device=device)
        for i in reversed(range(self.num_timesteps)):
            at = i if guide_window == "spaced" else int(self.timestep_map[i])
            guided = grad_log_p if grad_log_p is not None and at < guide_below else None
            x = self.p_sample(model, x, i, gen, clip=clip, grad_log_p=guided)
        return x
