"""ACTIVA networks and loss terms, built as the released code builds them.

Facts from the upstream study (shared reference ``upstream-models.md`` sections 1.2, 1.3, 2.1) and
the ACTIVA paper (Heydari et al., Bioinformatics 2023, section 3):

* Encoder: ``genes -> 1024 -> 512 -> 256 -> 2*zdim``; every layer is ``Linear -> ReLU -> BatchNorm``
  (batch norm *after* the activation), the last layer too, so ``mu`` and ``logvar`` both come out
  of ReLU + BN; the output is split in half with ``chunk(2, dim=1)``.
* Decoder ("generator"): ``zdim -> 256 -> 512 -> 1024 -> genes``; hidden layers ``Linear -> ReLU ->
  BatchNorm``, output ``Linear -> ReLU`` (no library-size-normalisation layer: the released code
  comments it out).
* ACTINN classifier: ``genes -> 100 -> 50 -> 25 -> classes`` with ReLU, logits out (no softmax, no
  batch norm, no dropout); PyTorch default initialisation (ACTIVA.py never applies ACTINN's Xavier
  init).
* PyTorch defaults everywhere else (BatchNorm eps 1e-5, momentum 0.1, affine; Linear init).
"""

from __future__ import annotations

import torch
from torch import nn

ENCODER_HIDDEN = (1024, 512, 256)
DECODER_HIDDEN = (256, 512, 1024)
ACTINN_HIDDEN = (100, 50, 25)


def _block(n_in: int, n_out: int) -> list[nn.Module]:
    return [nn.Linear(n_in, n_out), nn.ReLU(), nn.BatchNorm1d(n_out)]


class Encoder(nn.Module):
    """``x -> (mu, logvar)``; both halves of the last ReLU + BatchNorm layer."""

    def __init__(self, n_genes: int, zdim: int = 128, hidden: tuple[int, ...] = ENCODER_HIDDEN):
        super().__init__()
        layers: list[nn.Module] = []
        n_in = n_genes
        for h in hidden:
            layers += _block(n_in, h)
            n_in = h
        layers += _block(n_in, 2 * zdim)
        self.main = nn.Sequential(*layers)
        self.zdim = zdim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.main(x).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """``z -> x``; ReLU output on the training data's scale (no per-cell normalisation)."""

    def __init__(self, n_genes: int, zdim: int = 128, hidden: tuple[int, ...] = DECODER_HIDDEN):
        super().__init__()
        layers: list[nn.Module] = []
        n_in = zdim
        for h in hidden:
            layers += _block(n_in, h)
            n_in = h
        layers += [nn.Linear(n_in, n_genes), nn.ReLU()]
        self.main = nn.Sequential(*layers)
        self.zdim = zdim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class ACTINN(nn.Module):
    """ACTINN cell-type classifier (Ma & Pellegrini 2019, PyTorch port): logits out."""

    def __init__(self, n_genes: int, n_classes: int, hidden: tuple[int, ...] = ACTINN_HIDDEN):
        super().__init__()
        layers: list[nn.Module] = []
        n_in = n_genes
        for h in hidden:
            layers += [nn.Linear(n_in, h), nn.ReLU()]
            n_in = h
        layers.append(nn.Linear(n_in, n_classes))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class ActivaNet(nn.Module):
    """Encoder + decoder with the reparameterisation trick (``std = exp(0.5 * logvar)``)."""

    def __init__(self, n_genes: int, zdim: int = 128):
        super().__init__()
        self.encoder = Encoder(n_genes, zdim)
        self.decoder = Decoder(n_genes, zdim)
        self.zdim = zdim

    @staticmethod
    def reparameterize(
        mu: torch.Tensor,
        logvar: torch.Tensor,
        generator: torch.Generator | None = None,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``z = mu + eps * exp(0.5 * logvar)``, always in fp32 (also under bf16 autocast); ``eps``
        ~ N(0, I) is drawn in fp32 from ``generator`` unless given."""
        mu, logvar = mu.float(), logvar.float()
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=torch.float32)
        return mu + eps.float() * torch.exp(0.5 * logvar)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x)
        z = self.reparameterize(mu, logvar, generator, eps)
        return mu, logvar, z, self.decoder(z)


# -- loss terms (reductions exactly as in the released code, reference section 1.3) ------------------


def kl_per_sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample: ``-0.5 * sum_j (1 + logvar - mu^2 - exp(logvar))``."""
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL term as trained: per-sample KL, then the mean over the batch."""
    return kl_per_sample(mu, logvar).mean()


def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L_rec: squared error summed over genes, mean over the batch (no 1/2 factor, unlike Eq. 2)."""
    return (rec.float() - x.float()).pow(2).sum(dim=1).mean()


def celltype_loss(rec_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """L_cls: squared difference of ACTINN logits, summed over classes AND over the batch
    (``MSELoss(size_average=False)``; no 1/2 factor, unlike Eq. 5)."""
    return (rec_logits.float() - real_logits.float()).pow(2).sum()


def margin_loss(
    kl_real: torch.Tensor, kl_rec: torch.Tensor, kl_fake: torch.Tensor, m: float, weight_neg: float = 0.5
) -> torch.Tensor:
    """Encoder's introspective term: ``KL(real) + 0.5 * weight_neg * ([m - KL(rec)]^+ + [m - KL(fake)]^+)``
    with batch-mean KLs (so with weight_neg 0.5 the hinge terms carry an overall factor 0.25)."""
    hinge = torch.relu(m - kl_rec) + torch.relu(m - kl_fake)
    return kl_real + 0.5 * weight_neg * hinge
