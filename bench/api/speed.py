"""The torch-only path of a generator: what the GPU check (``bench/gpucheck.py``) times on a machine
that has PyTorch but no AnnData. A model offers it through ``Generator.speed_probe``; the harness
reaches it through ``bench.pipeline.speed_probe``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "bf16")  # fp32: TF32 matmuls on CUDA; bf16: bf16 autocast (CUDA only)
MODES = ("eager", "graphed")  # graphed: the training step replayed as a CUDA graph (CUDA only)


class SpeedProbe(Protocol):
    """One freshly initialised model on a device, trained and sampled on tensors.

    ``steps``, ``cells_seen`` and ``graphed_steps`` count the optimizer steps, the training cells
    processed and the steps replayed from a CUDA graph since the probe was made."""

    @property
    def device(self) -> torch.device: ...

    @property
    def n_genes(self) -> int: ...

    @property
    def steps(self) -> int: ...

    @property
    def cells_seen(self) -> int: ...

    @property
    def graphed_steps(self) -> int: ...

    def train_epoch(self, X: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One training epoch over ``X`` (cells x genes on the training scale) and ``y`` (label
        indices); the epoch's mean losses, read from the device (the call ends with a sync)."""
        ...

    def sampler(self) -> tuple[int, Callable[[int, torch.Generator], torch.Tensor]]:
        """How the model generates by default: the cells it decodes per pass, and a function
        ``(n, generator) -> n cells`` (float32, on the device) that decodes one pass."""
        ...


class TrainerProbe:
    """The counters of a :class:`SpeedProbe` read from the model's trainer, ``self.trainer`` (its
    ``device``, ``cfg.n_genes``, ``step``, ``cells_seen`` and, where it replays CUDA graphs,
    ``graphed_steps``): a probe subclasses it and adds ``train_epoch`` and ``sampler``."""

    trainer: Any

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    @property
    def n_genes(self) -> int:
        return self.trainer.cfg.n_genes

    @property
    def steps(self) -> int:
        return self.trainer.step

    @property
    def cells_seen(self) -> int:
        return self.trainer.cells_seen

    @property
    def graphed_steps(self) -> int:
        return getattr(self.trainer, "graphed_steps", 0)
