"""scDiffusion's torch-only speed probe (``bench.api.SpeedProbe``): one pass of each training stage
and the default (unguided, every-timestep) generation on tensors, for the GPU check. No AnnData."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.api import LIBRARY_SIZE, UserError
from bench.api.speed import TrainerProbe
from bench.generators.scdiffusion import settings
from bench.generators.scdiffusion.train import STAGES, ScDiffusionTrainer, TrainConfig


def to_model_scale(X: torch.Tensor, target_sum: float, library_size: float) -> torch.Tensor:
    """Training-scale expression (library size ``library_size``) -> the model's input: log1p of
    the same cells normalised to ``target_sum`` (cell_datasets_loader.py: normalize_total, log1p)."""
    return torch.log1p(X * (float(target_sum) / float(library_size)))


class ScDiffusionSpeedProbe(TrainerProbe):
    """A fresh :class:`ScDiffusionTrainer` of the released defaults; ``train_epoch`` runs one pass of
    the autoencoder over the cells, encodes them, then one pass of the diffusion and one of the
    classifier (``batch_size`` cells per step in every stage). fp32 eager only."""

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
        if precision != "fp32" or mode != "eager":
            raise UserError(
                f"scdiffusion's speed probe runs fp32 eager only, not {precision} {mode}",
                "ask the GPU check for precision fp32 and mode eager",
            )
        keys = {
            k: settings.PARAMETERS[k]
            for k in ("latent_dim", "ae_hidden", "denoiser_hidden", "classifier_hidden")
        }
        cfg = TrainConfig(
            n_genes=n_genes,
            n_classes=n_classes,
            ae_batch_size=batch_size,
            diffusion_batch_size=batch_size,
            classifier_batch_size=batch_size,
            **keys,
        )
        self.trainer = ScDiffusionTrainer(cfg, seed=seed, device=device)

    def train_epoch(self, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        tr = self.trainer
        x = to_model_scale(X, settings.PARAMETERS["target_sum"], LIBRARY_SIZE)
        per = {s: max(1, x.shape[0] // min(tr.cfg.batch_size(s), x.shape[0])) for s in STAGES}
        losses = {s: torch.zeros((), device=tr.device) for s in STAGES}
        for _ in range(per["autoencoder"]):
            losses["autoencoder"] += tr.ae_step(x)
        z = tr.encode(x)
        for _ in range(per["diffusion"]):
            losses["diffusion"] += tr.diffusion_step(z)
        for _ in range(per["classifier"]):
            losses["classifier"] += tr.classifier_step(z, y)[0]
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        return {f"{s}_loss": float(losses[s]) / per[s] for s in STAGES}

    def sampler(self) -> tuple[int, Callable[[int, torch.Generator], torch.Tensor]]:
        """`scdiffusion`'s default generation of an unlabelled request: ``sample_batch`` cells per
        reverse pass over every timestep (unguided, unclipped), decoded with batch statistics."""
        p = settings.PARAMETERS

        def draw(n: int, gen: torch.Generator) -> torch.Tensor:
            z = self.trainer.sample_latents(
                n, gen, sampling_steps=int(p["sampling_steps"]), clip=bool(p["clip_unguided"])
            )
            return self.trainer.decode(z)

        return int(p["sample_batch"]), draw
