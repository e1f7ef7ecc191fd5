"""CFGen's networks in native PyTorch: the NB autoencoder with size factors (stage 1) and the ResNet
velocity network of the latent flow (stage 2), written from the released code (theislab/CFGen;
file:function cited at each piece). Torch only."""

from __future__ import annotations

import math

import torch
from torch import nn

# std of a standard normal truncated to [-2, 2] (released cfgen/models/fm/layer_utils.py)
STD_TRUNC_NORMAL = 0.87962566103423978


class MLP(nn.Module):
    """The released ``cfgen/models/base/utils.py:MLP``: for every layer but the last, Linear ->
    BatchNorm (optional) -> ELU -> Dropout (optional); the last layer is a plain Linear."""

    def __init__(self, dims: list[int], *, batch_norm: bool, dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(len(dims) - 2):
            block: list[nn.Module] = [nn.Linear(dims[i], dims[i + 1])]
            if batch_norm:
                block.append(nn.BatchNorm1d(dims[i + 1]))
            block.append(nn.ELU())
            if dropout > 0:
                block.append(nn.Dropout(dropout))
            layers.append(nn.Sequential(*block))
        layers.append(nn.Linear(dims[-2], dims[-1]))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NBAutoencoder(nn.Module):
    """Stage 1 (released ``cfgen/models/base/encoder_model.py:EncoderModel``, RNA only): a
    deterministic encoder of the normalised counts to ``dims[-1]`` latent dimensions, a mirrored
    decoder whose softmax output times the cell's size factor (its total count) is the NB mean, and
    a learned log inverse dispersion per gene (``theta = "gene"``) or per gene and label
    (``"gene-label"``, the released ``covariate_specific_theta``), initialised N(0, 1)."""

    def __init__(
        self,
        n_genes: int,
        n_labels: int,
        dims: list[int],
        *,
        batch_norm: bool,
        dropout: float,
        theta: str,
        encoder_input: str,
    ):
        super().__init__()
        self.encoder = MLP([n_genes, *dims], batch_norm=batch_norm, dropout=dropout)
        self.decoder = MLP([*dims[::-1], n_genes], batch_norm=batch_norm, dropout=dropout)
        shape = (n_genes,) if theta == "gene" else (n_labels, n_genes)
        self.log_theta = nn.Parameter(torch.randn(shape))
        self.per_label_theta = theta == "gene-label"
        self.encoder_input = encoder_input

    @property
    def latent_dim(self) -> int:
        return self.encoder.net[-1].out_features

    def normalise(self, counts: torch.Tensor) -> torch.Tensor:
        """The encoder's input (released ``cfgen/data/utils.py:normalize_expression``): ``log1p``
        (``log_gexp``, the released configs' choice), ``proportions`` (counts / total) or
        ``log1p-proportions`` (``log_gexp_scaled``)."""
        if self.encoder_input == "log1p":
            return torch.log1p(counts)
        total = counts.sum(1, keepdim=True)
        return counts / total if self.encoder_input == "proportions" else torch.log1p(counts / total)

    def encode(self, counts: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalise(counts))

    def decode(self, z: torch.Tensor, size_factor: torch.Tensor) -> torch.Tensor:
        """NB means: softmax over genes of the decoder's output times the size factor (cells x 1)."""
        return torch.softmax(self.decoder(z), dim=1) * size_factor

    def theta(self, labels: torch.Tensor) -> torch.Tensor:
        """Inverse dispersions (exp of the learned log), per gene or per cell's label."""
        return torch.exp(self.log_theta[labels] if self.per_label_theta else self.log_theta)


def timestep_embedding(t: torch.Tensor, dim: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding (released ``denoising_model.py:get_timestep_embedding``): t in [0, 1]
    scaled by 1,000, times ``dim / 2`` inverse timescales log-spaced from 1 to 1 / ``max_timescale``,
    [sin, cos] concatenated."""
    t = t.reshape(-1).float() * 1000.0
    half = dim // 2
    inv = torch.logspace(0.0, -math.log10(max_timescale), half, device=t.device)
    emb = t[:, None] * inv[None, :]
    return torch.cat([emb.sin(), emb.cos()], dim=1)


class Linear(nn.Linear):
    """Linear with the released flax-style initialisation (``layer_utils.py:default_init``): weights
    from a normal truncated to +-2 std scaled to variance 1 / fan_in, biases zero."""

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.trunc_normal_(self.weight, mean=0.0, std=1.0, a=-2.0, b=2.0)
            self.weight.mul_(math.sqrt(1.0 / self.in_features) / STD_TRUNC_NORMAL)
            if self.bias is not None:
                nn.init.zeros_(self.bias)


def _norm(kind: str, dim: int) -> list[nn.Module]:
    if kind == "layer":
        return [nn.LayerNorm(dim)]
    if kind == "batch":
        return [nn.BatchNorm1d(dim)]
    return []


class ResnetBlock(nn.Module):
    """Released ``denoising_model.py:ResnetBlock`` (dimension preserving): h = net1(x) +
    proj(emb); out = x + net2(h), net2's last Linear zero-initialised."""

    def __init__(self, dim: int, emb_dim: int, *, dropout: float, normalization: str):
        super().__init__()
        self.net1 = nn.Sequential(*_norm(normalization, dim), nn.SiLU(), Linear(dim, dim))
        self.cond_proj = nn.Sequential(nn.SiLU(), Linear(emb_dim, dim))
        last = Linear(dim, dim)
        nn.init.zeros_(last.weight)
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        self.net2 = nn.Sequential(*_norm(normalization, dim), nn.SiLU(), *drop, last)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.net2(self.net1(x) + self.cond_proj(emb))


class VelocityNet(nn.Module):
    """The flow's velocity field v(x_t, t, label, size factor) (released
    ``denoising_model.py:MLPTimeStep``): a time embedding (sinusoidal -> Linear -> SiLU -> Linear),
    plus the label's learned embedding when conditioned (classifier-free guidance: no label term
    for the unconditional field), plus optionally an embedding of the min-max scaled log size
    factor; a Linear in, ``n_blocks`` ResNet blocks of width ``hidden``, SiLU -> Linear out."""

    def __init__(
        self,
        latent_dim: int,
        n_labels: int,
        *,
        hidden: int,
        n_blocks: int,
        emb_dim: int,
        dropout: float,
        normalization: str,
        embed_size_factor: bool,
        size_factor_range: tuple[float, float] = (0.0, 1.0),
    ):
        super().__init__()
        self.emb_dim = emb_dim
        self.time_embedder = nn.Sequential(Linear(emb_dim, emb_dim), nn.SiLU(), Linear(emb_dim, emb_dim))
        # the released CategoricalFeaturizer: nn.Embedding(n_cat, embedding_dim), default init N(0, 1)
        self.label_embedding = nn.Embedding(n_labels, emb_dim)
        self.size_factor_embedder = (
            nn.Sequential(Linear(emb_dim, emb_dim), nn.SiLU(), Linear(emb_dim, emb_dim))
            if embed_size_factor
            else None
        )
        self.register_buffer("sf_range", torch.tensor(size_factor_range, dtype=torch.float32))
        self.net_in = Linear(latent_dim, hidden)
        self.blocks = nn.ModuleList(
            ResnetBlock(hidden, emb_dim, dropout=dropout, normalization=normalization)
            for _ in range(n_blocks)
        )
        self.net_out = nn.Sequential(*_norm(normalization, hidden), nn.SiLU(), Linear(hidden, latent_dim))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        log_size_factor: torch.Tensor,
        labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """``labels``: label indices (conditional field) or ``None`` (unconditional field); ``t``:
        a scalar or one time per cell."""
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        emb = self.time_embedder(timestep_embedding(t, self.emb_dim))
        if labels is not None:
            emb = emb + self.label_embedding(labels)
        if self.size_factor_embedder is not None:
            lo, hi = self.sf_range[0], self.sf_range[1]
            scaled = (log_size_factor.reshape(-1) - lo) / (hi - lo)
            emb = emb + self.size_factor_embedder(timestep_embedding(scaled, self.emb_dim))
        h = self.net_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.net_out(h)
