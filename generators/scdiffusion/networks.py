"""scDiffusion's three networks: the autoencoder (encoder with an L2-normalised 128-d latent, decoder),
the skip-connected MLP that predicts the noise, and the noisy-latent cell-type classifier.

Written from the released code (github.com/EperLuo/scDiffusion, commit e20ee19): ``VAE/VAE_model.py``
(Encoder, Decoder, VAE), ``guided_diffusion/cell_model.py`` (Cell_Unet, Cell_classifier) and
``guided_diffusion/nn.py`` (timestep_embedding). Layer sizes are arguments; the defaults of
:mod:`bench.generators.scdiffusion.settings` are the released ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps ``t`` (shape ``[N]``): ``[cos(t f_k),
    sin(t f_k)]`` with ``f_k = max_period^(-k / (dim // 2))``, ``k < dim // 2``, zero-padded to ``dim``
    when odd (guided_diffusion/nn.py: timestep_embedding)."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * k / half)
    args = t.reshape(-1, 1).float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Encoder(nn.Module):
    """Genes -> latent: per hidden layer (dropout, linear, BatchNorm, PReLU), then a linear layer to
    ``latent_dim`` and L2 normalisation of each cell's latent (VAE_model.py: Encoder.forward ends in
    ``F.normalize(x, p=2, dim=1)``), so every latent lies on the unit sphere."""

    def __init__(
        self, n_genes: int, latent_dim: int, hidden: list[int], dropout: float, input_dropout: float
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_genes
        for i, h in enumerate(hidden):
            layers += [
                nn.Dropout(input_dropout if i == 0 else dropout),
                nn.Linear(width, h),
                nn.BatchNorm1d(h),
                nn.PReLU(),
            ]
            width = h
        layers.append(nn.Linear(width, latent_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), p=2, dim=1)


class Decoder(nn.Module):
    """Latent -> genes: (linear, BatchNorm, PReLU) for the first hidden layer, (dropout, linear,
    BatchNorm, PReLU) for the others, then a linear layer to the genes (VAE_model.py: Decoder). No
    output activation in training; generation applies a ReLU (VAE.forward, ``return_decoded``)."""

    def __init__(self, n_genes: int, latent_dim: int, hidden: list[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for i, h in enumerate(hidden):
            if i:
                layers.append(nn.Dropout(dropout))
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.PReLU()]
            width = h
        layers.append(nn.Linear(width, n_genes))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Autoencoder(nn.Module):
    """The released 'VAE' (a deterministic autoencoder, VAE_model.py: class VAE): encoder widths
    ``hidden``, decoder widths reversed, trained by MSE on log1p-normalised expression."""

    def __init__(
        self, n_genes: int, latent_dim: int, hidden: list[int], dropout: float, input_dropout: float
    ):
        super().__init__()
        self.encoder = Encoder(n_genes, latent_dim, hidden, dropout, input_dropout)
        self.decoder = Decoder(n_genes, latent_dim, list(reversed(hidden)), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class _Block(nn.Module):
    """Linear, plus the projected time embedding (SiLU, linear), LayerNorm, SiLU (cell_model.py:
    ResidualBlock; its dropout is fixed at 0 there, so none here)."""

    def __init__(self, n_in: int, n_out: int, n_time: int):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(n_time, n_out))
        self.norm = nn.LayerNorm(n_out)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm(self.fc(x) + self.emb(emb)[rows]))


class Denoiser(nn.Module):
    """The noise predictor eps(x_t, t) (cell_model.py: Cell_Unet): a time embedding of width
    ``hidden[0]`` (sinusoidal, linear, SiLU, linear), blocks down ``input -> hidden[0] -> ... ->
    hidden[-1]``, blocks back up to ``hidden[0]`` each followed by a skip connection adding the
    down path's output of the same width, then linear to ``2 hidden[1]``, LayerNorm, SiLU, linear
    to the input. Cell_Unet's ``dropout`` argument builds a layer its forward never applies."""

    def __init__(self, input_dim: int, hidden: list[int]):
        super().__init__()
        if len(hidden) < 2:
            raise ValueError("the denoiser needs at least two hidden widths")
        self.time_dim = hidden[0]
        self.time_embed = nn.Sequential(
            nn.Linear(hidden[0], hidden[0]), nn.SiLU(), nn.Linear(hidden[0], hidden[0])
        )
        widths = [input_dim, *hidden]
        self.down = nn.ModuleList(_Block(widths[i], widths[i + 1], hidden[0]) for i in range(len(hidden)))
        self.up = nn.ModuleList(
            _Block(hidden[i + 1], hidden[i], hidden[0]) for i in reversed(range(len(hidden) - 1))
        )
        self.out1 = nn.Linear(hidden[0], 2 * hidden[1])
        self.norm_out = nn.LayerNorm(2 * hidden[1])
        self.out2 = nn.Linear(2 * hidden[1], input_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # the time embedding and its projections are computed once per distinct timestep and
        # gathered per cell (the same numbers as per cell; sampling calls with one timestep)
        times, rows = torch.unique(t, return_inverse=True)
        emb = self.time_embed(timestep_embedding(times, self.time_dim).to(x.dtype))
        skips = []
        for block in self.down:
            x = block(x, emb, rows)
            skips.append(x)
        skips.pop()  # the bottleneck's own output is not added back
        for block in self.up:
            x = block(x, emb, rows) + skips.pop()
        return self.out2(F.silu(self.norm_out(self.out1(x))))


class NoisyClassifier(nn.Module):
    """p(cell type | x_t, t) on noisy latents (cell_model.py: Cell_classifier): a time embedding of
    width ``hidden[0]``; ``fc1`` and ``fc2`` each add a projection of it, then BatchNorm, SiLU,
    dropout; ``fc3`` (no time term), BatchNorm, SiLU, dropout; a linear layer to the classes. Only
    ``hidden[:3]`` are used (the released default lists a fourth width it never builds)."""

    def __init__(self, input_dim: int, hidden: list[int], n_classes: int, dropout: float):
        super().__init__()
        if len(hidden) < 3:
            raise ValueError("the classifier needs three hidden widths")
        h0, h1, h2 = hidden[:3]
        self.time_dim = h0
        self.time_embed = nn.Sequential(nn.Linear(h0, h0), nn.SiLU(), nn.Linear(h0, h0))
        self.fc1, self.fc2, self.fc3 = nn.Linear(input_dim, h0), nn.Linear(h0, h1), nn.Linear(h1, h2)
        self.emb1 = nn.Sequential(nn.SiLU(), nn.Linear(h0, h0))
        self.emb2 = nn.Sequential(nn.SiLU(), nn.Linear(h0, h1))
        self.norm1, self.norm2, self.norm3 = nn.BatchNorm1d(h0), nn.BatchNorm1d(h1), nn.BatchNorm1d(h2)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(h2, n_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.time_dim).to(x.dtype))
        x = self.drop(F.silu(self.norm1(self.fc1(x) + self.emb1(emb))))
        x = self.drop(F.silu(self.norm2(self.fc2(x) + self.emb2(emb))))
        x = self.drop(F.silu(self.norm3(self.fc3(x))))
        return self.out(x)
