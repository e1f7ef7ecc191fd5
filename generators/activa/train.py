"""ACTIVA training: warm-up (ACTINN + plain VAE) then introspective training, as the released code.

Schedule (reference section 1.4; epochs are 1-based, ``1 .. epochs`` inclusive):

* ``epoch < num_cf``: per batch one ACTINN step (cross-entropy), then one plain-VAE step;
* ``epoch < num_vae``: per batch one plain-VAE step (``L_rec + KL``, both optimisers step);
* otherwise the introspective step, with ACTINN frozen.

Introspective step, variant ``reference`` (as the released code trains)::

    L_E = weight_kl * [KL(x) + 0.5*weight_neg*([m - KL(E(x_r.detach()))]^+ + [m - KL(E(x_g.detach()))]^+)]
          + weight_rec * (L_cls + L_rec)
    L_E.backward(); step E; step G       # G only ever sees d(weight_rec*(L_cls + L_rec))/dG

The released code then re-encodes the *detached* x_r and x_g with the updated encoder and calls
``L_G.backward()`` before stepping G; that pass changes no parameter (its encoder gradients are
zeroed before use, the detached inputs carry no gradient to G), so it is skipped here.

Variant ``paper`` (Eq. 3-4, as in IntroVAE): the decoder additionally minimises
``weight_kl * 0.5 * (KL(E(x_r)) + KL(E(x_g)))`` computed through the updated encoder *without* detaching,
so the introspective (adversarial) gradient reaches the generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from bench.generators.activa.model import (
    ACTINN,
    ActivaNet,
    celltype_loss,
    kl_loss,
    margin_loss,
    reconstruction_loss,
)
from torch import nn

VARIANTS = ("reference", "paper")


@dataclass
class TrainConfig:
    n_genes: int
    n_classes: int
    zdim: int = 128
    variant: str = "reference"
    m: float = 110.0
    weight_kl: float = 1.0
    weight_rec: float = 0.05
    weight_neg: float = 0.5
    num_cf: int = 5
    num_vae: int = 10
    epochs: int = 500
    classifier_epochs: int = 0
    batch_size: int = 128
    lr_e: float = 2e-4
    lr_g: float = 2e-4
    cf_lr: float = 1e-4
    cf_weight_decay: float = 0.005
    cf_gamma: float = 0.95
    cf_step: int = 1000
    bf16: bool = True

    def steps_per_epoch(self, n_cells: int) -> int:
        """Iterations (steps) one epoch over ``n_cells`` cells takes (a last batch of one cell is
        skipped: BatchNorm cannot train on it)."""
        bs = self.batch_size
        return n_cells // bs + (1 if n_cells % bs >= 2 else 0)

    def rescaled(self, steps: int, n_cells: int) -> TrainConfig:
        """This schedule stretched or shrunk to about ``steps`` steps over ``n_cells`` cells: whole
        epochs (at least one), the warm-up phases keeping their share of the epochs; ACTINN-only
        pre-training (``classifier_epochs``) is not part of the budget."""
        epochs = max(1, round(steps / max(self.steps_per_epoch(n_cells), 1)))
        factor = epochs / self.epochs
        num_cf = 1 + round((self.num_cf - 1) * factor)
        num_vae = max(num_cf, 1 + round((self.num_vae - 1) * factor))
        return replace(self, epochs=epochs, num_cf=num_cf, num_vae=num_vae)

    def phase(self, epoch: int) -> str:
        """'warmup-cf' (ACTINN + VAE), 'warmup-vae' (VAE only) or 'intro' for a 1-based epoch."""
        if epoch < self.num_cf:
            return "warmup-cf"
        if epoch < self.num_vae:
            return "warmup-vae"
        return "intro"


@dataclass
class EpochLog:
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, **values: torch.Tensor | float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


class ActivaTrainer:
    """Holds the networks, optimisers, scheduler, random state and counters of one training run.

    ``X``: dense float32 tensor (cells x genes) on ``data_device``; ``y``: int64 labels (same device).
    Batches are index slices of a seeded permutation: no DataLoader, no per-batch densification.
    """

    def __init__(self, cfg: TrainConfig, *, seed: int, device: str | torch.device = "cpu"):
        if cfg.variant not in VARIANTS:
            raise ValueError(f"unknown ACTIVA variant {cfg.variant!r}; use one of {VARIANTS}")
        self.cfg = cfg
        self.device = torch.device(device)
        # parameter init from the seed, without disturbing the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = ActivaNet(cfg.n_genes, cfg.zdim)
            self.cf = ACTINN(cfg.n_genes, cfg.n_classes)
        self.net.to(self.device)
        self.cf.to(self.device)
        enc, dec = self.net.encoder, self.net.decoder
        # fused Adam: same update rule as the default, one kernel per parameter group
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        self.opt_e = torch.optim.Adam(enc.parameters(), lr=cfg.lr_e, betas=(0.9, 0.999), **fused)
        self.opt_g = torch.optim.Adam(dec.parameters(), lr=cfg.lr_g, betas=(0.9, 0.999), **fused)
        self.opt_cf = torch.optim.Adam(
            self.cf.parameters(),
            lr=cfg.cf_lr,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=cfg.cf_weight_decay,
            **fused,
        )
        self.sched_cf = torch.optim.lr_scheduler.ExponentialLR(self.opt_cf, gamma=cfg.cf_gamma)
        self.gen_index = torch.Generator().manual_seed(seed)  # batch permutations (CPU)
        self.gen_noise = torch.Generator(device=self.device).manual_seed(seed + 1)  # noise, eps
        self.epoch = 0  # last completed epoch of the ACTIVA schedule (1-based)
        self.cf_epoch = 0  # completed classifier-only pre-training epochs
        self.step = 0  # global iteration counter (drives the ACTINN LR decay)
        self.cf_steps = 0
        self.intro_steps = 0
        self.vae_steps = 0
        self.cells_seen = 0  # training cells processed, over all steps

    # -- autocast ---------------------------------------------------------------------------
    def _autocast(self):
        enabled = self.cfg.bf16 and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # -- single steps ------------------------------------------------------------------------
    def classifier_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        self.cf.train()
        self.opt_cf.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.cf(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        self.opt_cf.step()
        self.cf_steps += 1
        if self.step % self.cfg.cf_step == 0:
            self.sched_cf.step()
        return {"cf_loss": loss.detach()}

    def vae_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.net.train()
        self.opt_e.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            mu, logvar, _, rec = self.net(x, self.gen_noise)
        l_rec = reconstruction_loss(rec, x)
        l_kl = kl_loss(mu, logvar)
        (l_rec + l_kl).backward()
        self.opt_e.step()
        self.opt_g.step()
        self.vae_steps += 1
        return {"rec": l_rec.detach(), "kl_real": l_kl.detach()}

    def intro_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        enc, dec = self.net.encoder, self.net.decoder
        self.net.train()
        self.cf.eval()
        paper = cfg.variant == "paper"
        noise = torch.randn((x.shape[0], cfg.zdim), generator=self.gen_noise, device=self.device)
        with self._autocast():
            with torch.no_grad():  # ACTINN is frozen; f(x) carries no gradient to E or G
                real_logits = self.cf(x)
            # x_g: in `reference` it is only ever used detached, so no graph is kept
            with torch.set_grad_enabled(paper):
                fake = dec(noise)
            mu, logvar, _, rec = self.net(x, self.gen_noise)
            rec_logits = self.cf(rec)  # not detached: L_cls reaches decoder and encoder
            rec_mu, rec_logvar = enc(rec.detach())
            fake_mu, fake_logvar = enc(fake.detach())
        l_rec = reconstruction_loss(rec, x)
        l_cls = celltype_loss(rec_logits, real_logits)
        kl_real = kl_loss(mu, logvar)
        kl_rec = kl_loss(rec_mu, rec_logvar)
        kl_fake = kl_loss(fake_mu, fake_logvar)
        l_margin = margin_loss(kl_real, kl_rec, kl_fake, cfg.m, cfg.weight_neg)
        loss_e = cfg.weight_kl * l_margin + cfg.weight_rec * (l_cls + l_rec)
        self.opt_e.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        loss_e.backward(retain_graph=paper)
        self.opt_e.step()
        out = {
            "loss_e": loss_e.detach(),
            "rec": l_rec.detach(),
            "cls": l_cls.detach(),
            "kl_real": kl_real.detach(),
            "kl_rec": kl_rec.detach(),
            "kl_fake": kl_fake.detach(),
        }
        if paper:
            # Eq. 4 / IntroVAE: through the *updated* encoder, not detached; only G's gradient is
            # wanted (the released code zeroes E's before use), so backward is restricted to G.
            with self._autocast():
                rec_mu2, rec_logvar2 = enc(rec)
                fake_mu2, fake_logvar2 = enc(fake)
            loss_g = cfg.weight_kl * 0.5 * (kl_loss(rec_mu2, rec_logvar2) + kl_loss(fake_mu2, fake_logvar2))
            loss_g.backward(inputs=list(dec.parameters()))
            out["loss_g_kl"] = loss_g.detach()
        self.opt_g.step()
        self.intro_steps += 1
        return out

    # -- epochs ------------------------------------------------------------------------------
    def _batches(self, n: int):
        perm = torch.randperm(n, generator=self.gen_index)
        bs = self.cfg.batch_size
        for i in range(0, n, bs):
            yield perm[i : i + bs]

    def _get(self, X: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if X.device != self.device:  # training matrix too big for the accelerator: copy the batch
            idx_x = idx
            xb = X[idx_x].to(self.device, non_blocking=True)
            yb = y[idx_x].to(self.device, non_blocking=True)
            return xb, yb
        idx = idx.to(X.device)
        return X[idx], y[idx]

    def _skip_batch(self, idx: torch.Tensor) -> bool:
        # BatchNorm cannot train on one cell (the released DataLoader would crash on it, too)
        return idx.numel() < 2

    def run_classifier_epoch(self, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One epoch of ACTINN-only pre-training (the released ``--classifierOnly`` mode)."""
        log = EpochLog()
        for idx in self._batches(X.shape[0]):
            if self._skip_batch(idx):
                continue
            xb, yb = self._get(X, y, idx)
            self.step += 1
            self.cells_seen += idx.numel()
            log.add(**self.classifier_step(xb, yb))
        self.cf_epoch += 1
        return log.means()

    def run_epoch(self, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Train the next epoch of the ACTIVA schedule; returns the epoch's mean losses."""
        epoch = self.epoch + 1
        phase = self.cfg.phase(epoch)
        log = EpochLog()
        for p in self.cf.parameters():  # ACTINN is only trained in the first warm-up phase
            p.requires_grad_(phase == "warmup-cf")
        for idx in self._batches(X.shape[0]):
            if self._skip_batch(idx):
                continue
            xb, yb = self._get(X, y, idx)
            self.step += 1
            self.cells_seen += idx.numel()
            if phase == "warmup-cf":
                log.add(**self.classifier_step(xb, yb))
            if phase in ("warmup-cf", "warmup-vae"):
                log.add(**self.vae_step(xb))
            else:
                log.add(**self.intro_step(xb))
        for p in self.cf.parameters():
            p.requires_grad_(True)
        self.epoch = epoch
        return log.means()

    # -- accuracy ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, X: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """ACTINN class probabilities (softmax of the logits) for the rows of ``X``."""
        self.cf.eval()
        out = []
        for i in range(0, X.shape[0], chunk):
            xb = X[i : i + chunk].to(self.device)
            with self._autocast():
                logits = self.cf(xb)
            out.append(torch.softmax(logits.float(), dim=1).cpu())
        return torch.cat(out) if out else torch.empty(0, self.cfg.n_classes)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.net.encoder.state_dict(),
            "decoder": self.net.decoder.state_dict(),
            "classifier": self.cf.state_dict(),
            "opt_e": self.opt_e.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_cf": self.opt_cf.state_dict(),
            "sched_cf": self.sched_cf.state_dict(),
            "gen_index": self.gen_index.get_state(),
            "gen_noise": self.gen_noise.get_state(),
            "counters": torch.tensor(
                [
                    self.epoch,
                    self.cf_epoch,
                    self.step,
                    self.cf_steps,
                    self.intro_steps,
                    self.vae_steps,
                    self.cells_seen,
                ]
            ),  # fmt: skip
        }

    def load_state_dict(self, state: dict[str, Any], *, weights_only: bool = False) -> None:
        self.net.encoder.load_state_dict(state["encoder"])
        self.net.decoder.load_state_dict(state["decoder"])
        self.cf.load_state_dict(state["classifier"])
        if weights_only or "opt_e" not in state:
            return
        self.opt_e.load_state_dict(state["opt_e"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_cf.load_state_dict(state["opt_cf"])
        self.sched_cf.load_state_dict(state["sched_cf"])
        self.gen_index.set_state(state["gen_index"].cpu())
        if self.device.type == "cpu":
            self.gen_noise.set_state(state["gen_noise"].cpu())
        else:  # a CUDA generator state is a CPU ByteTensor, too
            try:
                self.gen_noise.set_state(state["gen_noise"].cpu())
            except RuntimeError:  # trained on another device type: reseed deterministically
                self.gen_noise.manual_seed(int(state["counters"][2]) + 1)
        counters = [int(v) for v in state["counters"]]
        (self.epoch, self.cf_epoch, self.step, self.cf_steps, self.intro_steps, self.vae_steps) = counters[:6]
        # checkpoints written before cells were counted: steps x batch size is the best estimate
        self.cells_seen = counters[6] if len(counters) > 6 else self.step * self.cfg.batch_size


def modules(trainer: ActivaTrainer) -> dict[str, nn.Module]:
    return {"encoder": trainer.net.encoder, "decoder": trainer.net.decoder, "classifier": trainer.cf}
