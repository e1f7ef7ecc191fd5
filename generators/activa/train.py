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

from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.generators.activa.batches import EpochNoise, PinnedBatches
from bench.generators.activa.cudagraph import GraphedIntroStep
from bench.generators.activa.model import (
    ACTINN,
    ActivaNet,
    celltype_loss,
    kl_loss,
    margin_loss,
    reconstruction_loss,
)
from bench.generators.activa.schedule import VARIANTS, EpochLog, TrainConfig

__all__ = ["VARIANTS", "ActivaTrainer", "EpochLog", "TrainConfig", "modules"]


class ActivaTrainer(GraphedIntroStep):
    """Holds the networks, optimisers, scheduler, random state and counters of one training run.

    ``X``: dense float32 tensor (cells x genes) on the device, or on the host (pinned) when it does
    not fit, or a :class:`SparseRows` on the host (CPU training of matrices too large to densify);
    ``y``: int64 labels beside it. Batches are index slices of a seeded permutation drawn
    once per epoch on the device: no DataLoader, and no per-batch densification but a SparseRows'.

    On CUDA: bf16 autocast when ``cfg.bf16`` (eps, the losses, generation and ACTINN's confidence
    filter stay fp32), TF32 matmuls when fp32 and ``cfg.tf32``; the introspective step on full
    batches is captured once as a CUDA graph (forward, backward, both fused Adam steps) and replayed
    when ``cfg.cuda_graph``, after ``GRAPH_WARMUP_STEPS`` eager steps (:mod:`.cudagraph`); warm-up
    epochs and the short last batch run eagerly. Logged losses stay on the device until the end of the epoch.
    """

    def __init__(self, cfg: TrainConfig, *, seed: int, device: str | torch.device = "cpu"):
        if cfg.variant not in VARIANTS:
            raise ValueError(f"unknown ACTIVA variant {cfg.variant!r}; use one of {VARIANTS}")
        self.cfg = cfg
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if cuda and self.device.index is None:  # "cuda" -> "cuda:N", as tensors report their device
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.bf16 = bool(cfg.bf16 and cuda)  # autocast in effect (CPU trains in fp32)
        self.tf32 = bool(cfg.tf32 and cuda and not self.bf16)
        self.cuda_graph = bool(cfg.cuda_graph and cuda)
        # parameter init from the seed, without disturbing the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = ActivaNet(cfg.n_genes, cfg.zdim)
            self.cf = ACTINN(cfg.n_genes, cfg.n_classes)
        self.net.to(self.device)
        self.cf.to(self.device)
        enc, dec = self.net.encoder, self.net.decoder
        # fused Adam: same update rule as the default, one kernel per parameter group; the two that
        # the captured step runs are capturable (step counts on the device), as graph capture needs
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        graph = {"capturable": True} if self.cuda_graph else {}
        self.opt_e = torch.optim.Adam(enc.parameters(), lr=cfg.lr_e, betas=(0.9, 0.999), **fused, **graph)
        self.opt_g = torch.optim.Adam(dec.parameters(), lr=cfg.lr_g, betas=(0.9, 0.999), **fused, **graph)
        for opt in (self.opt_e, self.opt_g):  # eager warm-up steps are expected: no "capturable" warning
            opt._warned_capturable_if_run_uncaptured = bool(graph)
        self.opt_cf = torch.optim.Adam(
            self.cf.parameters(),
            lr=cfg.cf_lr,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=cfg.cf_weight_decay,
            **fused,
        )
        self.sched_cf = torch.optim.lr_scheduler.ExponentialLR(self.opt_cf, gamma=cfg.cf_gamma)
        self.gen_index = torch.Generator(device=self.device).manual_seed(seed)  # batch permutations
        self.gen_noise = torch.Generator(device=self.device).manual_seed(seed + 1)  # noise, eps
        self.epoch = 0  # last completed epoch of the ACTIVA schedule (1-based)
        self.cf_epoch = 0  # completed classifier-only pre-training epochs
        self.step = 0  # global iteration counter (drives the ACTINN LR decay)
        self.cf_steps = 0
        self.intro_steps = 0
        self.vae_steps = 0
        self.cells_seen = 0  # training cells processed, over all steps
        self.graphed_steps = 0  # introspective steps replayed from the CUDA graph
        self._reset_graph()

    # -- numerics ---------------------------------------------------------------------------
    def _autocast(self):
        # a captured graph must not use autocast's weight-cast cache (torch.cuda.graphs docs)
        return torch.autocast(
            device_type=self.device.type,
            dtype=torch.bfloat16,
            enabled=self.bf16,
            cache_enabled=False if self._capturing else None,
        )

    @contextmanager
    def _matmul_precision(self):
        """TF32 matmuls and convolutions while training in fp32 on CUDA; restored afterwards, so
        generation, metrics and other code keep full fp32."""
        if not self.tf32:
            yield
            return
        before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before

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

    def vae_step(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One plain-VAE step; ``eps`` (fp32) is drawn from the trainer's generator unless given."""
        self.net.train()
        self.opt_e.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            mu, logvar, _, rec = self.net(x, self.gen_noise, eps)
        l_rec = reconstruction_loss(rec, x)
        l_kl = kl_loss(mu, logvar)
        (l_rec + l_kl).backward()
        self.opt_e.step()
        self.opt_g.step()
        self.vae_steps += 1
        return {"rec": l_rec.detach(), "kl_real": l_kl.detach()}

    def intro_step(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, eps: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One introspective step; ``noise`` (the decoder's prior z) and ``eps`` are drawn from the
        trainer's generator (noise first) unless given. Nothing in it waits for the device."""
        cfg = self.cfg
        enc, dec = self.net.encoder, self.net.decoder
        self.net.train()
        self.cf.eval()
        paper = cfg.variant == "paper"
        if noise is None:
            noise = torch.randn((x.shape[0], cfg.zdim), generator=self.gen_noise, device=self.device)
        with self._autocast():
            with torch.no_grad():  # ACTINN is frozen; f(x) carries no gradient to E or G
                real_logits = self.cf(x)
            # x_g: in `reference` it is only ever used detached, so no graph is kept
            with torch.set_grad_enabled(paper):
                fake = dec(noise)
            mu, logvar, _, rec = self.net(x, self.gen_noise, eps)
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
    def _batches(self, X: torch.Tensor) -> list[torch.Tensor]:
        """This epoch's batches: slices of one permutation drawn on the device generator (moved to
        the host once when the matrix lives there). A last batch of one cell is dropped: BatchNorm
        cannot train on it (the released DataLoader would crash on it, too)."""
        g = self.gen_index
        perm = torch.randperm(X.shape[0], generator=g, device=g.device)
        if perm.device != X.device:
            perm = perm.to(X.device)
        return [idx for idx in perm.split(self.cfg.batch_size) if idx.numel() >= 2]

    def _host_batch(
        self, X: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pinned is None or self._pinned.X is not X or (y is not None and self._pinned.y is not y):
            labels = y if y is not None else torch.zeros(X.shape[0], dtype=torch.int64)
            self._pinned = PinnedBatches(X, labels, self.cfg.batch_size, self.device)
        return self._pinned(idx)

    def _get(self, X: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if X.device == self.device:
            return X[idx], y[idx]
        if self.device.type == "cuda":  # training matrix too big for the accelerator
            return self._host_batch(X, y, idx)
        return X[idx].to(self.device), y[idx].to(self.device)

    def _noise(self, batches: list[torch.Tensor], *, noise: bool) -> EpochNoise:
        sizes = [int(idx.numel()) for idx in batches]
        return EpochNoise(
            self.gen_noise, self.cfg.zdim, sizes, noise=noise, per_epoch=self.device.type == "cuda"
        )

    def run_classifier_epoch(self, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One epoch of ACTINN-only pre-training (the released ``--classifierOnly`` mode)."""
        log = EpochLog()
        with self._matmul_precision():
            for idx in self._batches(X):
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
        batches = self._batches(X)
        draws = self._noise(batches, noise=phase == "intro")
        graphed = self.cuda_graph and phase == "intro"
        with self._matmul_precision():
            for k, idx in enumerate(batches):
                self.step += 1
                self.cells_seen += idx.numel()
                noise, eps = draws.step(k)
                if graphed and idx.numel() == self.cfg.batch_size:
                    log.add(**self.graphed_intro_step(X, idx, noise, eps))
                    continue
                xb, yb = self._get(X, y, idx)
                if phase == "warmup-cf":
                    log.add(**self.classifier_step(xb, yb))
                if phase in ("warmup-cf", "warmup-vae"):
                    log.add(**self.vae_step(xb, eps))
                else:
                    log.add(**self.intro_step(xb, noise, eps))
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
            xb = X[i : i + chunk].to(self.device).float()
            logits = self.cf(xb)  # fp32 logits (also after bf16 training): confidence is a threshold on them
            out.append(torch.softmax(logits, dim=1).cpu())
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
            ),
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
        # generator states are CPU ByteTensors on every device; one saved on another device type
        # does not fit: reseed deterministically from the step counter
        step = int(state["counters"][2])
        for gen, key, offset in ((self.gen_index, "gen_index", 0), (self.gen_noise, "gen_noise", 1)):
            try:
                gen.set_state(state[key].cpu())
            except RuntimeError:
                gen.manual_seed(step + offset)
        self._reset_graph()  # new optimiser state tensors: a captured step would use the old ones
        counters = [int(v) for v in state["counters"]]
        (self.epoch, self.cf_epoch, self.step, self.cf_steps, self.intro_steps, self.vae_steps) = counters[:6]
        # checkpoints written before cells were counted: steps x batch size is the best estimate
        self.cells_seen = counters[6] if len(counters) > 6 else self.step * self.cfg.batch_size


def modules(trainer: ActivaTrainer) -> dict[str, nn.Module]:
    return {"encoder": trainer.net.encoder, "decoder": trainer.net.decoder, "classifier": trainer.cf}
