"""scDiffusion's training and sampling on tensors (no AnnData): the three stages of the released
recipe, autoencoder, latent diffusion, noisy-latent classifier, each a loop of optimizer steps over
shuffled mini-batches; encoding, decoding, and (guided) ancestral sampling.

Written from the released code (github.com/EperLuo/scDiffusion, commit e20ee19): ``VAE/VAE_train.py``
and ``VAE/VAE_model.py`` (VAE.train_step: AdamW, MSE), ``cell_train.py`` and
``guided_diffusion/train_util.py`` (TrainLoop: AdamW, uniform timesteps, linear learning-rate
anneal), ``classifier_train.py`` (noised latents at t < start_guide_time, cross-entropy),
``classifier_sample.py`` (cond_fn_ori: the gradient of the scaled log-probability) and
``cell_sample.py``. docs/models/scdiffusion.md lists each fact with its place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import torch
from torch.nn import functional as F

from bench.generators.scdiffusion.diffusion import GaussianDiffusion, beta_schedule, space_timesteps
from bench.generators.scdiffusion.networks import Autoencoder, Denoiser, NoisyClassifier

STAGES = ("autoencoder", "diffusion", "classifier")
# BatchNorm of the autoencoder when it encodes the training cells and decodes generated ones:
# 'batch' = as released (the module is never put in eval mode, so BatchNorm normalises with the
# statistics of the cells passed together); 'running' = eval mode, the running statistics of training
BN_MODES = ("batch", "running")


@dataclass
class TrainConfig:
    """Every number of the three stages and of sampling (the plugin's parameters, resolved)."""

    n_genes: int
    n_classes: int
    latent_dim: int = 128
    ae_hidden: list[int] = field(default_factory=lambda: [1024, 1024, 1024])
    ae_dropout: float = 0.0
    ae_input_dropout: float = 0.0
    ae_steps: int = 150_000
    ae_lr: float = 5e-4
    ae_weight_decay: float = 0.01
    ae_batch_size: int = 128
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    denoiser_hidden: list[int] = field(default_factory=lambda: [512, 512, 256, 128])
    diffusion_train_steps: int = 500_000
    diffusion_lr: float = 1e-4
    diffusion_weight_decay: float = 1e-4
    diffusion_batch_size: int = 128
    diffusion_lr_anneal_steps: int | None = None
    classifier_hidden: list[int] = field(default_factory=lambda: [512, 512, 256, 128])
    classifier_dropout: float = 0.1
    classifier_steps: int = 500_000
    classifier_lr: float = 3e-4
    classifier_weight_decay: float = 0.0
    classifier_batch_size: int = 128
    classifier_max_t: int = 500
    bn_mode: str = "batch"

    @property
    def stage_steps(self) -> dict[str, int]:
        return {
            "autoencoder": self.ae_steps,
            "diffusion": self.diffusion_train_steps,
            "classifier": self.classifier_steps,
        }

    @property
    def total_steps(self) -> int:
        return sum(self.stage_steps.values())

    def batch_size(self, stage: str) -> int:
        return {"autoencoder": self.ae_batch_size, "diffusion": self.diffusion_batch_size}.get(
            stage, self.classifier_batch_size
        )

    def steps_per_epoch(self, n_cells: int) -> int:
        """Optimizer steps of one pass over ``n_cells`` cells by every stage (full batches only)."""
        return sum(max(1, n_cells // min(self.batch_size(s), n_cells)) for s in STAGES)

    def anneal_steps(self) -> int:
        return int(self.diffusion_lr_anneal_steps or self.diffusion_train_steps)

    def rescaled(self, steps: int) -> TrainConfig:
        """The three stages scaled together to about ``steps`` optimizer steps, each keeping its share
        (at least one step each); the diffusion's learning-rate anneal scales with its stage."""
        factor = steps / self.total_steps
        diff = max(1, round(self.diffusion_train_steps * factor))
        return replace(
            self,
            ae_steps=max(1, round(self.ae_steps * factor)),
            diffusion_train_steps=diff,
            classifier_steps=max(1, round(self.classifier_steps * factor)),
            diffusion_lr_anneal_steps=max(diff, round(self.anneal_steps() * factor)),
        )

    def to_dict(self) -> dict:
        return asdict(self)


class Batches:
    """Endless shuffled mini-batches of row indices, full batches only (the released DataLoader:
    ``shuffle=True, drop_last=True``, looped forever); a batch size above the number of cells is
    cut to it (the released loader would yield nothing)."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator, device: torch.device):
        self.n, self.size, self.gen, self.device = n, min(int(batch_size), n), gen, device
        self._it: Iterator[torch.Tensor] = iter(())

    def _epoch(self) -> Iterator[torch.Tensor]:
        perm = torch.randperm(self.n, generator=self.gen, device=self.device)
        for i in range(0, self.n - self.size + 1, self.size):
            yield perm[i : i + self.size]

    def next(self) -> torch.Tensor:
        for rows in self._it:
            return rows
        self._it = self._epoch()
        return next(self._it)


class ScDiffusionTrainer:
    """The three networks, their optimizers, the training diffusion (every timestep) and the counters.

    ``step`` counts optimizer steps over all stages and ``cells_seen`` the training cells they
    processed; ``stage_done`` the steps each stage has taken."""

    def __init__(self, cfg: TrainConfig, *, seed: int, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):  # the networks' initial weights, from the seed
            torch.manual_seed(int(seed))
            self.ae = Autoencoder(
                cfg.n_genes, cfg.latent_dim, list(cfg.ae_hidden), cfg.ae_dropout, cfg.ae_input_dropout
            )
            self.denoiser = Denoiser(cfg.latent_dim, list(cfg.denoiser_hidden))
            self.classifier = NoisyClassifier(
                cfg.latent_dim, list(cfg.classifier_hidden), cfg.n_classes, cfg.classifier_dropout
            )
        for net in (self.ae, self.denoiser, self.classifier):
            net.to(self.device)
        self.opt = {
            "autoencoder": torch.optim.AdamW(
                self.ae.parameters(), lr=cfg.ae_lr, weight_decay=cfg.ae_weight_decay
            ),
            "diffusion": torch.optim.AdamW(
                self.denoiser.parameters(), lr=cfg.diffusion_lr, weight_decay=cfg.diffusion_weight_decay
            ),
            "classifier": torch.optim.AdamW(
                self.classifier.parameters(), lr=cfg.classifier_lr, weight_decay=cfg.classifier_weight_decay
            ),
        }
        self.diffusion = GaussianDiffusion(beta_schedule(cfg.noise_schedule, cfg.diffusion_steps))
        self.gen = torch.Generator(device=self.device).manual_seed(int(seed) + 1)  # batches, timesteps, noise
        self.step = 0
        self.cells_seen = 0
        self.stage_done = dict.fromkeys(STAGES, 0)
        self._batches: dict[str, Batches] = {}

    # -- one optimizer step per stage -------------------------------------------------------------
    def _rows(self, stage: str, n: int) -> torch.Tensor:
        if stage not in self._batches or self._batches[stage].n != n:
            self._batches[stage] = Batches(n, self.cfg.batch_size(stage), self.gen, self.device)
        return self._batches[stage].next()

    def _count(self, stage: str, n: int) -> None:
        self.step += 1
        self.cells_seen += n
        self.stage_done[stage] += 1

    def ae_step(self, X: torch.Tensor) -> torch.Tensor:
        """MSE between the decoder's output (no ReLU in training) and the input (VAE.train_step)."""
        x = X[self._rows("autoencoder", X.shape[0])]
        self.ae.train()
        loss = F.mse_loss(self.ae(x), x)
        opt = self.opt["autoencoder"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self._count("autoencoder", x.shape[0])
        return loss.detach()

    def diffusion_step(self, Z: torch.Tensor) -> torch.Tensor:
        """eps-prediction MSE at uniform timesteps (training_losses, LossType.MSE, UniformSampler),
        with the learning rate annealed linearly to 0 at ``anneal_steps`` (TrainLoop._anneal_lr sets
        ``lr (1 - k / anneal_steps)`` after step k, so step k >= 1 runs at the rate of k - 1)."""
        z0 = Z[self._rows("diffusion", Z.shape[0])]
        k = self.stage_done["diffusion"]
        opt = self.opt["diffusion"]
        for group in opt.param_groups:
            group["lr"] = self.cfg.diffusion_lr * max(0.0, 1.0 - max(k - 1, 0) / self.cfg.anneal_steps())
        t = torch.randint(
            0, self.diffusion.num_timesteps, (z0.shape[0],), generator=self.gen, device=self.device
        )
        noise = torch.randn(z0.shape, generator=self.gen, device=self.device)
        self.denoiser.train()
        loss = F.mse_loss(self.denoiser(self.diffusion.q_sample(z0, t, noise), t), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self._count("diffusion", z0.shape[0])
        return loss.detach()

    def classifier_step(self, Z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the cell type from latents noised to a uniform t < classifier_max_t
        (classifier_train.py: forward_backward_log with ``noised=True``); returns (loss, accuracy).
        Every step returns its loss as a tensor on the device (no synchronisation per step)."""
        rows = self._rows("classifier", Z.shape[0])
        z0, labels = Z[rows], y[rows]
        high = min(self.cfg.classifier_max_t, self.diffusion.num_timesteps)
        t = torch.randint(0, high, (z0.shape[0],), generator=self.gen, device=self.device)
        noise = torch.randn(z0.shape, generator=self.gen, device=self.device)
        self.classifier.train()
        logits = self.classifier(self.diffusion.q_sample(z0, t, noise), t)
        loss = F.cross_entropy(logits, labels)
        opt = self.opt["classifier"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self._count("classifier", z0.shape[0])
        acc = (logits.detach().argmax(1) == labels).float().mean()
        return loss.detach(), acc

    # -- the autoencoder as generation and encoding use it -------------------------------------------
    def _bn(self) -> None:
        self.ae.train(self.cfg.bn_mode == "batch")  # dropout is 0 in the released autoencoder

    @torch.no_grad()
    def encode(self, X: torch.Tensor) -> torch.Tensor:
        """Latents of ``X`` in one pass (load_data encodes the whole data set at once)."""
        self._bn()
        if self.cfg.bn_mode == "batch" and X.shape[0] < 2:
            raise ValueError("batch-statistics encoding needs at least two cells")
        z = self.ae.encoder(X)
        self.ae.train()
        return z

    @torch.no_grad()
    def decode(self, Z: torch.Tensor) -> torch.Tensor:
        """Expression on the training scale (log1p of normalised counts): decoder, then ReLU
        (VAE.forward with ``return_decoded``), in one pass."""
        self._bn()
        x = F.relu(self.ae.decoder(Z))
        self.ae.train()
        return x

    # -- sampling -----------------------------------------------------------------------------------
    def sampler(self, sampling_steps: int) -> GaussianDiffusion:
        """The chain sampling walks: every training timestep, or ``sampling_steps`` of them (respacing)."""
        T = self.diffusion.num_timesteps
        if sampling_steps >= T:
            return self.diffusion
        return GaussianDiffusion(self.diffusion.betas, space_timesteps(T, sampling_steps))

    def guidance(self, label: int, scale: float):
        """grad_x log softmax(classifier(x_t, t))[label] x scale, the classifier in eval mode
        (classifier_sample.py: cond_fn_ori)."""

        def grad_log_p(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                log_probs = F.log_softmax(self.classifier(x_in, t), dim=-1)
                (grad,) = torch.autograd.grad(log_probs[:, label].sum(), x_in)
            return grad * scale

        return grad_log_p

    def sample_latents(
        self,
        n: int,
        gen: torch.Generator,
        *,
        sampling_steps: int,
        clip: bool,
        label: int | None = None,
        scale: float = 0.0,
        guide_below: int = 500,
        guide_window: str = "spaced",
    ) -> torch.Tensor:
        """``n`` latents by ancestral sampling; with ``label``, guided towards it by the classifier
        at ``scale`` (a scale of 0 is unguided sampling)."""
        self.denoiser.eval()
        self.classifier.eval()
        chain = self.sampler(sampling_steps)
        grad = self.guidance(label, scale) if label is not None and scale != 0 else None
        z = chain.sample(
            self.denoiser,
            n,
            self.cfg.latent_dim,
            gen,
            self.device,
            clip=clip,
            grad_log_p=grad,
            guide_below=guide_below,
            guide_window=guide_window,
        )
        self.denoiser.train()
        self.classifier.train()
        return z

    @torch.no_grad()
    def predict(self, Z: torch.Tensor) -> torch.Tensor:
        """The classifier's probabilities of each type for clean latents (t = 0), eval mode."""
        self.classifier.eval()
        p = F.softmax(self.classifier(Z, torch.zeros(Z.shape[0], dtype=torch.long, device=Z.device)), dim=-1)
        self.classifier.train()
        return p

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "ae": self.ae.state_dict(),
            "denoiser": self.denoiser.state_dict(),
            "classifier": self.classifier.state_dict(),
            "counters": {"step": self.step, "cells_seen": self.cells_seen, **self.stage_done},
        }

    def load_state_dict(self, state: dict) -> None:
        self.ae.load_state_dict(state["ae"])
        self.denoiser.load_state_dict(state["denoiser"])
        self.classifier.load_state_dict(state["classifier"])
        c = state["counters"]
        self.step, self.cells_seen = int(c["step"]), int(c["cells_seen"])
        self.stage_done = {s: int(c[s]) for s in STAGES}
