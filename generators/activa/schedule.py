"""ACTIVA's training schedule: :class:`TrainConfig` (the hyper-parameters, the phases of the 1-based
epochs, the steps of an epoch, the schedule rescaled to a step budget) and :class:`EpochLog` (an
epoch's mean losses). The steps themselves are :mod:`.train`'s."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

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
    bf16: bool = True  # bf16 autocast on CUDA (CPU trains in fp32)
    tf32: bool = True  # TF32 matmuls when training fp32 on CUDA
    cuda_graph: bool = True  # introspective step as a CUDA graph on CUDA

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
    """Sums of the logged losses per key, kept as float64 tensors where the losses live: adding a
    step's losses never waits for the GPU; :meth:`means` reads them all at once (one transfer per
    epoch). Summation is sequential in float64, as Python floats summed them before."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, **values: torch.Tensor | float) -> None:
        for k, v in values.items():
            v = torch.as_tensor(v).detach()
            if k in self.sums:
                self.sums[k].add_(v)
            else:
                self.sums[k] = v.to(torch.float64, copy=True)
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        if not self.sums:
            return {}
        sums = torch.stack([s.reshape(()) for s in self.sums.values()]).cpu().tolist()
        return {k: total / self.counts[k] for k, total in zip(self.sums, sums, strict=True)}
