"""What one ACTIVA training epoch feeds its steps: the epoch's random draws (:class:`EpochNoise`),
rows of a sparse matrix too large to densify (:class:`SparseRows`) and pinned host batches copied to
the device ahead of the step (:class:`PinnedBatches`). Torch only (the GPU check imports them)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


class EpochNoise:
    """The standard normal draws of one epoch's steps: ``noise`` (the prior z that the decoder turns
    into x_g, introspective steps only) and ``eps`` (the reparameterisation), fp32, ``zdim`` wide.

    ``per_epoch`` (CUDA): all drawn at the start of the epoch in one kernel on the device generator,
    so no step draws (nor waits) and a captured step reads them from static buffers. Otherwise (CPU)
    each step draws when it runs, noise then eps, the random stream of earlier versions: CPU
    results are unchanged for a fixed seed."""

    def __init__(self, gen: torch.Generator, zdim: int, sizes: list[int], *, noise: bool, per_epoch: bool):
        self.gen, self.zdim, self.sizes, self.noise = gen, zdim, sizes, noise
        self.block: torch.Tensor | None = None
        if per_epoch and sizes:
            shape = (len(sizes), 2 if noise else 1, max(sizes), zdim)
            self.block = torch.randn(shape, generator=gen, device=gen.device, dtype=torch.float32)

    def step(self, k: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(noise or None, eps) of step ``k`` (0-based within the epoch)."""
        b = self.sizes[k]
        if self.block is not None:
            draws = self.block[k, :, :b]
            return (draws[0], draws[1]) if self.noise else (None, draws[0])
        dev = self.gen.device
        noise = torch.randn((b, self.zdim), generator=self.gen, device=dev) if self.noise else None
        return noise, torch.randn((b, self.zdim), generator=self.gen, device=dev)


class SparseRows:
    """A CSR training matrix kept sparse on the host; indexing rows (a tensor of indices or a slice)
    returns them as a dense float32 tensor. For training matrices too large to densify: each
    mini-batch is densified when drawn, so memory grows with the stored values, not cells x genes.
    A densified batch equals the same rows of the dense matrix exactly, so training is unchanged."""

    def __init__(self, X: sp.spmatrix):
        self.X = sp.csr_matrix(X, dtype=np.float32)
        self.shape = self.X.shape
        self.device = torch.device("cpu")

    def __getitem__(self, idx: torch.Tensor | slice) -> torch.Tensor:
        rows = self.X[idx.cpu().numpy()] if isinstance(idx, torch.Tensor) else self.X[idx]
        return torch.from_numpy(rows.toarray())


class PinnedBatches:
    """Batches of a host-resident training matrix for a CUDA device: rows gathered into one of two
    alternating pinned buffers and copied without blocking; a buffer is refilled only after its
    previous copy finished (a CUDA event), so the gather of batch k+1 overlaps the GPU's work."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device):
        self.X, self.y, self.device = X, y, device
        self.bufs = [
            (
                torch.empty((batch_size, X.shape[1]), dtype=X.dtype).pin_memory(),
                torch.empty((batch_size,), dtype=y.dtype).pin_memory(),
            )
            for _ in range(2)
        ]
        self.events: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0

    def __call__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, self.turn = self.turn, 1 - self.turn
        if self.events[k] is not None:
            self.events[k].synchronize()
        bx, by = (b[: idx.numel()] for b in self.bufs[k])
        torch.index_select(self.X, 0, idx, out=bx)
        torch.index_select(self.y, 0, idx, out=by)
        xb = bx.to(self.device, non_blocking=True)
        yb = by.to(self.device, non_blocking=True)
        self.events[k] = torch.cuda.Event()
        self.events[k].record(torch.cuda.current_stream(self.device))
        return xb, yb
