"""ACTIVA generation: the trained decoder set up for generation (its BatchNorm statistics,
:data:`GENERATION_BN`) and cells decoded from prior draws. Torch only (the GPU check imports them)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from bench.generators.activa.train import ActivaTrainer

GENERATION_BN = ("prior", "batch", "training")


@torch.no_grad()
def generation_decoder(
    trainer: ActivaTrainer, mode: str = "prior", calibration_cells: int = 20_000
) -> nn.Module:
    """A copy of the trained decoder set up for generation (training state is never touched).

    ``training``: eval mode, running statistics as training left them. Those mix the batches of
    posterior codes and of prior draws seen in training, and do not match a batch of z ~ N(0, I):
    prior draws then land in a few cell types. ``prior``: eval mode with each BatchNorm's running
    statistics set to those of ``calibration_cells`` decoded prior draws (one train-mode pass with
    momentum 1, fixed seed), i.e. the large-batch limit of the tutorial's train-mode BN while each
    cell stays independent of its batch. ``batch``: train mode, statistics of every chunk. Always
    fp32 (no autocast, no TF32), whatever the training precision was.
    """
    if mode not in GENERATION_BN:
        raise ValueError(f"unknown generation_bn {mode!r}; use one of {GENERATION_BN}")
    dec = copy.deepcopy(trainer.net.decoder)
    if mode == "prior":
        for m in dec.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.momentum = 1.0  # running statistics := this batch's statistics (a private copy)
        dec.train()
        g = torch.Generator(device=trainer.device).manual_seed(0)
        z = torch.randn((int(calibration_cells), trainer.cfg.zdim), generator=g, device=trainer.device)
        dec.main[:-2](z)  # every BatchNorm; the output Linear + ReLU have none
    dec.train(mode == "batch")
    return dec


@torch.no_grad()
def decode(trainer: ActivaTrainer, dec: nn.Module, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` cells decoded from z ~ N(0, I) drawn from ``gen``, fp32, on the trainer's device."""
    # train-mode BatchNorm cannot normalise a single cell: decode two, keep one
    m = max(n, 2) if dec.training else n
    z = torch.randn((m, trainer.cfg.zdim), generator=gen, device=trainer.device)
    return dec(z)[:n].float()
