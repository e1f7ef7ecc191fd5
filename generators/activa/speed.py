"""ACTIVA's torch-only speed probe (``bench.api.SpeedProbe``): the introspective training epoch and
the default generation on tensors, for the GPU check. Torch only: no AnnData."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.api.speed import TrainerProbe
from bench.generators.activa import settings
from bench.generators.activa.generation import decode, generation_decoder
from bench.generators.activa.train import ActivaTrainer, TrainConfig


class ActivaSpeedProbe(TrainerProbe):
    """A fresh :class:`ActivaTrainer` of the released schedule's defaults (the `reference`
    algorithm) whose epochs are all introspective (``num_cf = num_vae = 1``)."""

    def __init__(
        self,
        n_genes: int,
        n_classes: int,
        *,
        seed: int,
        device: str,
        batch_size: int,
        precision: str,
        mode: str,
    ):
        cfg = TrainConfig(
            n_genes=n_genes,
            n_classes=n_classes,
            num_cf=1,
            num_vae=1,
            epochs=10,
            batch_size=batch_size,
            bf16=precision == "bf16",
            tf32=True,
            cuda_graph=mode == "graphed",
        )
        self.trainer = ActivaTrainer(cfg, seed=seed, device=device)

    def train_epoch(self, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return self.trainer.run_epoch(X, y)

    def sampler(self) -> tuple[int, Callable[[int, torch.Generator], torch.Tensor]]:
        """`activa`'s default generation: chunks of ``gen_chunk`` cells, decoded in fp32 with the
        ``generation_bn`` BatchNorm statistics of ``bn_calibration_cells`` prior draws."""
        p = settings.PARAMETERS
        dec = generation_decoder(self.trainer, p["generation_bn"], int(p["bn_calibration_cells"]))
        return int(p["gen_chunk"]), lambda n, gen: decode(self.trainer, dec, n, gen)
