"""CFGen's two training stages on tensors: the NB autoencoder (stage 1) and latent flow matching with
classifier-free guidance dropout (stage 2), and generation from the trained pair. Torch only (the
GPU check's speed probe builds it without AnnData)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from bench.generators.cfgen.flow import dopri5, euler, guided_velocity, probability_path, sample_times
from bench.generators.cfgen.nb import nb_log_prob, sample_nb
from bench.generators.cfgen.networks import NBAutoencoder, VelocityNet

STAGES = ("autoencoder", "flow")


@dataclass
class TrainConfig:
    """Everything that shapes the networks and their training (the plugin's parameters of the same
    names; settings.py documents each with its place in the released code)."""

    n_genes: int
    n_labels: int
    ae_dims: list[int] = field(default_factory=lambda: [512, 256, 50])
    ae_batch_norm: bool = True
    ae_dropout: float = 0.0
    theta: str = "gene"
    encoder_input: str = "log1p"
    ae_epochs: int = 300
    ae_batch_size: int = 256
    ae_lr: float = 1e-3
    ae_weight_decay: float = 1e-5
    fm_hidden: int = 32
    fm_blocks: int = 3
    fm_embedding_dim: int = 20
    fm_dropout: float = 0.0
    fm_normalization: str = "none"
    embed_size_factor: bool = False
    fm_epochs: int = 1500
    fm_batch_size: int = 64
    fm_lr: float = 1e-4
    fm_weight_decay: float = 1e-6
    antithetic_time_sampling: bool = True
    sigma: float = 1e-4
    conditioning_probability: float = 0.8
    grad_clip: float = 1.0
    valid_fraction: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def steps_per_epoch(n_cells: int, batch_size: int) -> int:
    """Full batches per epoch (the released loaders drop the last partial batch,
    ``drop_last=True``); one batch of every cell when there are fewer cells than a batch."""
    return max(1, n_cells // batch_size)


def _batches(n: int, batch_size: int, gen: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen, device=device)
    if n < batch_size:
        return [perm]
    return [perm[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


class Rows:
    """Rows of the training counts on the training device: ``X`` (dense tensor, or anything indexed
    by a CPU index tensor returning a dense tensor, e.g. ACTIVA's SparseRows) gathered and moved."""

    def __init__(self, X, device: torch.device):
        self.X, self.device = X, device
        self.shape = X.shape

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        X = self.X
        if isinstance(X, torch.Tensor):
            return X[idx.to(X.device)].to(self.device, non_blocking=True)
        return X[idx.cpu()].to(self.device)


class CfgenTrainer:
    """The autoencoder, the velocity network, their optimizers (AdamW, as the released
    ``configure_optimizers``), the data statistics generation needs and the step counters."""

    def __init__(self, cfg: TrainConfig, *, seed: int, device: torch.device | str):
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(int(seed))  # parameter initialisation
        self.gen = torch.Generator(device=self.device).manual_seed(int(seed))
        self.ae = NBAutoencoder(
            cfg.n_genes,
            cfg.n_labels,
            list(cfg.ae_dims),
            batch_norm=cfg.ae_batch_norm,
            dropout=cfg.ae_dropout,
            theta=cfg.theta,
            encoder_input=cfg.encoder_input,
        ).to(self.device)
        self.flow = VelocityNet(
            self.ae.latent_dim,
            cfg.n_labels,
            hidden=cfg.fm_hidden,
            n_blocks=cfg.fm_blocks,
            emb_dim=cfg.fm_embedding_dim,
            dropout=cfg.fm_dropout,
            normalization=cfg.fm_normalization,
            embed_size_factor=cfg.embed_size_factor,
        ).to(self.device)
        self.ae_opt = torch.optim.AdamW(self.ae.parameters(), lr=cfg.ae_lr, weight_decay=cfg.ae_weight_decay)
        self.fm_opt = torch.optim.AdamW(
            self.flow.parameters(), lr=cfg.fm_lr, weight_decay=cfg.fm_weight_decay
        )
        # per label: mean and sd of the log size factor (released compute_size_factor_lognorm)
        self.register_size_factors(torch.zeros(0), torch.zeros(0, dtype=torch.long))
        self.steps = dict.fromkeys(STAGES, 0)
        self.epochs = dict.fromkeys(STAGES, 0)
        self.cells_seen = 0
        self.latents: torch.Tensor | None = None

    @property
    def step(self) -> int:
        return sum(self.steps.values())

    # -- data statistics ---------------------------------------------------------------------------
    def register_size_factors(self, log_sf: torch.Tensor, labels: torch.Tensor) -> None:
        """Per-label mean and sd (n - 1) of the cells' log size factors, the empirical pools and the
        dataset's min and max (released ``RNAseqLoader.__init__``: over all cells of the file, before
        the train/validation split). A label with one cell has sd 0 (the released sd is NaN)."""
        n = self.cfg.n_labels
        log_sf, labels = log_sf.double().cpu(), labels.cpu()
        self.sf_mean = torch.zeros(n, dtype=torch.float64)
        self.sf_sd = torch.zeros(n, dtype=torch.float64)
        self.sf_pool = [log_sf[labels == i] for i in range(n)]
        for i, pool in enumerate(self.sf_pool):
            if pool.numel():
                self.sf_mean[i] = pool.mean()
                self.sf_sd[i] = pool.std() if pool.numel() > 1 else 0.0
        if log_sf.numel():
            self.flow.sf_range.copy_(torch.tensor([float(log_sf.min()), float(log_sf.max())]))

    def split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A random (train, validation) split of ``n`` cells, ``valid_fraction`` held out (the
        released ``random_split(dataset, [0.9, 0.1])``, drawn here from the fit's seed)."""
        perm = torch.randperm(n, generator=self.gen, device=self.device)
        n_valid = int(math.floor(self.cfg.valid_fraction * n)) if n > 2 else 0
        return perm[n_valid:], perm[:n_valid]

    # -- stage 1: the NB autoencoder ---------------------------------------------------------------
    def ae_loss(self, counts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Negative NB log-likelihood of the counts, summed over genes, mean over cells (released
        ``EncoderModel._step``); the size factor is each cell's total count."""
        size_factor = counts.sum(1, keepdim=True)
        mu = self.ae.decode(self.ae.encode(counts), size_factor)
        return -nb_log_prob(counts, mu, self.ae.theta(labels)).sum(1).mean()

    def ae_epoch(
        self, rows: Rows, y: torch.Tensor, train_idx: torch.Tensor, *, max_steps: int, stop_at: float | None
    ) -> dict[str, float]:
        """One pass over the training split (fewer steps at ``max_steps`` or past ``stop_at``, a
        perf_counter time); the mean training loss."""
        self.ae.train()
        total, n = torch.zeros((), device=self.device), 0
        for b in _batches(train_idx.numel(), self.cfg.ae_batch_size, self.gen, self.device):
            if self.steps["autoencoder"] >= max_steps or (
                stop_at is not None and time.perf_counter() >= stop_at
            ):
                break
            idx = train_idx[b]
            loss = self.ae_loss(rows(idx), y[idx])
            self.ae_opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.ae.parameters(), self.cfg.grad_clip)
            self.ae_opt.step()
            total += loss.detach()
            n += 1
            self.steps["autoencoder"] += 1
            self.cells_seen += int(idx.numel())
        self.epochs["autoencoder"] += 1
        return {"ae_loss": float(total) / max(n, 1)}

    @torch.no_grad()
    def ae_valid(self, rows: Rows, y: torch.Tensor, idx: torch.Tensor, chunk: int = 4096) -> float:
        self.ae.eval()
        losses = [
            self.ae_loss(rows(idx[i : i + chunk]), y[idx[i : i + chunk]]) * min(chunk, idx.numel() - i)
            for i in range(0, idx.numel(), chunk)
        ]
        return float(sum(losses) / idx.numel()) if losses else float("nan")

    @torch.no_grad()
    def encode_all(self, rows: Rows, n: int, chunk: int = 4096) -> torch.Tensor:
        """Latents of every cell through the frozen encoder in eval mode (the released estimator
        freezes it and calls ``encoder_model.eval()``, cfgen_estimator.py ``init_model``; the flow's
        training step encodes each batch under ``torch.no_grad()``, fm.py ``_step``). A frozen,
        eval-mode encoder maps a cell to the same latent at every step, so encoding once gives the
        same numbers."""
        self.ae.eval()
        idx = torch.arange(n, device=self.device)
        self.latents = torch.cat([self.ae.encode(rows(idx[i : i + chunk])) for i in range(0, n, chunk)])
        return self.latents

    # -- stage 2: latent flow matching ---------------------------------------------------------------
    def fm_loss(
        self, x1: torch.Tensor, log_sf: torch.Tensor, labels: torch.Tensor, conditioned: bool
    ) -> torch.Tensor:
        """Mean squared error between the velocity network at (x_t, t) and the path's target
        (released ``FM._step``); the label embedding enters only when ``conditioned``."""
        t = sample_times(
            x1.shape[0], antithetic=self.cfg.antithetic_time_sampling, gen=self.gen, device=self.device
        )
        eps = torch.randn(x1.shape, generator=self.gen, device=self.device)
        xt, ut = probability_path(x1, eps, t, self.cfg.sigma)
        v = self.flow(xt, t, log_sf, labels if conditioned else None)
        return torch.mean((v - ut) ** 2)

    def fm_epoch(
        self,
        log_sf: torch.Tensor,
        y: torch.Tensor,
        train_idx: torch.Tensor,
        *,
        max_steps: int,
        stop_at: float | None,
    ) -> dict[str, float]:
        """One pass of flow matching over the training split's latents. Classifier-free guidance
        training: one Bernoulli(``conditioning_probability``) draw per batch decides whether the
        batch's field sees its labels (released ``MLPTimeStep.forward``: ``is_conditioned`` is drawn
        once per forward call)."""
        assert self.latents is not None, "encode_all() first"
        self.flow.train()
        total, n = torch.zeros((), device=self.device), 0
        for b in _batches(train_idx.numel(), self.cfg.fm_batch_size, self.gen, self.device):
            if self.steps["flow"] >= max_steps or (stop_at is not None and time.perf_counter() >= stop_at):
                break
            idx = train_idx[b]
            conditioned = bool(
                torch.rand((), generator=self.gen, device=self.device) < self.cfg.conditioning_probability
            )
            loss = self.fm_loss(self.latents[idx], log_sf[idx], y[idx], conditioned)
            self.fm_opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.flow.parameters(), self.cfg.grad_clip)
            self.fm_opt.step()
            total += loss.detach()
            n += 1
            self.steps["flow"] += 1
            self.cells_seen += int(idx.numel())
        self.epochs["flow"] += 1
        return {"fm_loss": float(total) / max(n, 1)}

    @torch.no_grad()
    def fm_valid(self, log_sf: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> float:
        if not idx.numel():
            return float("nan")
        self.flow.eval()
        return float(self.fm_loss(self.latents[idx], log_sf[idx], y[idx], True))

    # -- generation -------------------------------------------------------------------------------
    def log_size_factors(self, labels: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
        """Log size factors of cells to generate: ``lognormal`` = Normal(mean, sd) of the label's
        training log size factors (released ``FM.sample``); ``empirical`` = a training cell's of the
        label, drawn with replacement."""
        lab = labels.cpu()
        if mode == "lognormal":
            z = torch.randn(lab.shape, generator=gen, device=gen.device, dtype=torch.float64).cpu()
            out = self.sf_mean[lab] + self.sf_sd[lab] * z
        else:
            out = torch.empty(lab.shape, dtype=torch.float64)
            u = torch.rand(lab.shape, generator=gen, device=gen.device, dtype=torch.float64).cpu()
            for i, pool in enumerate(self.sf_pool):
                rows = lab == i
                if rows.any():
                    out[rows] = pool[(u[rows] * pool.numel()).long().clamp(max=pool.numel() - 1)]
        return out.float().to(self.device)

    @torch.no_grad()
    def sample_latents(
        self,
        labels: torch.Tensor,
        log_sf: torch.Tensor,
        gen: torch.Generator,
        *,
        guidance_weight: float,
        solver: str,
        ode_steps: int,
        atol: float,
        rtol: float,
    ) -> tuple[torch.Tensor, int]:
        """Integrate the guided field from z ~ N(0, I) at t = 0 to t = 1 (released ``FM.sample``,
        ``ode.py:torch_wrapper`` with ``guided_conditioning = True``: the unconditional and the
        label's conditional field at every evaluation)."""
        self.flow.eval()
        labels = labels.to(self.device)
        z = torch.randn((labels.numel(), self.ae.latent_dim), generator=gen, device=self.device)

        def field(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            v_u = self.flow(x, t, log_sf, None)
            return guided_velocity(v_u, [self.flow(x, t, log_sf, labels)], [guidance_weight])

        if solver == "euler":
            return euler(field, z, ode_steps)
        return dopri5(field, z, atol=atol, rtol=rtol)

    @torch.no_grad()
    def nb_means(
        self, latents: torch.Tensor, log_sf: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's NB means (eval mode) at size factor exp(log_sf), and the label's theta."""
        self.ae.eval()
        mu = self.ae.decode(latents, torch.exp(log_sf).reshape(-1, 1))
        theta = self.ae.theta(labels.to(self.device))
        return mu, theta.expand_as(mu)

    def sample_counts(self, mu: torch.Tensor, theta: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
        return sample_nb(mu.double().cpu().numpy(), theta.double().cpu().numpy(), rng)

    # -- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "ae": self.ae.state_dict(),
            "flow": self.flow.state_dict(),
            "sf_mean": self.sf_mean,
            "sf_sd": self.sf_sd,
            "sf_pool": self.sf_pool,
            "steps": dict(self.steps),
            "epochs": dict(self.epochs),
            "cells_seen": self.cells_seen,
        }

    def load_state_dict(self, state: dict) -> None:
        self.ae.load_state_dict(state["ae"])
        self.flow.load_state_dict(state["flow"])
        self.sf_mean, self.sf_sd = state["sf_mean"].cpu(), state["sf_sd"].cpu()
        self.sf_pool = [p.cpu() for p in state["sf_pool"]]
        self.steps, self.epochs = dict(state["steps"]), dict(state["epochs"])
        self.cells_seen = int(state["cells_seen"])
